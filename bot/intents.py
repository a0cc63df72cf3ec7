"""What the customer wants: a linear SVM over character n-grams, plus keyword rules.

The SVM (scikit-learn's LinearSVC on tf-idf of 2-5 character n-grams) is trained at start-up
on the examples in every locale catalog, in about a second, and cached by the examples' hash
(`Settings.cache_dir`). Its margins become a softmax "confidence". Prediction skips
scikit-learn's per-call overhead: the learnt vocabulary, idf and weights are applied directly,
which keeps a turn in microseconds. Keyword rules catch what must never be missed: a request
for a person, legal threats, abuse.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from bot.catalog import Catalog
from bot.contracts import INTENTS, RESOLUTIONS, SIGNALS, Intent, Resolution, Signal
from bot.encoder import MODEL as ENCODER_MODEL
from bot.encoder import Encoder, example_vectors

_VECTORIZER: dict[str, Any] = {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "min_df": 1}
# Word unigrams and bigrams beside the character n-grams: "not received" and "received" share
# most of their characters but not their meaning (+0.01-0.02 macro-F1 on both dev sets).
_WORD_VECTORIZER: dict[str, Any] = {
    "analyzer": "word",
    "ngram_range": (1, 2),
    "sublinear_tf": True,
    "token_pattern": r"(?u)\b\w+\b",
}
# Below this confidence the answer is `other`: chosen on the strangers' dev set, where
# `python -m bench.intents` sweeps it: the highest threshold within 0.005 of the best macro-F1
# (0.733 at 0.40 with the encoder; without it 0.35), because an unclear message is better
# answered with the fallback (a person after three) than with a wrong flow.
THRESHOLD = 0.4
_SEMANTIC_C = 10.0  # the embeddings' logistic regression, as in the trial that measured the gain
_WORD_MARK = "\x00"  # word features share the vocabulary with character n-grams, marked apart
# A linear SVM: as accurate here as logistic regression (macro-F1 within 0.01) and 20x faster to train.
_MODEL: dict[str, Any] = {"C": 1.0}
_SHARPNESS = 4.0  # SVM margins to a softmax "confidence"; calibrated on the bench's held-out messages
# Emails, order numbers and phone numbers carry no intent. `(?<!\S)` lets an email match start only
# where a word starts: without it, a long word with no "@" is rescanned from every letter (quadratic).
# Letters and digits around the number are Latin ones: "注文番号はSO-10555です" has no word boundary.
_ORDERISH = re.compile(
    r"(?<!\S)\S*@\S*|#?(?<![A-Za-z0-9])[A-Za-z]{0,4}-?\d[\d-]{3,}(?![A-Za-z0-9])|\+?\d[\d\s()-]{6,}\d", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Understanding:
    intent: str | None  # None: nothing to classify (a bare order number, an email, an emoji)
    confidence: float
    signals: frozenset[str] = field(default_factory=frozenset)  # keyword rules that fired
    choice: str | None = None  # a resolution named in words
    agrees: bool = False  # a yes to what the bot put forward


# Spellings people use interchangeably: Russian ё typed as е; Arabic hamza forms of alef, alef
# maqsura for ya, ta marbuta for ha, and the elongation stroke.
_SAME_LETTER = str.maketrans({"ё": "е", "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ـ": None})
# Arabic short-vowel marks: optional in writing, so never part of a match.
_ARABIC_MARKS = re.compile("[\u064b-\u065f\u0670]")
# Arabic writes "and", "so", "with", "for", "as" and "the" joined to the next word.
_ARABIC_PREFIX = re.compile("^(?:[وف]?(?:[بلك]?ال|لل|[بلك])|[وف])(?=[\u0621-\u064a]{3})")
NORMALISATION = 2  # bump when `normalise` changes: the trained model is cached by it


def normalise(text: str) -> str:
    """Casefolded, accents removed, NFKC, interchangeable letters unified: how both examples and
    messages are compared."""
    text = unicodedata.normalize("NFKC", text).casefold()
    stripped = unicodedata.normalize("NFD", text)
    # Drop combining accents on Latin letters only: Thai vowels and Kana voicing marks carry meaning.
    out: list[str] = []
    for char in stripped:
        if unicodedata.combining(char) and out and out[-1] < "ɏ":
            continue
        out.append(char)
    return _ARABIC_MARKS.sub("", unicodedata.normalize("NFC", "".join(out)).translate(_SAME_LETTER))


def _word_key(word: str) -> str:
    """A word as keyword lists compare it: Arabic words without their joined prefixes."""
    return _ARABIC_PREFIX.sub("", word) if "\u0621" <= word[:1] <= "\u064a" else word


def _no_space_script(text: str) -> bool:
    return any("\u0e00" <= c <= "\u0e7f" or "\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in text)


class KeywordRules:
    """Phrase lists per signal: whole-word phrases looked up by word n-grams, and phrases in
    scripts written without spaces (CJK, Thai) found as substrings. Lookups, not one giant
    regex: a thousand phrases in twelve languages still cost microseconds."""

    def __init__(self, lists: Mapping[str, Iterable[str]]) -> None:
        self._words: dict[tuple[str, ...], set[str]] = {}
        self._longest = 1
        unspaced: dict[str, list[str]] = {}
        for name, phrases in lists.items():
            for phrase in {normalise(p).strip() for p in phrases if p and p.strip()}:
                if _no_space_script(phrase):
                    unspaced.setdefault(name, []).append(re.escape(phrase))
                    continue
                words = tuple(_word_key(w) for w in _WORDS.findall(phrase))
                if words:
                    self._words.setdefault(words, set()).add(name)
                    self._longest = max(self._longest, len(words))
        self._unspaced = {name: re.compile("|".join(sorted(p, key=len, reverse=True))) for name, p in unspaced.items()}

    def extents(self, normalised_text: str) -> dict[str, float]:
        """Each signal found, with the share of the message its phrases cover together (of the
        words, or of the letters in scripts written without spaces)."""
        covered: dict[str, set[int]] = {}
        words = [_word_key(w) for w in _WORDS.findall(normalised_text)]
        for size in range(1, min(self._longest, len(words)) + 1):
            for start in range(len(words) - size + 1):
                for name in self._words.get(tuple(words[start : start + size]), ()):
                    covered.setdefault(name, set()).update(range(start, start + size))
        found = {name: len(positions) / len(words) for name, positions in covered.items()}
        if self._unspaced and _no_space_script(normalised_text):
            letters = sum(1 for char in normalised_text if char.isalnum()) or 1
            for name, pattern in self._unspaced.items():
                matched = sum(len(m.group()) for m in pattern.finditer(normalised_text))
                if matched:
                    found[name] = max(found.get(name, 0.0), min(1.0, matched / letters))
        return found


_WORDS = re.compile(r"\w+")


class IntentClassifier:
    """A linear model over character n-grams of every locale's examples."""

    def __init__(
        self,
        labels: tuple[str, ...],
        vocabulary: dict[str, int],
        idf: np.ndarray,
        weights: np.ndarray,
        bias: np.ndarray,
        *,
        threshold: float = THRESHOLD,
        semantic: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.labels = labels
        self.threshold = threshold
        self._analyze = TfidfVectorizer(**_VECTORIZER).build_analyzer()
        self._analyze_words = TfidfVectorizer(**_WORD_VECTORIZER).build_analyzer()
        self._vocabulary = vocabulary
        self._idf = idf
        self._weights = np.ascontiguousarray(weights)  # features x classes
        self._bias = bias
        # Logistic regression over sentence embeddings (bot.encoder): dimensions x classes, bias.
        self._semantic = semantic

    @classmethod
    def train(cls, examples: list[tuple[str, str]], vectors: np.ndarray | None = None) -> IntentClassifier:
        """Train on (text, intent) pairs; with `vectors` (one embedding per example), a logistic
        regression over them too, whose probabilities `predict` averages with the n-grams'."""
        texts = [normalise(text) for text, _ in examples]
        characters, words = TfidfVectorizer(**_VECTORIZER), TfidfVectorizer(**_WORD_VECTORIZER)
        # Each block is normalised on its own, as sklearn's FeatureUnion of the two would do.
        matrix = scipy.sparse.hstack([characters.fit_transform(texts), words.fit_transform(texts)]).tocsr()
        model = LinearSVC(**_MODEL)
        model.fit(matrix, [label for _, label in examples])
        offset = len(characters.vocabulary_)
        vocabulary = {gram: int(i) for gram, i in characters.vocabulary_.items()}
        vocabulary |= {_WORD_MARK + gram: offset + int(i) for gram, i in words.vocabulary_.items()}
        idf = np.concatenate([characters.idf_, words.idf_])
        semantic = None
        if vectors is not None:
            regression = LogisticRegression(C=_SEMANTIC_C, max_iter=3000)
            regression.fit(vectors, [label for _, label in examples])
            assert list(regression.classes_) == list(model.classes_)  # both sort the labels
            semantic = (np.ascontiguousarray(regression.coef_.T), regression.intercept_)
        labels = tuple(str(c) for c in model.classes_)
        return cls(labels, vocabulary, idf, model.coef_.T, model.intercept_, semantic=semantic)

    @classmethod
    def cached(
        cls, examples: list[tuple[str, str]], folder: Path | None, vectors: Callable[[], np.ndarray] | None = None
    ) -> IntentClassifier:
        """Train, or load what an earlier start trained on exactly these examples. `vectors` gives
        the examples' embeddings, only asked for when training is needed."""
        if folder is None:
            return cls.train(examples, vectors() if vectors else None)
        semantic = [ENCODER_MODEL, _SEMANTIC_C] if vectors else None
        recipe = [sorted(examples), _VECTORIZER, _WORD_VECTORIZER, _MODEL, semantic, NORMALISATION, sklearn.__version__]
        digest = hashlib.sha256(json.dumps(recipe, ensure_ascii=False).encode()).hexdigest()[:24]
        path = folder / f"intents-{digest}.npz"
        try:
            with np.load(path, allow_pickle=False) as saved:
                vocabulary = json.loads(str(saved["vocabulary"]))
                labels = tuple(str(label) for label in saved["labels"])
                meaning = (saved["semantic_weights"], saved["semantic_bias"]) if vectors else None
                return cls(labels, vocabulary, saved["idf"], saved["weights"], saved["bias"], semantic=meaning)
        except (OSError, KeyError, ValueError):
            pass  # not trained yet, or unreadable: train again
        classifier = cls.train(examples, vectors() if vectors else None)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
            arrays: dict[str, np.ndarray] = {
                "vocabulary": np.array(json.dumps(classifier._vocabulary, ensure_ascii=False)),
                "labels": np.array(classifier.labels),
                "idf": classifier._idf,
                "weights": classifier._weights,
                "bias": classifier._bias,
            }
            if classifier._semantic:
                arrays["semantic_weights"], arrays["semantic_bias"] = classifier._semantic
            np.savez(partial, allow_pickle=False, **arrays)
            partial.replace(path)  # atomic: a parallel start never reads half a file
        except OSError:
            pass  # a read-only cache only costs start-up time
        return classifier

    def _block(self, ids: list[int]) -> np.ndarray | float:
        """One block's contribution to the class scores: its sublinear tf-idf, L2-normalised, as in training."""
        if not ids:
            return 0.0
        counts = Counter(ids)
        index = np.fromiter(counts, dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self._idf[index]
        values /= math.sqrt(values @ values)
        return values @ self._weights[index]

    def predict(self, text: str, vector: np.ndarray | None = None) -> tuple[str, float]:
        """(intent, probability) for an already normalised text; with the message's embedding,
        the n-gram and the embedding models' probabilities averaged."""
        vocabulary = self._vocabulary
        characters = [i for gram in self._analyze(text) if (i := vocabulary.get(gram)) is not None]
        words = [i for gram in self._analyze_words(text) if (i := vocabulary.get(_WORD_MARK + gram)) is not None]
        if not characters and not words and vector is None:
            return "other", 0.0
        scores = self._bias + self._block(characters) + self._block(words)
        scores = np.exp(_SHARPNESS * (scores - scores.max()))
        probabilities = scores / scores.sum()
        if vector is not None and self._semantic is not None:
            logits = vector @ self._semantic[0] + self._semantic[1]
            semantic = np.exp(logits - logits.max())
            probabilities = (probabilities + semantic / semantic.sum()) / 2
        best = int(probabilities.argmax())
        return self.labels[best], float(probabilities[best])


_HALF = 0.5  # the share of a message a "done" or "yes" phrase must cover
# A message that names a problem and a remedy is the problem's (DESIGN "Intents"); the remedy is
# kept as `choice`. Clauses end at punctuation or a line break, in any script.
_REMEDY_INTENTS = frozenset({Intent.RETURN_ITEM, Intent.EXCHANGE_ITEM})
_PROBLEM_INTENTS = frozenset({Intent.DAMAGED_ITEM, Intent.WRONG_ITEM})
_CLAUSE = re.compile(r"[,.;!?\n،؛؟，。；！？、]+")
_SURE_PROBLEM = 0.8
_LONGEST_YES = 60
SURE_REMEDY = 0.9
_REMEDY_INTENT = {
    Resolution.REFUND: Intent.RETURN_ITEM,
    Resolution.PARTIAL_REFUND: Intent.RETURN_ITEM,
    Resolution.EXCHANGE: Intent.EXCHANGE_ITEM,
    Resolution.REPLACEMENT: Intent.EXCHANGE_ITEM,
    Resolution.REPAIR: Intent.DAMAGED_ITEM,
}


class IntentRecognizer:
    """The classifier and the keyword rules together: text in, `Understanding` out."""

    def __init__(self, catalog: Catalog, cache_dir: Path | None = None, encoder: Encoder | None = None) -> None:
        examples = [
            (text, intent)
            for locale in catalog.locales.values()
            for intent, texts in locale.intents.items()
            if intent in INTENTS
            for text in texts
        ]
        if len({label for _, label in examples}) < 2:
            raise ValueError("the locale catalogs hold too few intent examples to train on")
        self.encoder = encoder

        def vectors() -> np.ndarray:
            assert encoder is not None
            return example_vectors([text for text, _ in examples], encoder, cache_dir)

        self.classifier = IntentClassifier.cached(examples, cache_dir, vectors if encoder else None)
        lists: dict[str, list[str]] = {name: [] for name in SIGNALS}
        self._choices: dict[str, KeywordRules] = {}
        self._agree: dict[str, KeywordRules] = {}
        for code, locale in catalog.locales.items():
            for name in SIGNALS:
                lists[name].extend(locale.keywords.get(name) or [])
            resolution = locale.keywords.get("resolution") or {}
            self._choices[code] = KeywordRules({c: resolution.get(c) or [] for c in RESOLUTIONS})
            self._agree[code] = KeywordRules({"agree": locale.keywords.get("agree") or []})
        self.rules = KeywordRules(lists)

    def meaning(self, text: str) -> np.ndarray | None:
        """The message's embedding (15-50 ms), or None without an encoder or without words. The
        manager asks for it in a worker thread, so the event loop goes on meanwhile."""
        # Order numbers, e-mails and phones carry no intent: a message of nothing else is not embedded.
        if self.encoder is None or not any(c.isalpha() for c in _ORDERISH.sub(" ", text)):
            return None
        return self.encoder.embed_one(text)

    def understand(self, text: str, language: str, meaning: np.ndarray | None = None) -> Understanding:
        """What the message asks for. `meaning` is its embedding when the caller has it already;
        without it, and with an encoder, it is computed here."""
        plain = normalise(_ORDERISH.sub(" ", text)).strip()
        if not any(c.isalpha() for c in plain):
            return Understanding(None, 0.0)
        if meaning is None:
            meaning = self.meaning(text)
        extents = self.rules.extents(plain)
        # "Done" must be more than half the message: Arabic «تم» also starts "تم الكسر" (it got broken).
        signals = frozenset(name for name, share in extents.items() if name != Signal.DONE or share > _HALF)
        choice, bare = self._choice(plain, language)
        intent, confidence = self.classifier.predict(plain, meaning)
        if "human" in signals:
            intent, confidence = "talk_to_human", 1.0
        elif bare and choice:
            # Nothing but a remedy ("refund?", "reembolso", "cambio") asks for it: the status of a
            # refund already agreed comes with more words ("refund status", "where is my refund").
            intent, confidence = _REMEDY_INTENT[Resolution(choice)], max(confidence, SURE_REMEDY)
        elif intent in _REMEDY_INTENTS and (problem := self._problem_in_a_clause(plain)):
            intent, confidence = problem  # "arrived cracked, I want my money back" is about the crack
        elif confidence < self.classifier.threshold:
            # A bare remedy ("cambio", "refund?") says what the customer wants even when the model is unsure.
            intent = _REMEDY_INTENT[Resolution(choice)] if choice else Intent.OTHER
        return Understanding(intent, confidence, signals, choice, self._agrees(plain, language))

    def _problem_in_a_clause(self, normalised_text: str) -> tuple[str, float] | None:
        """A damaged or wrong item named in one clause of a message asking for a remedy."""
        clauses = [c for c in _CLAUSE.split(normalised_text) if len(c.strip()) > 1]
        if len(clauses) < 2:
            return None
        for clause in clauses:
            intent, confidence = self.classifier.predict(clause.strip())
            if intent in _PROBLEM_INTENTS and confidence >= _SURE_PROBLEM:
                return intent, confidence
        return None

    def _agrees(self, normalised_text: str, language: str) -> bool:
        """A yes that is most of the message ("yes please", "はい"), in the customer's language or English."""
        if len(normalised_text) > _LONGEST_YES:
            return False  # a yes is short: spare the lookups on every longer message
        return any(
            (rules := self._agree.get(code)) and rules.extents(normalised_text).get("agree", 0.0) >= _HALF
            for code in (language, "en")
        )

    def choice(self, normalised_text: str, language: str) -> str | None:
        """A resolution the customer names in words ("a refund please"), in their language or English."""
        return self._choice(normalised_text, language)[0]

    def _choice(self, normalised_text: str, language: str) -> tuple[str | None, bool]:
        """The resolution named, and whether it is the whole message."""
        for code in (language, "en"):
            rules = self._choices.get(code)
            found = rules.extents(normalised_text) if rules else {}
            if not found:
                continue
            choice = min(found)
            if "partial_refund" in found:
                choice = "partial_refund"  # "partial refund" also contains "refund": the longer phrase wins
            return choice, found[choice] >= 1.0
        return None, False

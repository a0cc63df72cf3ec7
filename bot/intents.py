"""What the customer wants: a linear classifier over character n-grams, plus keyword rules.

The classifier is trained at start-up with scikit-learn on the examples kept in each locale
catalog (well under two seconds). Prediction skips scikit-learn's per-call overhead: the
learnt vocabulary, idf and weights are applied directly, which keeps a turn in microseconds.
Keyword rules catch what must never be missed: a request for a person, legal threats, abuse.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bot.catalog import Catalog

INTENTS = (
    "greet", "track_order", "return_item", "exchange_item", "refund_status", "damaged_item",
    "wrong_item", "customs_duties", "talk_to_human", "complaint", "goodbye", "other",
)  # fmt: skip
# Keyword lists every locale may define, and the lists of choices under `resolution`.
SIGNALS = ("human", "legal", "abuse", "dispute", "done")
CHOICES = ("refund", "replacement", "repair", "exchange", "partial_refund")

_ORDERISH = re.compile(r"\S+@\S+|#?\b[A-Za-z]{0,4}-?\d[\d-]{3,}\b|\+?\d[\d\s()-]{6,}\d", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Understanding:
    intent: str | None  # None: nothing to classify (a bare order number, an email, an emoji)
    confidence: float
    signals: frozenset[str] = field(default_factory=frozenset)  # keyword rules that fired
    choice: str | None = None  # a resolution named in words


def normalise(text: str) -> str:
    """Casefolded, accents removed, NFKC: how both examples and messages are compared."""
    text = unicodedata.normalize("NFKC", text).casefold()
    stripped = unicodedata.normalize("NFD", text)
    # Drop combining accents on Latin letters only: Thai vowels and Kana voicing marks carry meaning.
    out = []
    for char in stripped:
        if unicodedata.combining(char) and out and out[-1] < "ɏ":
            continue
        out.append(char)
    return unicodedata.normalize("NFC", "".join(out))


def _no_space_script(text: str) -> bool:
    return any("\u0e00" <= c <= "\u0e7f" or "\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in text)


class KeywordRules:
    """Phrase lists per signal: whole-word phrases looked up by word n-grams, and phrases in
    scripts written without spaces (CJK, Thai) found as substrings. Lookups, not one giant
    regex: a thousand phrases in twelve languages still cost microseconds."""

    def __init__(self, lists: dict[str, Iterable[str]]) -> None:
        self._words: dict[tuple[str, ...], set[str]] = {}
        self._longest = 1
        unspaced: dict[str, list[str]] = {}
        for name, phrases in lists.items():
            for phrase in {normalise(p).strip() for p in phrases if p and p.strip()}:
                if _no_space_script(phrase):
                    unspaced.setdefault(name, []).append(re.escape(phrase))
                    continue
                words = tuple(_WORDS.findall(phrase))
                if words:
                    self._words.setdefault(words, set()).add(name)
                    self._longest = max(self._longest, len(words))
        self._unspaced = {name: re.compile("|".join(sorted(p, key=len, reverse=True))) for name, p in unspaced.items()}

    def matches(self, normalised_text: str) -> set[str]:
        found: set[str] = set()
        words = _WORDS.findall(normalised_text)
        for size in range(1, min(self._longest, len(words)) + 1):
            for start in range(len(words) - size + 1):
                hit = self._words.get(tuple(words[start : start + size]))
                if hit:
                    found |= hit
        if self._unspaced and _no_space_script(normalised_text):
            found |= {name for name, pattern in self._unspaced.items() if pattern.search(normalised_text)}
        return found


_WORDS = re.compile(r"\w+")


class IntentClassifier:
    """Character n-gram logistic regression over every locale's examples."""

    def __init__(self, examples: list[tuple[str, str]], *, threshold: float = 0.3) -> None:
        texts = [normalise(text) for text, _ in examples]
        labels = [label for _, label in examples]
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, min_df=1)
        matrix = vectorizer.fit_transform(texts)
        model = LogisticRegression(C=20.0, max_iter=2000)
        model.fit(matrix, labels)
        self.labels: tuple[str, ...] = tuple(model.classes_)
        self.threshold = threshold
        self._analyze = vectorizer.build_analyzer()
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._idf = vectorizer.idf_.astype(np.float64)
        self._weights = np.ascontiguousarray(model.coef_.T)  # features x classes
        self._bias = model.intercept_.astype(np.float64)

    def predict(self, text: str) -> tuple[str, float]:
        """(intent, probability) for an already normalised text."""
        vocabulary = self._vocabulary
        ids = [i for gram in self._analyze(text) if (i := vocabulary.get(gram)) is not None]
        if not ids:
            return "other", 0.0
        counts = Counter(ids)
        index = np.fromiter(counts, dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self._idf[index]  # sublinear tf-idf, as in training
        values /= math.sqrt(values @ values)
        scores = values @ self._weights[index] + self._bias
        scores = np.exp(scores - scores.max())
        probabilities = scores / scores.sum()
        best = int(probabilities.argmax())
        return self.labels[best], float(probabilities[best])


class IntentRecognizer:
    """The classifier and the keyword rules together: text in, `Understanding` out."""

    def __init__(self, catalog: Catalog) -> None:
        examples = [
            (text, intent)
            for locale in catalog.locales.values()
            for intent, texts in locale.intents.items()
            if intent in INTENTS
            for text in texts
        ]
        if len({label for _, label in examples}) < 2:
            raise ValueError("the locale catalogs hold too few intent examples to train on")
        self.classifier = IntentClassifier(examples)
        lists: dict[str, list[str]] = {name: [] for name in SIGNALS}
        self._choices: dict[str, KeywordRules] = {}
        for code, locale in catalog.locales.items():
            for name in SIGNALS:
                lists[name].extend(locale.keywords.get(name) or [])
            resolution = locale.keywords.get("resolution") or {}
            self._choices[code] = KeywordRules({c: resolution.get(c) or [] for c in CHOICES})
        self.rules = KeywordRules(lists)

    def understand(self, text: str, language: str) -> Understanding:
        plain = normalise(_ORDERISH.sub(" ", text)).strip()
        if not any(c.isalpha() for c in plain):
            return Understanding(None, 0.0)
        signals = frozenset(self.rules.matches(plain))
        choice = self.choice(plain, language)
        intent, confidence = self.classifier.predict(plain)
        if "human" in signals:
            intent, confidence = "talk_to_human", 1.0
        elif confidence < self.classifier.threshold:
            intent = "other"
        return Understanding(intent, confidence, signals, choice)

    def choice(self, normalised_text: str, language: str) -> str | None:
        """A resolution the customer names in words ("a refund please"), in their language or English."""
        for code in (language, "en"):
            rules = self._choices.get(code)
            found = rules.matches(normalised_text) if rules else set()
            if len(found) == 1:
                return found.pop()
            if found:  # "partial refund" also contains "refund": the longer phrase wins
                return "partial_refund" if "partial_refund" in found else sorted(found)[0]
        return None

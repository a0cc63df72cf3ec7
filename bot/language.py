"""Which language a customer writes in.

Cheapest signal first:
1. Unicode scripts settle most non-Latin languages outright (Hangul, Kana, Thai, Arabic,
   Cyrillic; Han without Kana is Chinese unless the conversation is already Japanese).
2. For Latin script, a lexicon of words typical of each language (from the locale catalogs)
   and telltale letters (ñ, ß, ã) are scored first; when they do not settle it, py3langid's
   n-gram model, restricted to the supported languages, is added to the scores.
langdetect is not used here: it is only the baseline that `bench.langid` compares against.

`decide` adds the conversation rules: the channel's hint, and stickiness — an order number,
"ok" or an emoji never switches the language; a clear sentence in another language does.
"""

from __future__ import annotations

import copy
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from py3langid.langid import MODEL_FILE, LanguageIdentifier

LATIN = ("en", "es", "pt", "fr", "de", "it")

# Letters that only some Latin-script languages use, with how strongly they point at each.
_TELLTALES: dict[str, dict[str, float]] = {
    "ñ": {"es": 3.0}, "¿": {"es": 3.0}, "¡": {"es": 3.0},
    "ã": {"pt": 3.0}, "õ": {"pt": 3.0}, "ç": {"pt": 1.0, "fr": 1.0},
    "ß": {"de": 3.0}, "ä": {"de": 2.5}, "ö": {"de": 2.5}, "ü": {"de": 2.0},
    "è": {"fr": 1.5, "it": 1.5}, "à": {"fr": 1.0, "it": 1.0, "pt": 0.5}, "ù": {"fr": 1.0, "it": 1.0},
    "ì": {"it": 2.0}, "ò": {"it": 2.0}, "œ": {"fr": 3.0}, "ë": {"fr": 1.0}, "ï": {"fr": 1.5},
    "ê": {"fr": 1.5, "pt": 1.5}, "â": {"fr": 1.5, "pt": 1.0}, "î": {"fr": 2.0}, "û": {"fr": 2.0},
    "ô": {"fr": 1.5, "pt": 1.0}, "é": {"fr": 0.5, "es": 0.3, "pt": 0.3, "it": 0.2},
    "á": {"es": 1.0, "pt": 1.0}, "í": {"es": 1.0, "pt": 1.0}, "ó": {"es": 1.0, "pt": 1.0},
    "ú": {"es": 1.0, "pt": 0.8},
}  # fmt: skip

# What is never language: order numbers, emails, links, numbers, emoji and symbols.
_NOISE = re.compile(r"\S+@\S+|https?://\S+|www\.\S+|#?\b[A-Za-z]{0,4}-?\d[\d-]{3,}\b|\d+", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


# Varieties the n-gram model names apart that the bot serves as one language.
_SAME_LANGUAGE = {"arz": "ar", "ary": "ar", "yue": "zh", "wuu": "zh"}
# A message in a language the bot does not speak must say so clearly: enough words, and the
# world-wide n-gram model sure of one unsupported language. Chosen on bench/data/langid*.
_FOREIGN_WORDS = 3
_FOREIGN_PROBABILITY = 0.93  # supported 3-word messages reach 0.9 at most (bench/data/langid)
# Cyrillic letters Russian does not use: without one, Cyrillic text is taken as Russian (short
# Russian messages often look Bulgarian or Serbian to the n-gram model).
_NOT_RUSSIAN = re.compile("[іїєґўјђљњћџѓќѕ]", re.IGNORECASE)
# Persian and Urdu letters that Arabic does not use.
_NOT_ARABIC = re.compile("[پچژگکیےٹڈڑںھ]")


@dataclass(frozen=True, slots=True)
class Detection:
    language: str | None  # None: nothing to go on (a number, "ok", an emoji), or not supported
    confidence: float  # 0..1
    clear: bool  # strong enough to switch an ongoing conversation
    foreign: str | None = None  # a language the bot does not speak, when the message is clearly in it


@dataclass(frozen=True, slots=True)
class Decision:
    language: str  # the conversation's language after the message
    switched: bool  # a clear sentence moved an ongoing conversation to another supported language
    unsupported: bool = False  # a new conversation opened in a language the bot does not speak


def script_of(char: str) -> str | None:
    """A coarse script name for one character, or None for neutral ones (digits, symbols)."""
    code = ord(char)
    if code < 0x250:
        return "latin" if char.isalpha() else None
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
        return "kana"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "han"
    if 0x0E00 <= code <= 0x0E7F:
        return "thai"
    if 0x0600 <= code <= 0x06FF or 0x0750 <= code <= 0x077F or 0xFB50 <= code <= 0xFEFF:
        return "arabic"
    if 0x0400 <= code <= 0x04FF:
        return "cyrillic"
    if 0x1E00 <= code <= 0x1EFF:
        return "latin"
    return "other" if char.isalpha() else None  # Hebrew, Greek, Devanagari...


_SCRIPT_LANGUAGE = {"hangul": "ko", "kana": "ja", "thai": "th", "arabic": "ar", "cyrillic": "ru"}


class LanguageDetector:
    """Detects the supported language of a chat message; deterministic and fast."""

    def __init__(self, supported: Iterable[str], lexicon: Mapping[str, Iterable[str]] | None = None) -> None:
        self.supported = tuple(supported)
        self.latin = tuple(code for code in LATIN if code in self.supported)
        self._lexicon: dict[str, set[str]] = {}
        for code, words in (lexicon or {}).items():
            if code in self.latin:
                self._lexicon[code] = {_fold(w) for w in words if w}
        # A word typical of several languages says little: weigh each by how many share it.
        self._word_weight: dict[str, dict[str, float]] = {}
        for code, words in self._lexicon.items():
            for word in words:
                self._word_weight.setdefault(word, {})[code] = 1.0
        for langs in self._word_weight.values():
            share = 1.0 / len(langs)
            for code in langs:
                langs[code] = share
        # One model file (0.6 s to load), two views: all 97 languages, and the supported Latin ones.
        self._world = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._ngram = copy.copy(self._world)
        if self.latin:
            self._ngram.set_languages(list(self.latin))

    def detect(self, text: str, current: str | None = None) -> Detection:
        """The language of `text` (with how sure that is); `current` lets an ongoing conversation
        skip the n-gram model when the message's own words already say it has not changed."""
        cleaned = _NOISE.sub(" ", unicodedata.normalize("NFC", text))
        counts: dict[str, int] = {}
        for char in cleaned:
            script = script_of(char)
            if script:
                counts[script] = counts.get(script, 0) + 1
        if not counts:
            return Detection(None, 0.0, False)
        script = max(counts, key=lambda s: counts[s])
        letters = counts[script]
        if script == "han" and counts.get("kana"):
            script = "kana"
        if script == "han":
            return self._known("zh", letters, per_letter=0.5)
        if script == "other":
            return Detection(None, 1.0, False, foreign=self._world_language(cleaned)[0])
        telltale = {"arabic": _NOT_ARABIC, "cyrillic": _NOT_RUSSIAN}.get(script)
        if telltale and telltale.search(cleaned) and (foreign := self._foreign(cleaned)):
            return foreign  # Persian, Urdu, Ukrainian, Serbian...
        if script in _SCRIPT_LANGUAGE:
            return self._known(_SCRIPT_LANGUAGE[script], letters, per_letter=0.5)
        return self._latin(cleaned, current)

    def _world_language(self, text: str) -> tuple[str, float]:
        """The likeliest language the bot does not speak, and how likely any of those is: the
        mass is summed because near neighbours (Indonesian and Malay, Dutch and Afrikaans)
        split it between them."""
        best, foreign = "", 0.0
        for code, probability in self._world.rank(text.lower()):
            code = _SAME_LANGUAGE.get(code, code)
            if code not in self.supported:
                best = best or code
                foreign += probability
        return best, foreign

    def _foreign(self, text: str) -> Detection | None:
        """A detection of an unsupported language, when the message is long and clear enough."""
        if len(_WORD.findall(text)) < _FOREIGN_WORDS:
            return None
        code, probability = self._world_language(text)
        if probability < _FOREIGN_PROBABILITY:
            return None
        return Detection(None, probability, False, foreign=code)

    def _known(self, code: str, letters: int, per_letter: float) -> Detection:
        if code not in self.supported:
            return Detection(None, 0.0, False)
        confidence = min(1.0, 0.5 + per_letter * letters / 4)
        return Detection(code, confidence, letters >= 2)

    def _latin(self, text: str, current: str | None = None) -> Detection:
        if not self.latin:
            return Detection(None, 0.0, False)
        lowered = text.lower()
        words = [_fold(w) for w in _WORD.findall(lowered)]
        letters = sum(len(w) for w in words)
        if letters < 2:
            return Detection(None, 0.0, False)
        scores = {code: 0.0 for code in self.latin}
        lexical_hits = 0.0
        for word in set(words):
            for code, weight in self._word_weight.get(word, {}).items():
                scores[code] += _WORD_WEIGHT * weight
                lexical_hits += weight
        for char in set(lowered):
            for code, weight in _TELLTALES.get(char, {}).items():
                if code in scores:
                    scores[code] += weight
        lead = sorted(scores.values(), reverse=True)
        if current in scores and lexical_hits and scores[current] == lead[0]:
            return Detection(current, 0.9, False)  # its own words say it is still the current language
        # Our languages' own words in half the message or more: it is one of them, with a typo or two.
        known = sum(1 for word in words if word in self._word_weight)
        if 2 * known < len(words) and (foreign := self._foreign(text)):
            return foreign
        # Many typical words of one language settle it; the n-gram model is for the rest.
        if len(lead) < 2 or lead[0] - lead[1] < _SETTLED_BY_WORDS:
            for code, probability in self._ngram.rank(lowered):
                scores[code] += math.log(max(probability, 1e-9)) * _NGRAM_WEIGHT
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        best, top = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else top - 10.0
        margin = top - second
        confidence = 1.0 - math.exp(-margin)
        # One or two bare words ("merci", "no") are hints, not proof: they never switch on their own.
        clear = (len(words) >= 3 and margin >= 1.5) or (len(words) >= 2 and lexical_hits >= 2 and margin >= 2.0)
        return Detection(best, confidence, clear)

    def decide(self, text: str, current: str | None, hint: str | None, default: str) -> Decision:
        """The conversation's language after `text`: whether it switched from `current`, and
        whether a new conversation opened in a language the bot does not speak."""
        hint = _base(hint)
        hint = hint if hint in self.supported else None
        found = self.detect(text, current)
        if found.language == "zh" and "ja" in (current, hint) and current in (None, "ja"):
            found = Detection("ja", found.confidence, found.clear)  # kanji-only Japanese
        if current is None:
            if found.language is None:
                # A supported hint wins over a foreign-looking message: the customer chose it.
                return Decision(hint or default, False, unsupported=bool(found.foreign and not hint))
            if hint and found.language != hint and not found.clear and found.confidence < 0.9:
                return Decision(hint, False)  # a short, unsure guess loses to what the platform tells us
            return Decision(found.language, False)
        if found.language and found.language != current and found.clear:
            return Decision(found.language, True)
        return Decision(current, False)


def catalog_lexicon(
    function_words: dict[str, Iterable[str]], examples: dict[str, Iterable[str]], min_count: int = 2
) -> dict[str, set[str]]:
    """Words that point at a Latin-script language: its listed function words, plus words its
    intent examples use at least `min_count` times and no other language's examples use."""
    counts: dict[str, dict[str, int]] = {}
    for code, texts in examples.items():
        if code not in LATIN:
            continue
        for text in texts:
            for word in _WORD.findall(_NOISE.sub(" ", text.lower())):
                per_language = counts.setdefault(_fold(word), {})
                per_language[code] = per_language.get(code, 0) + 1
    lexicon = {code: {_fold(w) for w in words} for code, words in function_words.items() if code in LATIN}
    for word, per_language in counts.items():
        if len(per_language) == 1 and len(word) > 1:
            ((code, count),) = per_language.items()
            if count >= min_count:
                lexicon.setdefault(code, set()).add(word)
    return lexicon


def _base(code: str | None) -> str | None:
    """'pt-BR' -> 'pt', 'zh_Hans' -> 'zh'."""
    return code.replace("_", "-").split("-")[0].lower() if code else None


def _fold(word: str) -> str:
    return word.lower().replace("’", "'")


_NGRAM_WEIGHT = 1.0
_WORD_WEIGHT = 2.0
_SETTLED_BY_WORDS = 8.0  # four distinctive words ahead

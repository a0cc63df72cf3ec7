"""Language identification on short chat messages: the project's detector against plain langdetect.

    python -m bench.langid [FILES...]   (default: bench/data/langid/*.jsonl)

Prints accuracy overall, per language and by word count, and microseconds per message, for
both, measured in the same run without locale hints. Then messages in languages the bot does
not speak (bench/data/langid_unsupported/, Tatoeba sentences: see its SOURCES.md): how many are
answered in English, the default, with the line listing the languages the bot speaks.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from langdetect import DetectorFactory, LangDetectException, detect

from bot.app import load_brain
from bot.config import Settings
from bot.language import LanguageDetector

DATA = Path(__file__).parent / "data" / "langid"
UNSUPPORTED = Path(__file__).parent / "data" / "langid_unsupported"
BUCKETS = ((1, 3, "1-3 words"), (4, 8, "4-8 words"), (9, 10_000, "9+ words"))


def load(paths: list[Path]) -> list[dict[str, str]]:
    return [json.loads(line) for path in paths for line in path.open(encoding="utf-8") if line.strip()]


def plain_langdetect(text: str) -> str:
    try:
        return detect(text).split("-")[0]  # zh-cn -> zh
    except LangDetectException:
        return "en"


def measure(rows: list[dict[str, str]], guess: Callable[[str], str]) -> tuple[list[str], float]:
    guess(rows[0]["text"])  # warm up: lazy model loading is not per-message cost
    start = time.perf_counter()
    guesses = [guess(r["text"]) for r in rows]
    return guesses, (time.perf_counter() - start) / len(rows) * 1e6


def report(name: str, rows: list[dict[str, str]], guesses: list[str], micros: float) -> float:
    total = defaultdict(int)
    right = defaultdict(int)
    for row, guessed in zip(rows, guesses, strict=True):
        words = len(row["text"].split())
        bucket = next(label for low, high, label in BUCKETS if low <= words <= high)
        for key in ("all", row["language"], bucket):
            total[key] += 1
            right[key] += guessed == row["language"]
    accuracy = right["all"] / total["all"]
    print(f"\n{name}: {accuracy:.2%} of {total['all']} messages, {micros:.0f} µs/message")
    by_words = [f"{label} {right[label] / total[label]:.2%}" for *_, label in BUCKETS if total[label]]
    print("  by words: " + ", ".join(by_words))
    languages = sorted(k for k in total if len(k) == 2)
    print("  by language: " + ", ".join(f"{code} {right[code] / total[code]:.1%}" for code in languages))
    return accuracy


def unsupported(detector: LanguageDetector, rows: list[dict[str, str]]) -> None:
    """Messages in languages the bot does not speak: answered in English, and told so?"""
    if not rows:
        return
    decisions = [detector.decide(r["text"], None, None, "en") for r in rows]
    told = [d.language == "en" and d.unsupported for d in decisions]
    long = [n for n, r in enumerate(rows) if len(r["text"].split()) >= 4]
    share = sum(told) / len(rows)
    print(f"\nunsupported languages: {share:.1%} of {len(rows)} messages answered in English with the list")
    print(f"  4+ words: {sum(told[n] for n in long) / max(len(long), 1):.1%} of {len(long)}")
    per_language: dict[str, list[bool]] = defaultdict(list)
    for row, ok in zip(rows, told, strict=True):
        per_language[row["language"]].append(ok)
    print("  by language: " + ", ".join(f"{c} {sum(v) / len(v):.1%}" for c, v in sorted(per_language.items())))
    others = Counter(d.language for d, ok in zip(decisions, told, strict=True) if not ok)
    print("  the rest answered in: " + (", ".join(f"{c} {n}" for c, n in others.most_common()) or "none"))


def main(argv: list[str]) -> None:
    paths = [Path(p) for p in argv] or sorted(DATA.glob("*.jsonl"))
    rows = load(paths)
    DetectorFactory.seed = 0
    detector = load_brain(Settings.from_env()).dialogue.detector
    ours, our_micros = measure(rows, lambda text: detector.decide(text, None, None, "en").language)
    theirs, their_micros = measure(rows, plain_langdetect)
    mine = report("aftersales detector", rows, ours, our_micros)
    plain = report("plain langdetect", rows, theirs, their_micros)
    print(f"\nspeed: {their_micros / our_micros:.1f}x faster than plain langdetect; accuracy {mine:.2%} vs {plain:.2%}")
    unsupported(detector, load(sorted(UNSUPPORTED.glob("*.jsonl"))))
    wrong = [(r["language"], g, r["text"]) for r, g in zip(rows, ours, strict=True) if g != r["language"]]
    if wrong and "-v" in sys.argv:
        for truth, guessed, text in wrong:
            print(f"  {truth}->{guessed}: {text}")


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if a != "-v"])

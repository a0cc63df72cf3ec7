"""Intent recognition quality.

    python -m bench.intents

1. Held-out split: train on 80% of the catalog examples, score the other 20% (seeded).
2. Fresh messages: train on all catalog examples, score bench/data/intents/*.jsonl, which were
   written separately and never trained on.
Prints macro-F1 and per-intent F1 for both.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from bot.app import load_brain
from bot.config import Settings
from bot.intents import INTENTS, IntentClassifier, normalise

DATA = Path(__file__).parent / "data" / "intents"


def f1_scores(truth: list[str], predicted: list[str]) -> dict[str, float]:
    scores = {}
    for intent in INTENTS:
        tp = sum(t == p == intent for t, p in zip(truth, predicted, strict=True))
        fp = sum(p == intent != t for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == intent != p for t, p in zip(truth, predicted, strict=True))
        scores[intent] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return scores


def show(title: str, scores: dict[str, float], count: int) -> None:
    macro = sum(scores.values()) / len(scores)
    print(f"\n{title}: macro-F1 {macro:.3f} on {count} messages")
    print("  " + ", ".join(f"{intent} {score:.2f}" for intent, score in scores.items()))


def main() -> None:
    brain = load_brain(Settings.from_env())
    examples = [
        (text, intent, code)
        for code, locale in brain.catalog.locales.items()
        for intent, texts in locale.intents.items()
        for text in texts
    ]
    random.Random(7).shuffle(examples)
    cut = int(len(examples) * 0.8)
    train, held = examples[:cut], examples[cut:]
    start = time.perf_counter()
    classifier = IntentClassifier.train([(t, i) for t, i, _ in train])
    print(f"trained on {len(train)} examples in {time.perf_counter() - start:.2f} s")
    predicted = [classifier.predict(normalise(t))[0] for t, _, _ in held]
    show("held-out 20% of the catalog examples", f1_scores([i for _, i, _ in held], predicted), len(held))

    rows = [json.loads(line) for path in sorted(DATA.glob("*.jsonl")) for line in path.open(encoding="utf-8")]
    recognizer = brain.dialogue.recognizer
    start = time.perf_counter()
    predicted = [recognizer.understand(r["text"], r["language"]).intent or "other" for r in rows]
    micros = (time.perf_counter() - start) / max(len(rows), 1) * 1e6
    show("fresh messages never trained on", f1_scores([r["intent"] for r in rows], predicted), len(rows))
    print(f"  {micros:.0f} µs/message (rules + classifier)")


if __name__ == "__main__":
    main()

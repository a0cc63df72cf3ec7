"""Intent recognition quality, on messages the model was and was not written alongside.

    python -m bench.intents

1. Held-out split: train on 80% of the catalog examples, score the other 20% (seeded).
2. Ours: train on all catalog examples, score bench/data/intents/*.jsonl, written by the project
   apart from the examples and never trained on.
3. Strangers: the same model on bench/data/strangers/*.jsonl, customer messages from public
   sources written by other people (bench/data/strangers/SOURCES.md), never trained on.

For 2 and 3: macro-F1 and accuracy overall, per language and per intent, the most frequent
confusions, how well the confidence is calibrated (expected calibration error and a reliability
table), and macro-F1 across thresholds for `other`, which is where the threshold is chosen.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

from bot.app import load_brain
from bot.config import Settings
from bot.intents import INTENTS, IntentClassifier, IntentRecognizer, normalise

DATA = Path(__file__).parent / "data"
THRESHOLDS = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
PLATEAU = 0.005


def f1_scores(truth: list[str], predicted: list[str]) -> dict[str, float]:
    scores = {}
    for intent in INTENTS:
        tp = sum(t == p == intent for t, p in zip(truth, predicted, strict=True))
        fp = sum(p == intent != t for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == intent != p for t, p in zip(truth, predicted, strict=True))
        if tp + fp + fn:  # an intent absent from a set and never predicted says nothing
            scores[intent] = 2 * tp / (2 * tp + fp + fn)
    return scores


def macro(truth: list[str], predicted: list[str]) -> float:
    scores = f1_scores(truth, predicted)
    return sum(scores.values()) / max(len(scores), 1)


def load(folder: Path) -> list[dict[str, str]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("*.jsonl"))
        for line in path.open(encoding="utf-8")
        if line.strip()
    ]


def predict(recognizer: IntentRecognizer, rows: list[dict[str, str]]) -> list[tuple[str, float]]:
    out = []
    for row in rows:
        understanding = recognizer.understand(row["text"], row["language"])
        out.append((understanding.intent or "other", understanding.confidence))
    return out


def calibration(correct: list[bool], confidence: list[float], bins: int = 10) -> tuple[float, list[str]]:
    """Expected calibration error, and one line per non-empty bin: confidence vs accuracy."""
    table: dict[int, list[tuple[bool, float]]] = defaultdict(list)
    for ok, conf in zip(correct, confidence, strict=True):
        table[min(int(conf * bins), bins - 1)].append((ok, conf))
    error, lines = 0.0, []
    for index in sorted(table):
        items = table[index]
        accuracy = sum(ok for ok, _ in items) / len(items)
        mean = sum(conf for _, conf in items) / len(items)
        error += len(items) / len(correct) * abs(accuracy - mean)
        span = f"{index / bins:.1f}-{(index + 1) / bins:.1f}"
        lines.append(f"{span}: {len(items):4d} msgs, confidence {mean:.2f}, right {accuracy:.2f}")
    return error, lines


def report(title: str, rows: list[dict[str, str]], recognizer: IntentRecognizer) -> dict[float, float]:
    if not rows:
        print(f"\n{title}: no messages")
        return {}
    start = time.perf_counter()
    results = predict(recognizer, rows)
    micros = (time.perf_counter() - start) / len(rows) * 1e6
    truth = [r["intent"] for r in rows]
    predicted = [intent for intent, _ in results]
    accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(rows)
    scores = f1_scores(truth, predicted)
    print(f"\n{title}: macro-F1 {macro(truth, predicted):.3f}, accuracy {accuracy:.3f} on {len(rows)} messages")
    print("  per intent: " + ", ".join(f"{intent} {score:.2f}" for intent, score in scores.items()))
    by_language: dict[str, list[int]] = defaultdict(list)
    for n, row in enumerate(rows):
        by_language[row["language"]].append(n)
    parts = []
    for code, indices in sorted(by_language.items()):
        t, p = [truth[i] for i in indices], [predicted[i] for i in indices]
        right = sum(a == b for a, b in zip(t, p, strict=True)) / len(indices)
        parts.append(f"{code} {macro(t, p):.2f}/{right:.2f} ({len(indices)})")
    print("  per language (macro-F1/accuracy): " + ", ".join(parts))
    confusions = Counter((t, p) for t, p in zip(truth, predicted, strict=True) if t != p)
    print(
        "  most confused (truth -> predicted): " + ", ".join(f"{t}->{p} {n}" for (t, p), n in confusions.most_common(8))
    )
    correct = [t == p for t, p in zip(truth, predicted, strict=True)]
    error, lines = calibration(correct, [conf for _, conf in results])
    print(f"  calibration: expected calibration error {error:.3f}")
    for line in lines:
        print("    " + line)
    print(f"  {micros:.0f} µs/message (rules + classifier)")
    # The threshold below which the classifier's answer becomes `other`.
    chosen = recognizer.classifier.threshold
    sweep = {}
    for threshold in THRESHOLDS:
        recognizer.classifier.threshold = threshold
        sweep[threshold] = macro(truth, [intent for intent, _ in predict(recognizer, rows)])
    recognizer.classifier.threshold = chosen
    print("  macro-F1 by threshold: " + ", ".join(f"{t:.2f}: {f:.3f}" for t, f in sweep.items()))
    # Where the set cannot tell thresholds apart, the higher one: a message nobody understood
    # is better answered with the fallback (a person after three) than with a wrong flow.
    best = max(sweep.values())
    plateau = max(t for t, f in sweep.items() if f >= best - PLATEAU)
    print(f"  threshold in use: {chosen:.2f}; best on this set: {plateau:.2f} (highest within {PLATEAU} of the best)")
    return sweep


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
    print(f"trained on {len(train)} of {len(examples)} examples in {time.perf_counter() - start:.2f} s")
    predicted = [classifier.predict(normalise(t))[0] for t, _, _ in held]
    truth = [i for _, i, _ in held]
    print(f"\nheld-out 20% of the catalog examples: macro-F1 {macro(truth, predicted):.3f} on {len(held)} messages")

    recognizer = brain.dialogue.recognizer
    report("ours: written apart from the examples (bench/data/intents)", load(DATA / "intents"), recognizer)
    report("strangers: public customer messages (bench/data/strangers)", load(DATA / "strangers"), recognizer)


if __name__ == "__main__":
    main()

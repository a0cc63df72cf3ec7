"""Language: scripts, hints, and stickiness — short or neutral messages never switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.language import Decision


@pytest.fixture
def detector(brain):
    return brain.dialogue.detector


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("商品が壊れて届きました", "ja"),
        ("我的包裹还没到", "zh"),
        ("주문한 상품이 아직 안 왔어요", "ko"),
        ("พัสดุยังไม่มาถึงเลยค่ะ", "th"),
        ("وصلني المنتج مكسور", "ar"),
        ("Где моя посылка?", "ru"),
        ("quiero devolver esto", "es"),
        ("my parcel never arrived", "en"),
        ("o meu pedido ainda não chegou", "pt"),
        ("mon colis n'est jamais arrivé", "fr"),
        ("mein Paket ist beschädigt angekommen", "de"),
        ("il pacco non è ancora arrivato", "it"),
    ],
)
def test_a_clear_sentence_is_recognised(detector, text, language):
    assert detector.decide(text, None, None, "en") == Decision(language, False)


@pytest.mark.parametrize("neutral", ["SO-10023", "ok", "👍", "#100234", "sato@example.jp", "12345", "OK!!", "?"])
def test_neutral_or_tiny_messages_never_switch(detector, neutral):
    assert detector.decide(neutral, "ja", None, "en") == Decision("ja", False)


def test_a_clear_sentence_in_another_language_switches(detector):
    assert detector.decide(
        "Entschuldigung, können wir bitte auf Deutsch weiterschreiben?", "en", None, "en"
    ) == Decision("de", True)


def test_a_new_conversation_with_nothing_to_go_on_follows_the_hint_then_the_default(detector):
    assert detector.decide("SO-10023", None, "ko", "en") == Decision("ko", False)
    assert detector.decide("SO-10023", None, "pt-BR", "en") == Decision("pt", False)
    assert detector.decide("SO-10023", None, "sw", "en") == Decision("en", False)  # unsupported hint


def test_kanji_only_text_stays_japanese_in_a_japanese_conversation(detector):
    assert detector.decide("返品希望", "ja", None, "en") == Decision("ja", False)


def test_unsupported_language_falls_back_to_the_default(detector):
    decision = detector.decide("שלום, איפה החבילה שלי", None, None, "en")
    assert decision == Decision("en", False, unsupported=True)


@pytest.mark.parametrize(
    "text",
    [
        "mijn bestelling is na twee weken nog altijd niet binnen",
        "kargom üç gündür aynı yerde bekliyor neden",
        "tôi đã đặt hàng từ tuần trước mà chưa thấy gì",
        "barang yang saya terima tidak sesuai dengan pesanan",
        "proszę o informację kiedy wyślecie moje zamówienie",
        "пакунок прийшов пошкоджений, що мені робити",
        "سفارش من هنوز ارسال نشده است چرا",
    ],
)
def test_a_clear_sentence_in_a_language_we_do_not_speak_gets_the_default_and_says_so(detector, text):
    assert detector.decide(text, None, None, "en") == Decision("en", False, unsupported=True)


def test_a_supported_hint_wins_over_a_foreign_looking_message(detector):
    assert detector.decide("mijn bestelling is na twee weken nog altijd niet binnen", None, "de", "en") == Decision(
        "de", False
    )


def test_a_foreign_sentence_never_moves_an_ongoing_conversation(detector):
    assert detector.decide("barang yang saya terima tidak sesuai dengan pesanan", "es", None, "en") == Decision(
        "es", False
    )


@pytest.mark.parametrize("text", ["сумка пришла без ремешка, кстати", "el código postal es 28014", "manda o link"])
def test_short_supported_messages_that_look_foreign_to_the_ngram_model_stay_supported(detector, text):
    assert not detector.decide(text, None, None, "en").unsupported


# Detects every bench message twice in one process: a fresh conversation and an ongoing English one.
_DETECT_ALL = """
import dataclasses, json, pathlib
from bot.app import load_brain
from bot.config import Settings
detector = load_brain(Settings.from_env()).dialogue.detector
rows = [json.loads(line) for path in sorted(pathlib.Path("bench/data/langid").glob("*.jsonl"))
        for line in path.open(encoding="utf-8") if line.strip()]
decided = [dataclasses.astuple(detector.decide(r["text"], "en", None, "en")) for r in rows]
print(json.dumps([[detector.detect(r["text"]).language, list(d)] for r, d in zip(rows, decided)]))
"""


def test_detection_does_not_depend_on_the_hash_seed():
    """The lexicon lives in sets, whose order changes from one process to the next with the hash
    seed; scores summed in that order must still give every message the same language."""
    root = Path(__file__).parent.parent
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _DETECT_ALL],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2")
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    first, second = (json.loads(out) for out, _ in outputs)
    assert len(first) > 1000
    assert [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b] == []

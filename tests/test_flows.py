"""Flows are data, checked at start-up: a typo stops the bot with the file's name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.app import load_brain
from bot.config import Settings, shipped_folder
from bot.escalation import EscalationRules
from bot.flows import FlowError, load_flows

KEYS = {"ask_order_number", "order_number_invalid", "greeting"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flows.yml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("flows", "complaint"),
    [
        ("flows:\n  greet:\n    - say: no_such_key\n", "unknown catalog key 'no_such_key'"),
        ("flows:\n  teleport:\n    - say: greeting\n", "unknown intent"),
        ("flows:\n  greet:\n    - ask: shoe_size\n      prompt: greeting\n", "unknown slot 'shoe_size'"),
        (
            "flows:\n  greet:\n    - ask: order_number\n      validate: vibes\n      prompt: greeting\n",
            "unknown validator 'vibes'",
        ),
        ("flows:\n  greet:\n    - dance: true\n", "exactly one kind"),
        ("flows:\n  greet:\n    - say: greeting\n      colour: red\n", "unknown fields"),
    ],
)
def test_a_flow_naming_something_unknown_is_rejected_with_the_file_name(tmp_path, flows, complaint):
    path = _write(tmp_path, flows)
    with pytest.raises(FlowError) as error:
        load_flows(path, KEYS)
    assert str(path) in str(error.value)
    assert complaint in str(error.value)


def test_the_shipped_flows_load_and_cover_every_after_sales_intent():
    known_keys = set(load_brain(Settings()).catalog.locales["en"].messages)
    flows = load_flows(shipped_folder("dialogues") / "flows.yml", known_keys)
    for intent in ("track_order", "return_item", "exchange_item", "refund_status", "damaged_item", "wrong_item",
                   "customs_duties", "talk_to_human", "complaint", "greet", "goodbye", "other"):  # fmt: skip
        assert intent in flows


def test_start_up_stops_on_a_broken_flow_file(tmp_path):
    dialogues = tmp_path / "dialogues"
    shutil.copytree(shipped_folder("dialogues"), dialogues)
    (dialogues / "flows.yml").write_text("flows:\n  greet:\n    - say: greting\n", encoding="utf-8")
    with pytest.raises(FlowError, match=r"flows\.yml.*greting"):
        load_brain(Settings(dialogues_dir=dialogues))


def test_escalation_rules_name_known_reasons_and_signals(tmp_path):
    path = tmp_path / "escalation.yml"
    path.write_text("rules:\n  - reason: angry_moon\n    when: {signal: legal}\n", encoding="utf-8")
    with pytest.raises(FlowError, match="angry_moon"):
        EscalationRules.load(path)
    path.write_text("rules:\n  - reason: legal_threat\n    when: {signal: moon}\n", encoding="utf-8")
    with pytest.raises(FlowError, match="unknown signal"):
        EscalationRules.load(path)

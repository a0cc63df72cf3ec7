"""Flows are data, checked at start-up: a typo stops the bot with the file's name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import load_brain
from bot.config import Settings, shipped_folder
from bot.contracts import INTENTS
from bot.dialogue.steps import STEP_KINDS
from bot.escalation import EscalationRules
from bot.flows import FlowError, check_flows, load_flows
from bot.validation import ConfigError

ROOT = Path(__file__).parent.parent
KEYS = {
    "ask_order_number",
    "order_number_invalid",
    "greeting",
    "ask_verification",
    "verification_failed",
    "verification_locked",
    "return_window_expired",
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flows.yml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("flows", "complaint"),
    [
        ("flows:\n  greet:\n    - say: no_such_key\n", "unknown catalog key 'no_such_key'"),
        ("flows:\n  teleport:\n    - say: greeting\n", "unknown intent"),
        ("flows:\n  greet:\n    - ask: reason\n      prompt: greeting\n", "exactly one kind"),
        ("flows:\n  greet:\n    - handoff: angry_moon\n", "handoff: Input should be"),
        (
            "flows:\n  return_item:\n    - ask_order_number: ask_order_number\n    - verify: greeting\n"
            "    - check_window: retrun_item\n",
            "check_window: Input should be",
        ),
        ("flows:\n  track_order:\n    - verify: greeting\n", "'verify' needs an 'ask_order_number' step before it"),
        ("flows:\n  track_order:\n    - inform: greeting\n", "'inform' needs a 'verify' step before it"),
        ("flows:\n  greet:\n    - dance: true\n", "exactly one kind"),
        ("flows:\n  greet:\n    - say: greeting\n      colour: red\n", "unknown field 'colour' for a 'say' step"),
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
    with pytest.raises(ConfigError, match=r"flows\.yml.*greting"):
        load_brain(Settings(dialogues_dir=dialogues))


def test_escalation_rules_name_known_reasons_and_signals(tmp_path):
    path = tmp_path / "escalation.yml"
    path.write_text("rules:\n  - reason: angry_moon\n    when: {signal: legal}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="angry_moon"):
        EscalationRules.load(path)
    path.write_text("rules:\n  - reason: legal_threat\n    when: {signal: moon}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"signal: 'moon' is not one of"):
        EscalationRules.load(path)


def test_every_problem_is_reported_with_its_line(tmp_path):
    path = _write(
        tmp_path, "flows:\n  greet:\n    - say: greeting\n    - say: greting\n  teleport:\n    - say: greeting\n"
    )
    problems = [str(p) for p in check_flows(path, KEYS)]
    assert problems == [
        f"{path}:4: flow 'greet' step 2: unknown catalog key 'greting'",
        f"{path}:5: flow 'teleport': unknown intent (known: {', '.join(INTENTS)})",
    ]


def test_the_flows_file_documents_every_step_kind():
    """A new step kind is one module and one registry entry; the shop's documentation follows."""
    header = (shipped_folder("dialogues") / "flows.yml").read_text(encoding="utf-8").split("templates:")[0]
    assert [kind for kind in STEP_KINDS if f"#   {kind}:" not in header] == []


def test_reading_the_flows_does_not_load_the_classifier():
    """Checking configuration stays quick: the step kinds import no scikit-learn, store or network code."""
    code = "import sys, bot.flows; print(sorted(m for m in ('sklearn', 'redis', 'httpx', 'PIL') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"

"""Conversation state is typed and versioned: what an earlier release saved still loads and goes on."""

from __future__ import annotations

import json
from pathlib import Path

from bot.contracts import HandoffState
from bot.dialogue import Facts, RelayToAgent
from bot.state import STATE_VERSION, Conversation
from tests.factories import NOW, message

SAVED_BY_0_1 = Path(__file__).parent / "fixtures" / "state_v0.json"  # unversioned, as release 0.1 wrote it


def test_a_state_saved_by_the_first_release_loads_with_everything_in_it():
    state = Conversation.load(json.loads(SAVED_BY_0_1.read_text(encoding="utf-8")))
    assert state.version == STATE_VERSION
    assert (state.language, state.slots.order_number, state.slots.verified) == ("ja", "SO-10023", True)
    assert (state.handoff.state, state.handoff.agent, state.handoff.priority) == ("assigned", "Mika", "high")
    assert state.ticket is not None and state.ticket.reasons[0].rule == "signal:legal"
    assert len(state.transcript) == 17 and state.transcript[0].who == "customer"


def test_the_conversation_goes_on_from_an_old_state(brain):
    state = Conversation.load(json.loads(SAVED_BY_0_1.read_text(encoding="utf-8")))
    inbound = message("まだですか？", conversation=state.id)
    outcome = brain.dialogue.step(state, inbound, Facts(now=NOW))
    assert outcome.state.handoff.state == HandoffState.ASSIGNED
    assert [type(e) for e in outcome.effects] == [RelayToAgent]


def test_fields_from_a_newer_release_are_ignored_not_fatal():
    data = Conversation.new("telegram:1", "telegram", "1").dump()
    data.update(version=STATE_VERSION + 1, mood="cheerful")
    assert Conversation.load(data).id == "telegram:1"


def test_saving_and_loading_gives_the_same_state():
    state = Conversation.load(json.loads(SAVED_BY_0_1.read_text(encoding="utf-8")))
    assert Conversation.load(json.loads(json.dumps(state.dump()))) == state

"""The dialogue step on its own: state, message and facts in; state, replies and effects out.

No store, no network: these tests call `Dialogue.step` directly, as a shop's own tests could.
"""

from __future__ import annotations

import pytest

from bot.contracts import HandoffState, TicketStatus
from bot.dialogue import CountFailedVerification, Enqueue, Facts, PhotoCheck, SaveTicket
from bot.state import Conversation
from bot.values import Fragment
from tests.factories import NOW, message, order


@pytest.fixture
def dialogue(brain):
    return brain.dialogue


def test_an_order_question_asks_for_proof_and_reveals_nothing(dialogue):
    outcome = dialogue.step(None, message("where is my parcel SO-10023?"), Facts(now=NOW, order=order()))
    assert [r.key for r in outcome.replies] == ["ask_verification"]
    assert outcome.replies[0].values == {"order_number": "SO-10023"}
    assert outcome.state.slots.order_number == "SO-10023" and outcome.state.slots.verified is False
    assert outcome.effects == []


def test_the_right_proof_tells_the_status_as_raw_values_for_the_renderer(dialogue):
    first = dialogue.step(None, message("where is my parcel SO-10023?"), Facts(now=NOW, order=order()))
    facts = Facts(now=NOW, order=order(status="in_transit"))
    outcome = dialogue.step(first.state, message("sato@example.jp"), facts)
    assert [r.key for r in outcome.replies] == ["order_status"]
    assert outcome.replies[0].values["status"] == Fragment("statuses", "in_transit")
    assert outcome.state.slots.verified is True


def test_a_wrong_proof_is_counted_against_the_order(dialogue):
    first = dialogue.step(None, message("where is my parcel SO-10023?"), Facts(now=NOW, order=order()))
    outcome = dialogue.step(first.state, message("thief@example.com"), Facts(now=NOW, order=order()))
    assert [r.key for r in outcome.replies] == ["verification_failed"]
    assert outcome.replies[0].values == {"attempts_left": 2}
    assert outcome.effects == [CountFailedVerification("SO-10023")]


def test_the_step_never_changes_the_state_it_was_given(dialogue):
    first = dialogue.step(None, message("where is my parcel SO-10023?"), Facts(now=NOW, order=order()))
    before = first.state.dump()
    dialogue.step(first.state, message("sato@example.jp"), Facts(now=NOW, order=order()))
    assert first.state.dump() == before


def test_a_complaint_ticket_promises_a_review_not_a_refund(dialogue):
    state = None
    for text in ("I want to file a complaint about your service, order SO-10023", "sato@example.jp"):
        outcome = dialogue.step(state, message(text), Facts(now=NOW, order=order(), ticket_id="AS-2611-TEST1"))
        state = outcome.state
    ticket_reply = next(r for r in outcome.replies if r.key == "ticket_created")
    assert ticket_reply.values["next_steps"] == Fragment("next_steps", "review")
    saved = [e.ticket for e in outcome.effects if isinstance(e, SaveTicket)]
    assert saved[-1].intent == "complaint" and saved[-1].status == TicketStatus.OPEN


def test_a_request_for_a_person_queues_the_conversation(dialogue):
    outcome = dialogue.step(None, message("let me talk to a real person"), Facts(now=NOW, ticket_id="AS-2611-TEST2"))
    assert outcome.state.handoff.state == HandoffState.QUEUED
    assert outcome.state.handoff.reason == "customer_request"
    assert [type(e) for e in outcome.effects if isinstance(e, Enqueue)] == [Enqueue]
    assert "handoff_queued" in [r.key for r in outcome.replies]


def test_photos_are_counted_only_when_the_flow_asks_for_them(dialogue):
    state: Conversation | None = None
    for text in ("my mug arrived broken", "SO-10023", "sato@example.jp"):
        state = dialogue.step(state, message(text), Facts(now=NOW, order=order())).state
    photo = PhotoCheck(True, ref="a.jpg")
    outcome = dialogue.step(state, message(""), Facts(now=NOW, order=order(), photos=(photo,)))
    assert [r.key for r in outcome.replies] == ["photo_received"]
    assert outcome.state.slots.photos == 1 and outcome.state.photo_refs == ["a.jpg"]


def test_the_sla_market_comes_from_a_vouched_phone_when_no_order_is_verified(dialogue):
    """A UK WhatsApp customer (Europe: 30 minutes) is not given the 60 minutes of elsewhere."""
    from tests.factories import NOW

    inbound = message("let me talk to a real person", conversation="whatsapp:447700900123")
    inbound = type(inbound)(**{**{f: getattr(inbound, f) for f in inbound.__slots__}, "channel": "whatsapp",
                               "verified_phone": "+447700900123"})  # fmt: skip
    outcome = dialogue.step(None, inbound, Facts(now=NOW, ticket_id="AS-2611-TEST3"))
    queued = next(r for r in outcome.replies if r.key == "handoff_queued")
    assert queued.values["wait"].minutes == 30

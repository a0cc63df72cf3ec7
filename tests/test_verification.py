"""Nothing about an order before verification; lock-outs per conversation and per order number."""

from __future__ import annotations

import pytest

from tests.factories import NOW, message, order

# What the fixture order would give away, as an English reply writes it (dates included).
SECRETS = ("EJ123456789JP", "Japan Post", "12,800", "12800", "sato@", "150-0001", "DDP", "November 3", "November 15")

OPENERS = {
    "track_order": "where is my parcel SO-10023",
    "refund_status": "has my refund for SO-10023 been issued",
    "customs_duties": "why must I pay customs duties on SO-10023",
    "return_item": "I want to return order SO-10023",
    "exchange_item": "I want to exchange SO-10023 for a bigger size",
    "damaged_item": "SO-10023 arrived broken",
    "wrong_item": "you sent me the wrong item, order SO-10023",
    "complaint": "I want to complain about order SO-10023, terrible service",
}


@pytest.mark.parametrize("flow", sorted(OPENERS))
def test_no_flow_reveals_anything_before_verification(make_manager, run, flow):
    manager = make_manager([order()])
    turns = [
        run(manager.handle(message(text, received_at=NOW)))
        for text in (OPENERS[flow], "wrong@example.com", "also@wrong.jp")
    ]
    # The bot does answer: it asks for proof, then turns down each wrong one (silence would leak nothing too).
    keys = [[r.key for r in replies] for replies in turns]
    assert "ask_verification" in keys[0] and "verification_failed" in keys[1] and "verification_failed" in keys[2]
    said = [r.text for replies in turns for r in replies]
    leaked = [s for s in SECRETS if any(s in text for text in said)]
    assert leaked == []
    state = run(manager.conversation("console:c1"))
    assert state.slots.verified is False


def test_the_leak_check_sees_details_once_the_customer_is_verified(make_manager, run):
    """The same order, the right proof: its carrier, tracking and dates are told, so SECRETS can catch a leak."""
    manager = make_manager([order(status="shipped", delivered_at=None)])
    run(manager.handle(message(OPENERS["track_order"], received_at=NOW)))
    replies = run(manager.handle(message("sato@example.jp", received_at=NOW)))
    assert "order_status" in [r.key for r in replies]
    told = [s for s in SECRETS if any(s in r.text for r in replies)]
    assert {"EJ123456789JP", "Japan Post", "November 3"} <= set(told)


def test_three_failures_on_one_order_number_lock_it_for_every_conversation(make_manager, run):
    manager = make_manager([order()])
    for n, guess in enumerate(("a@x.com", "b@x.com")):
        conversation = f"console:attacker{n}"
        run(manager.handle(message("where is SO-10023", conversation=conversation, received_at=NOW)))
        run(manager.handle(message(guess, conversation=conversation, received_at=NOW)))
    # A third conversation, a third wrong guess: the order number is now locked.
    run(manager.handle(message("where is SO-10023", conversation="console:attacker3", received_at=NOW)))
    replies = run(manager.handle(message("c@x.com", conversation="console:attacker3", received_at=NOW)))
    assert "verification_locked" in [r.key for r in replies]
    # Even the real owner, in a new conversation, is passed to a person instead of being told anything.
    run(manager.handle(message("where is SO-10023", conversation="console:owner", received_at=NOW)))
    replies = run(manager.handle(message("sato@example.jp", conversation="console:owner", received_at=NOW)))
    keys = [r.key for r in replies]
    assert "verification_locked" in keys and "order_status" not in keys
    state = run(manager.conversation("console:owner"))
    assert state.handoff.reason == "verification_locked"


def test_correcting_the_order_number_asks_for_proof_again_without_counting_a_failure(make_manager, run):
    manager = make_manager([order(), order(number="SO-10024")])
    run(manager.handle(message("where is SO-10099", received_at=NOW)))
    replies = run(manager.handle(message("sorry, it is SO-10024", received_at=NOW)))
    keys = [r.key for r in replies]
    assert "ask_verification" in keys and "verification_failed" not in keys
    assert run(manager.conversation("console:c1")).failures == 0

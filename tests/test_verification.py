"""Nothing about an order before verification; one proof per message; lock-outs per conversation,
per order number and per sender; an order system that cannot answer is no failed verification."""

from __future__ import annotations

import pytest

from bot.messages import Inbound
from bot.order_sources import HttpOrders, OrderApiError
from tests.factories import NOW, message, order
from tests.shop_api import closed_port, serve_shop

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


# -- one proof per message -----------------------------------------------------------------------


def _keys(replies):
    return [r.key for r in replies]


def _vfail(run, store, number="SO10023"):
    return int(run(store.redis.get(store.key("vfail", number))) or 0)


def test_a_message_holding_180_postcodes_is_one_failed_attempt_even_with_the_right_one_among_them(
    make_manager, run, store
):
    manager = make_manager([order()])
    run(manager.handle(message("where is SO-10023", received_at=NOW)))
    postcodes = ", ".join(f"150-{n:04d}" for n in range(180))  # 150-0001, the right one, is the second
    replies = run(manager.handle(message(postcodes, received_at=NOW)))
    assert _keys(replies) == ["verification_failed", "verification_one_proof"]
    state = run(manager.conversation("console:c1"))
    assert state.slots.verified is False and state.failures == 1
    assert _vfail(run, store) == 1


def test_the_same_list_without_commas_is_one_failed_attempt_too(make_manager, run):
    manager = make_manager([order()])
    run(manager.handle(message("where is SO-10023", received_at=NOW)))
    replies = run(manager.handle(message(" ".join(f"150-{n:04d}" for n in range(180)), received_at=NOW)))
    assert _keys(replies) == ["verification_failed", "verification_one_proof"]
    assert run(manager.conversation("console:c1")).slots.verified is False


def test_two_right_proofs_in_one_message_are_still_one_failed_attempt(make_manager, run):
    manager = make_manager([order()])
    run(manager.handle(message("where is SO-10023", received_at=NOW)))
    replies = run(manager.handle(message("sato@example.jp and 150-0001", received_at=NOW)))
    assert _keys(replies) == ["verification_failed", "verification_one_proof"]
    replies = run(manager.handle(message("sato@example.jp", received_at=NOW)))  # one at a time: fine
    assert "order_status" in _keys(replies)


def test_a_message_with_no_proof_in_it_is_not_an_attempt(make_manager, run):
    manager = make_manager([order()])
    run(manager.handle(message("where is SO-10023", received_at=NOW)))
    replies = run(manager.handle(message("give me 2 minutes, I'll look for it", received_at=NOW)))
    assert "verification_failed" not in _keys(replies)
    assert run(manager.conversation("console:c1")).failures == 0


@pytest.mark.parametrize(
    "proof",
    [
        "ｓａｔｏ＠ｅｘａｍｐｌｅ．ｊｐ",
        "〒１５０－０００１",
        "＋８１ ９０－１２３４－５６７８",
        "SO-10023 ０９０１２３４５６７８",
    ],
)
def test_full_width_proofs_verify(make_manager, run, proof):
    manager = make_manager([order()])
    run(manager.handle(message("where is SO-10023", received_at=NOW)))
    assert "order_status" in _keys(run(manager.handle(message(proof, received_at=NOW))))


@pytest.mark.parametrize(("typed", "shown"), [("ＳＯ－１００２３", "SO-10023"), ("so10023", "SO10023")])
def test_full_width_and_dashless_numbers_find_the_order_and_count_against_it(make_manager, run, store, typed, shown):
    manager = make_manager([order()])
    replies = run(manager.handle(message(f"where is my parcel {typed}", received_at=NOW)))
    assert replies[-1].key == "ask_verification" and shown in replies[-1].text
    run(manager.handle(message("nobody@example.com", received_at=NOW)))
    assert _vfail(run, store) == 1  # the same counter as SO-10023's: no way around the lock by respelling
    replies = run(manager.handle(message("sato@example.jp", received_at=NOW)))
    assert "order_status" in _keys(replies)
    assert run(manager.conversation("console:c1")).slots.order_number == "SO-10023"  # as the shop writes it


# -- WhatsApp vouches only for an exact number ------------------------------------------------------


def _whatsapp(text, sender, conversation=None):
    return Inbound(
        "whatsapp", conversation or f"whatsapp:{sender}", sender, text=text, verified_phone=sender, received_at=NOW
    )


def test_a_uk_sender_does_not_vouch_for_a_japanese_order_sharing_its_last_digits(make_manager, run):
    # +44 7000 123456 and 070-0012-3456 (+81 70 0012 3456) share their last ten digits.
    manager = make_manager([order(phone="070-0012-3456", market="JP")])
    replies = run(manager.handle(_whatsapp("where is SO-10023", "447000123456")))
    assert "ask_verification" in _keys(replies) and "order_status" not in _keys(replies)
    assert run(manager.conversation("whatsapp:447000123456")).slots.verified is False


def test_the_order_phone_is_read_in_its_market_and_vouched_for_exactly(make_manager, run):
    manager = make_manager([order(phone="070-0012-3456", market="JP")])
    replies = run(manager.handle(_whatsapp("where is SO-10023", "817000123456")))
    assert "order_status" in _keys(replies)


def test_a_typed_phone_still_proves_by_its_last_digits(make_manager, run):
    manager = make_manager([order(phone="070-0012-3456", market="JP")])
    run(manager.handle(message("where is SO-10023", received_at=NOW)))
    assert "order_status" in _keys(run(manager.handle(message("+81 70-0012-3456", received_at=NOW))))


# -- per sender, across conversations -------------------------------------------------------------


def _from(user, conversation, text):
    return Inbound("console", conversation, user, text=text, received_at=NOW)


def test_one_sender_guessing_across_conversations_and_orders_is_stopped(make_manager, run):
    numbers = ["SO-20001", "SO-20002", "SO-20003", "SO-20004"]
    manager = make_manager([order(number=n) for n in numbers])
    # Five wrong guesses by mallory: two orders, two conversations each, never three on one order.
    guesses = [("SO-20001", "m1"), ("SO-20001", "m2"), ("SO-20002", "m3"), ("SO-20002", "m4"), ("SO-20003", "m5")]
    for number, conversation in guesses:
        run(manager.handle(_from("mallory", f"console:{conversation}", f"where is {number}")))
        replies = run(manager.handle(_from("mallory", f"console:{conversation}", "guess@example.com")))
    assert "verification_locked" in _keys(replies)  # the fifth
    # Even with the right proof, mallory is stopped now, on any order.
    run(manager.handle(_from("mallory", "console:m6", "where is SO-20004")))
    replies = run(manager.handle(_from("mallory", "console:m6", "sato@example.jp")))
    assert "verification_locked" in _keys(replies) and "order_status" not in _keys(replies)
    # Someone else is not.
    run(manager.handle(_from("sato", "console:s1", "where is SO-20004")))
    assert "order_status" in _keys(run(manager.handle(_from("sato", "console:s1", "sato@example.jp"))))


# -- an unknown number and a wrong proof look and cost the same -------------------------------------


def test_an_unknown_number_and_a_wrong_proof_take_the_same_path(make_manager, run, store):
    with serve_shop([{"number": "SO-10023", "email": "sato@example.jp", "market": "JP"}]) as api:
        manager = make_manager()
        manager.orders = HttpOrders(api.url)
        seen = {}
        for number in ("SO-10023", "SO-99999"):
            conversation = f"console:{number}"
            run(manager.handle(message(f"where is {number}", conversation=conversation, received_at=NOW)))
            before = len(api.hits)
            replies = run(manager.handle(message("nobody@example.com", conversation=conversation, received_at=NOW)))
            seen[number] = [(r.key, r.text) for r in replies]
            assert len(api.hits) == before  # asked once per number, kept for the verification step
        assert seen["SO-10023"] == seen["SO-99999"]
        assert _vfail(run, store, "SO10023") == _vfail(run, store, "SO99999") == 1


# -- the order system is down: told, never counted, a person offered the second time ----------------


@pytest.mark.parametrize("outage", ["closed port", 500, "slow"])
def test_an_unreachable_order_system_is_no_failed_verification(make_manager, run, store, outage):
    with serve_shop([{"number": "SO-10023", "email": "sato@example.jp", "market": "JP"}]) as api:
        manager = make_manager()
        down = f"http://127.0.0.1:{closed_port()}/orders/{{number}}" if outage == "closed port" else api.url
        manager.orders = HttpOrders(down, timeout=0.5)
        api.mode = outage if outage != "closed port" else None
        assert "ask_verification" in _keys(run(manager.handle(message("where is SO-10023", received_at=NOW))))
        first = run(manager.handle(message("sato@example.jp", received_at=NOW)))
        assert _keys(first) == ["order_lookup_unavailable"] and first[0].buttons == ()
        state = run(manager.conversation("console:c1"))
        assert state.failures == 0 and _vfail(run, store) == 0
        assert state.flow == "track_order" and state.waiting and not state.slots.verified  # stays where it was
        second = run(manager.handle(message("sato@example.jp", received_at=NOW)))
        assert _keys(second) == ["order_lookup_unavailable"]
        assert [b.payload for b in second[0].buttons] == ["human"]  # a person, offered
        assert run(manager.conversation("console:c1")).failures == 0
        # The system is back: the same proof goes through.
        api.mode = None
        manager.orders = HttpOrders(api.url)
        assert "order_status" in _keys(run(manager.handle(message("sato@example.jp", received_at=NOW))))


def test_the_offered_person_is_one_tap_away(make_manager, run):
    class Down:
        async def get(self, number):
            raise OrderApiError("order API unreachable: ConnectError")

    manager = make_manager()
    manager.orders = Down()
    run(manager.handle(message("where is SO-10023", received_at=NOW)))
    run(manager.handle(message("sato@example.jp", received_at=NOW)))
    run(manager.handle(message("sato@example.jp", received_at=NOW)))
    replies = run(manager.handle(message("", button="human", received_at=NOW)))
    assert "handoff_queued" in _keys(replies)
    assert run(manager.conversation("console:c1")).handoff.reason == "customer_request"


def test_a_verified_customer_is_told_when_the_order_cannot_be_read_now(make_manager, run):
    manager = make_manager([order()])
    run(manager.handle(message("where is SO-10023", received_at=NOW)))
    run(manager.handle(message("sato@example.jp", received_at=NOW)))
    working = manager.orders

    class Down:
        async def get(self, number):
            raise OrderApiError("order API answered HTTP 503")

    manager.orders = Down()
    replies = run(manager.handle(message("and has my refund been issued?", received_at=NOW)))
    assert "order_lookup_unavailable" in _keys(replies) and "ask_verification" not in _keys(replies)
    manager.orders = working
    replies = run(manager.handle(message("can you check again?", received_at=NOW)))
    assert "refund_status" in _keys(replies) and "ask_verification" not in _keys(replies)

"""`verify: PROMPT` — the customer proves the order is theirs before anything about it is said.

Accepted proofs: the order's email, phone or postcode (see `Order.proves_ownership`), one per
message (`bot.proofs`), or a phone number the platform vouches for (WhatsApp), which must be
exactly the order's (`bot.phones`). A wrong number and a wrong proof get the same answer and go
through the same code, so order numbers cannot be enumerated.

Failures are limited per conversation, per order number and per sender. When a limit is reached
and the bot can send e-mail, a one-time code goes to the order's address (the manager sends it)
and the customer types it here; otherwise, or when codes run out, a person takes over.

When the shop's order system cannot answer, nothing is compared and nothing counted: the
customer is told (`order_lookup_unavailable`) and may try again; the second time in a row the
`human` button is offered with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bot.contracts import Button, Event, Reason
from bot.dialogue.flow import wait
from bot.dialogue.outcome import (
    CountFailedVerification,
    CountLookupOutage,
    CountUnlockAttempt,
    DropUnlockCode,
    ForgetLookupOutages,
    SendUnlockCode,
    UnlockCode,
)
from bot.dialogue.people import hand_off_by_rule
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn, is_new_request
from bot.order import Order, canonical_order_number, same_order_number
from bot.phones import vouches_for
from bot.proofs import Offered, code_matches, has_digits, offered, typed_code
from bot.values import Minutes

if TYPE_CHECKING:
    from bot.intents import Understanding

UNAVAILABLE = "order_lookup_unavailable"
OUTAGES_BEFORE_A_PERSON = 2  # the second "cannot check now" in a row offers the `human` button


class Verify(Step):
    kind: ClassVar[str] = "verify"
    catalog_fields: ClassVar[tuple[str, ...]] = (
        "verify",
        "failed",
        "locked",
        "one_proof",
        "code_sent",
        "code_wrong",
        "code_ask",
    )
    provides: ClassVar[dict[str, frozenset[str]]] = {
        "verify": frozenset({"order_number"}),
        "failed": frozenset({"attempts_left"}),
        "code_sent": frozenset({"minutes"}),
        "code_wrong": frozenset({"attempts_left"}),
        "code_ask": frozenset({"minutes"}),
    }
    awaits_proof: ClassVar[bool] = True

    verify: str
    failed: str = "verification_failed"
    locked: str = "verification_locked"
    one_proof: str = "verification_one_proof"  # after `failed`, when one message held several proofs
    code_sent: str = "unlock_code_sent"
    code_wrong: str = "unlock_code_wrong"
    code_ask: str = "unlock_code_ask"

    def run(self, turn: Turn) -> bool:
        state, slots = turn.state, turn.state.slots
        order = _named_order(turn)
        if slots.verified and order:
            _adopt(turn, order)
            return True
        if _vouched_by_platform(turn):
            return True
        if Event.VERIFICATION_LOCKED in turn.events:
            turn.say(self.locked)
            hand_off_by_rule(turn, Reason.VERIFICATION_LOCKED)
            return False
        if slots.verified and turn.facts.order_unavailable and not state.waiting:
            state.waiting = True  # verified before, but the order cannot be read now: wait here
            _unavailable(turn)
            return False
        return wait(turn)

    def prompt(self, turn: Turn) -> None:
        if _pending_code(turn):
            turn.say(self.code_ask, buttons=(Button.HUMAN,), minutes=Minutes(turn.d.policy.unlock_code_minutes))
        else:
            turn.say(self.verify, order_number=turn.state.slots.order_number)

    def answer(self, turn: Turn, understanding: Understanding | None) -> bool:
        text, slots, facts = turn.text, turn.state.slots, turn.facts
        if turn.inbound.attachments and not text:
            return False
        proofs = offered(text, turn.d.numbers, slots.order_number)
        code = _pending_code(turn)
        attempt = has_digits(text) if code else not proofs.nothing
        if is_new_request(understanding) and not attempt:
            return False
        if not facts.order_unavailable and facts.proof.lookup_outages:
            turn.effects.append(ForgetLookupOutages(turn.state.id))
        if slots.verified and (facts.order_unavailable or _named_order(turn)):
            if facts.order_unavailable:
                _unavailable(turn)
            return True  # run() goes on, or waits here for the order system
        if _vouched_by_platform(turn):
            return True
        if turn.new_number and not _proof_beside_number(turn):
            self.prompt(turn)  # a corrected order number: ask again for its proof
            return True
        if not attempt:
            return False  # "one moment", "why?", "2 minutes": not an attempt, so not a failure
        if facts.order_unavailable:
            _unavailable(turn)  # nothing compared, nothing counted: the customer may try again
        elif code:
            self._take_code(turn, code)
        else:
            self._check_proof(turn, proofs)
        return True  # answered: verified, or failed and the step stays

    def _check_proof(self, turn: Turn, proofs: Offered) -> None:
        state, slots, policy, counts = turn.state, turn.state.slots, turn.d.policy, turn.facts.proof
        limit, sender_limit = policy.max_verification_failures, policy.max_sender_failures
        # Compared whatever the counters say, for a known number or not: the same work every time.
        proved = proofs.proves(_named_order(turn))
        locked = state.failures >= limit or counts.order_failures >= limit or counts.sender_failures >= sender_limit
        if proved and not locked:
            order = _named_order(turn)
            assert order is not None  # proved against it
            _verified(turn, order)
            return
        if locked:
            self._lock(turn)  # already locked: nothing more is counted or compared
            return
        state.failures += 1
        turn.effects.append(CountFailedVerification(slots.order_number or ""))
        left = min(
            limit - state.failures,
            limit - (counts.order_failures + 1),
            sender_limit - (counts.sender_failures + 1),
        )
        if left <= 0:
            self._lock(turn)
            return
        turn.say(self.failed, attempts_left=left)
        if proofs.several:
            turn.say(self.one_proof)

    def _lock(self, turn: Turn) -> None:
        """A limit is reached: a one-time code to the order's address when the bot can mail one,
        else a person. Said the same for an order number that does not exist."""
        policy, counts = turn.d.policy, turn.facts.proof
        if not (counts.can_mail_codes and counts.codes_sent < policy.unlock_codes):
            turn.events.add(Event.VERIFICATION_LOCKED)  # run() hands off
            return
        order = _named_order(turn)
        number = canonical_order_number(turn.state.slots.order_number or "")
        turn.effects.append(SendUnlockCode(turn.state.id, number, order.email if order else "", turn.language))
        turn.say(self.code_sent, minutes=Minutes(policy.unlock_code_minutes))

    def _take_code(self, turn: Turn, code: UnlockCode) -> None:
        state, policy = turn.state, turn.d.policy
        number = canonical_order_number(state.slots.order_number or "")
        order = _named_order(turn)
        typed = typed_code(turn.text)
        if turn.facts.now < code.expires_at and order and code_matches(typed, code.salt, code.digest):
            turn.effects.append(DropUnlockCode(state.id, number))  # single use
            _verified(turn, order)
            return
        attempts = code.attempts + 1
        if turn.facts.now >= code.expires_at or attempts >= policy.unlock_code_attempts:
            turn.effects.append(DropUnlockCode(state.id, number))
            turn.events.add(Event.VERIFICATION_LOCKED)  # run() hands off
            return
        turn.effects.append(CountUnlockAttempt(state.id, number, attempts))
        turn.say(self.code_wrong, attempts_left=policy.unlock_code_attempts - attempts)


def _named_order(turn: Turn) -> Order | None:
    """The order the conversation names, when the shop knows it (numbers compared canonically)."""
    order = turn.facts.order
    return order if order and same_order_number(order.number, turn.state.slots.order_number) else None


def _pending_code(turn: Turn) -> UnlockCode | None:
    return turn.facts.proof.unlock


def _verified(turn: Turn, order: Order) -> None:
    turn.state.slots.verified = True
    turn.state.failures = 0
    _adopt(turn, order)


def _adopt(turn: Turn, order: Order) -> None:
    """Once verified, the conversation names the order as the shop writes it ("so10023" was SO-10023)."""
    turn.state.slots.order_number = order.number


def _unavailable(turn: Turn) -> None:
    outages = turn.facts.proof.lookup_outages + 1
    turn.say(UNAVAILABLE, buttons=(Button.HUMAN,) if outages >= OUTAGES_BEFORE_A_PERSON else ())
    turn.effects.append(CountLookupOutage(turn.state.id))


def _vouched_by_platform(turn: Turn) -> bool:
    """WhatsApp vouches for the sender's number: exactly the order's phone (E.164) verifies."""
    order = _named_order(turn)
    if order and vouches_for(turn.state.verified_phone, order.phone, order.market):
        _verified(turn, order)
        return True
    return False


def _proof_beside_number(turn: Turn) -> bool:
    """Whether a message naming a new order number also offers something besides it."""
    proofs = offered(turn.text, turn.d.numbers, turn.state.slots.order_number)
    return not proofs.nothing

"""`verify: PROMPT` — the customer proves the order is theirs before anything about it is said.

Accepted proofs: the order's email, phone or postcode (see `Order.proves_ownership`), or a
phone number the platform vouches for (WhatsApp). A wrong number and a wrong proof get the same
answer, so order numbers cannot be enumerated; too many failures lock the order and hand off.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from bot.contracts import Event, Reason
from bot.dialogue.flow import wait
from bot.dialogue.outcome import CountFailedVerification
from bot.dialogue.people import hand_off_by_rule
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn, is_new_request
from bot.order import phones_match

if TYPE_CHECKING:
    from bot.intents import Understanding

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


class Verify(Step):
    kind: ClassVar[str] = "verify"
    catalog_fields: ClassVar[tuple[str, ...]] = ("verify", "failed", "locked")
    provides: ClassVar[dict[str, frozenset[str]]] = {
        "verify": frozenset({"order_number"}),
        "failed": frozenset({"attempts_left"}),
    }
    awaits_proof: ClassVar[bool] = True

    verify: str
    failed: str = "verification_failed"
    locked: str = "verification_locked"

    def run(self, turn: Turn) -> bool:
        order, slots = turn.facts.order, turn.state.slots
        if slots.verified and order and order.number == slots.order_number:
            return True
        if _vouched_by_platform(turn):
            return True
        if Event.VERIFICATION_LOCKED in turn.events:
            turn.say(self.locked)
            hand_off_by_rule(turn, Reason.VERIFICATION_LOCKED)
            return False
        return wait(turn)

    def prompt(self, turn: Turn) -> None:
        turn.say(self.verify, order_number=turn.state.slots.order_number)

    def answer(self, turn: Turn, understanding: Understanding | None) -> bool:
        text = turn.text
        looks_like_proof = bool(_EMAIL.search(text)) or any(c.isdigit() for c in text)
        if turn.inbound.attachments and not text:
            return False
        if is_new_request(understanding) and not looks_like_proof:
            return False
        if _vouched_by_platform(turn):
            return True
        if turn.new_number and not _proof_beside_number(turn):
            self.prompt(turn)  # a corrected order number: ask again for its proof
            return True
        if not looks_like_proof:
            return False  # "one moment", "why?": not an attempt, so not a failure
        self._check_proof(turn)
        return True  # answered: verified, or failed and the step stays

    def _check_proof(self, turn: Turn) -> None:
        state, slots, order = turn.state, turn.state.slots, turn.facts.order
        limit = turn.d.policy.max_verification_failures
        if turn.facts.order_failures >= limit:
            turn.events.add(Event.VERIFICATION_LOCKED)
            return
        text = turn.text
        candidates = {text, *_EMAIL.findall(text), *_PHONE.findall(text)}
        if slots.order_number:
            candidates.add(text.upper().replace(slots.order_number, " ").replace("#", " ").strip())
        candidates.discard("")
        if order and order.number == slots.order_number and any(order.proves_ownership(c) for c in candidates):
            slots.verified = True
            state.failures = 0
            return
        state.failures += 1
        if slots.order_number:
            turn.effects.append(CountFailedVerification(slots.order_number))
        failures = max(state.failures, turn.facts.order_failures + 1)
        if failures >= limit:
            turn.events.add(Event.VERIFICATION_LOCKED)
        else:
            turn.say(self.failed, attempts_left=limit - failures)


def _vouched_by_platform(turn: Turn) -> bool:
    """WhatsApp vouches for the sender's number: a match with the order's phone verifies."""
    phone, order, slots = turn.state.verified_phone, turn.facts.order, turn.state.slots
    if phone and order and order.number == slots.order_number and phones_match(phone, order.phone):
        slots.verified = True
        return True
    return False


def _proof_beside_number(turn: Turn) -> bool:
    rest = turn.text.upper().replace(turn.state.slots.order_number or "", " ").replace("#", " ")
    return bool(_EMAIL.search(rest) or any(c.isdigit() for c in rest))

"""One turn's working memory: the copied state, what the manager looked up, and what is said.

All mutation stays on the copied state; the modules around (routing, flow, steps, handoff,
tickets) read and change it through a `Turn`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from bot.dialogue.outcome import Effect, Facts, KeepPhoto, Reply
from bot.messages import Inbound
from bot.order import Order
from bot.state import Conversation, Said
from bot.values import Value

if TYPE_CHECKING:
    from bot.dialogue.core import Dialogue
    from bot.dialogue.steps.base import Step
    from bot.intents import Understanding

TRANSCRIPT_LIMIT = 200
SURE = 0.6  # the classifier's confidence needed to leave what the conversation is doing
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def clean_text(text: str) -> str:
    """Control and invisible characters removed, Unicode normalised, whitespace trimmed."""
    return _CONTROL.sub("", unicodedata.normalize("NFC", text or "")).strip()


class Turn:
    def __init__(self, dialogue: Dialogue, state: Conversation, inbound: Inbound, facts: Facts) -> None:
        self.d = dialogue
        self.state = state
        self.inbound = inbound
        self.facts = facts
        self.text = clean_text(inbound.text)
        self.replies: list[Reply] = []
        self.effects: list[Effect] = []
        self.intent: str | None = None
        self.events: set[str] = set()  # what this turn noticed, for the escalation rules
        self.new_number = False  # the message named an order number other than the one known

    @property
    def language(self) -> str:
        return self.state.language or self.d.default_locale

    @property
    def step(self) -> Step | None:
        """The flow step the conversation is at, if a flow runs."""
        return self.d.current_step(self.state)

    @property
    def waiting_step(self) -> Step | None:
        """The step that has asked and waits for the customer's answer."""
        return self.step if self.state.waiting else None

    def say(self, key: str, buttons: tuple[str, ...] = (), **values: Value) -> None:
        self.replies.append(Reply(key, values, buttons))

    def tell(self, key: str, values: dict[str, Value]) -> None:
        """Say `key` with a prepared set of values (an order's facts)."""
        self.replies.append(Reply(key, dict(values)))

    def record(self, who: str, text: str) -> None:
        entry = Said(who=who, text=text, at=self.facts.now.isoformat())
        self.state.transcript = [*self.state.transcript[-(TRANSCRIPT_LIMIT - 1) :], entry]

    def verified_order(self) -> Order | None:
        """The order this conversation proved it owns; None before verification."""
        order, slots = self.facts.order, self.state.slots
        if order and slots.verified and order.number == slots.order_number:
            return order
        return None

    def accepted_photos(self) -> list[str]:
        return [p.ref for p in self.facts.photos if p.accepted and p.ref]

    def keep_photos(self, refs: list[str]) -> list[str]:
        """Keep these accepted photos (the manager writes them); a photo nobody keeps is never stored."""
        self.effects.extend(KeepPhoto(ref) for ref in refs)
        return refs

    def keep_photos_for_later(self) -> int:
        """Photos sent before any flow asked for them, kept for the flow that will (up to its maximum)."""
        room = max(0, self.d.policy.most_photos() - len(self.state.early_photos))
        kept = self.keep_photos(self.accepted_photos()[:room])
        self.state.early_photos = [*self.state.early_photos, *kept]
        return len(kept)


def is_new_request(understanding: Understanding | None) -> bool:
    """A clear request (not chit-chat, not unsure): enough to leave a waiting step."""
    return bool(understanding and understanding.intent not in (None, "other") and understanding.confidence >= SURE)

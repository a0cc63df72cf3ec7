"""What goes into a dialogue step besides the state (facts, an agent's move) and what comes out
(replies, effects). Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from bot.contracts import AgentMove
from bot.order import Order
from bot.state import Conversation, Ticket
from bot.values import Value

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class PhotoCheck:
    """What the evidence service made of one attachment."""

    accepted: bool
    reason: str | None = None  # a photo_reasons key when rejected
    ref: str | None = None  # the file name it gets when kept
    is_image: bool = True
    data: bytes = field(default=b"", repr=False)  # the cleaned image, written only if the dialogue keeps it


@dataclass(frozen=True, slots=True)
class UnlockCode:
    """A one-time code mailed to the order's address for this conversation; only its hash is kept."""

    salt: str
    digest: str
    expires_at: datetime
    attempts: int = 0  # wrong codes typed so far


@dataclass(frozen=True, slots=True)
class ProofFacts:
    """What the store knows around a proof of ownership (read only while the verify step waits)."""

    order_failures: int = 0  # failed verifications on the order number, across conversations
    sender_failures: int = 0  # failed verifications by this user on this channel, across conversations
    lookup_outages: int = 0  # turns in a row this conversation was told the order system is unreachable
    unlock: UnlockCode | None = None  # a code mailed for this conversation and order number
    codes_sent: int = 0  # codes mailed for this order number in the lock period
    can_mail_codes: bool = False  # the bot can send e-mail (SMTP_URL)


@dataclass(frozen=True, slots=True)
class Facts:
    """What the manager looked up for this turn."""

    now: datetime
    order: Order | None = None  # the order for the number the conversation names, if it exists
    order_unavailable: bool = False  # the shop's order system could not say (down, slow, garbled)
    proof: ProofFacts = ProofFacts()
    photos: tuple[PhotoCheck, ...] = ()
    ticket_id: str = ""
    meaning: np.ndarray | None = None  # the message's sentence embedding, when the recognizer uses one

    def without_mail(self) -> Facts:
        """The same facts, as if the bot could not send e-mail (after a mail failure)."""
        return replace(self, proof=replace(self.proof, can_mail_codes=False))


@dataclass(frozen=True, slots=True)
class Reply:
    """A catalog key and the raw values its text needs; `bot.render` makes the words."""

    key: str
    values: dict[str, Value] = field(default_factory=dict)
    buttons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentAction:
    kind: AgentMove
    agent: str
    text: str = ""  # the reply, or the macro name


# -- effects: what the manager carries out after the step --------------------------------


@dataclass(frozen=True, slots=True)
class SaveTicket:
    ticket: Ticket


@dataclass(frozen=True, slots=True)
class Enqueue:
    conversation_id: str
    reason: str
    priority: str
    deadline: str  # ISO time by which a person should have answered


@dataclass(frozen=True, slots=True)
class RaisePriority:
    conversation_id: str
    priority: str


@dataclass(frozen=True, slots=True)
class CountFailedVerification:
    """Counted against the order number (in canonical form, so "so10023" counts for SO-10023) and
    against the conversation's user on its channel, across their conversations."""

    order_number: str


@dataclass(frozen=True, slots=True)
class CountLookupOutage:
    """The customer was told the order system cannot be reached (twice in a row offers a person)."""

    conversation_id: str


@dataclass(frozen=True, slots=True)
class ForgetLookupOutages:
    conversation_id: str


@dataclass(frozen=True, slots=True)
class SendUnlockCode:
    """Mail a fresh one-time code to the order's address ('' when there is no such order: the bot
    then goes through the same motions without a message, so both take as long)."""

    conversation_id: str
    order_number: str  # canonical
    email: str
    language: str


@dataclass(frozen=True, slots=True)
class CountUnlockAttempt:
    conversation_id: str
    order_number: str  # canonical
    attempts: int  # wrong codes typed, this one included


@dataclass(frozen=True, slots=True)
class DropUnlockCode:
    """The code was used, ran out of attempts or expired: it never works again."""

    conversation_id: str
    order_number: str  # canonical


@dataclass(frozen=True, slots=True)
class KeepPhoto:
    """An accepted photo the dialogue keeps as evidence (others are never written)."""

    ref: str


@dataclass(frozen=True, slots=True)
class RelayToAgent:
    conversation_id: str
    text: str


# What the verify step asks of the store and the mail server (carried out by bot.lockouts).
VerificationEffect = (
    CountFailedVerification
    | CountLookupOutage
    | ForgetLookupOutages
    | SendUnlockCode
    | CountUnlockAttempt
    | DropUnlockCode
)
Effect = SaveTicket | Enqueue | RaisePriority | KeepPhoto | RelayToAgent | VerificationEffect


@dataclass
class Outcome:
    state: Conversation
    replies: list[Reply]
    effects: list[Effect]
    intent: str | None = None

"""What goes into a dialogue step besides the state (facts, an agent's move) and what comes out
(replies, effects). Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.contracts import AgentMove
from bot.order import Order
from bot.state import Conversation, Ticket
from bot.values import Value


@dataclass(frozen=True, slots=True)
class PhotoCheck:
    """What the evidence service made of one attachment."""

    accepted: bool
    reason: str | None = None  # a photo_reasons key when rejected
    ref: str | None = None  # the file name it gets when kept
    is_image: bool = True
    data: bytes = field(default=b"", repr=False)  # the cleaned image, written only if the dialogue keeps it


@dataclass(frozen=True, slots=True)
class Facts:
    """What the manager looked up for this turn."""

    now: datetime
    order: Order | None = None  # the order for the number the conversation names, if it exists
    order_failures: int = 0  # failed verifications on that number, across conversations
    photos: tuple[PhotoCheck, ...] = ()
    ticket_id: str = ""


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
    order_number: str


@dataclass(frozen=True, slots=True)
class KeepPhoto:
    """An accepted photo the dialogue keeps as evidence (others are never written)."""

    ref: str


@dataclass(frozen=True, slots=True)
class RelayToAgent:
    conversation_id: str
    text: str


Effect = SaveTicket | Enqueue | RaisePriority | CountFailedVerification | KeepPhoto | RelayToAgent


@dataclass
class Outcome:
    state: Conversation
    replies: list[Reply]
    effects: list[Effect]
    intent: str | None = None

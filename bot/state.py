"""A conversation's state as it is kept in the store: typed, versioned, migrated on load.

State lives for weeks (AFTERSALES_TTL_DAYS), so a release must read what an older one saved:
`Conversation.load` upgrades any saved version step by step (`_MIGRATIONS`) before validating.
Pure data: nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.contracts import HandoffState, Priority, Reason, Resolution, TicketStatus

STATE_VERSION = 1


class _Model(BaseModel):
    # Unknown fields are dropped, not refused: a state saved by a newer release still loads after a rollback.
    model_config = ConfigDict(extra="ignore", use_enum_values=True)


class Slots(_Model):
    order_number: str | None = None
    verified: bool = False
    photos: int = 0
    resolution: Resolution | None = None
    reason: Reason | None = None


class Handoff(_Model):
    state: HandoffState = HandoffState.NONE
    reason: Reason | None = None
    priority: Priority | None = None
    agent: str | None = None


class Said(_Model):
    """One line of the transcript."""

    who: str  # customer | bot | agent | system
    text: str
    at: str


class TicketReason(_Model):
    reason: Reason
    rule: str
    at: str


class Takeover(_Model):
    by: str
    from_agent: str | None = None
    at: str


class Ticket(_Model):
    id: str
    conversation_id: str
    intent: str
    order_number: str | None = None
    photos: int = 0
    photo_refs: list[str] = Field(default_factory=list)
    resolution: Resolution | None = None
    status: TicketStatus = TicketStatus.OPEN
    priority: Priority = Priority.NORMAL
    language: str = ""
    channel: str = ""
    csat: int | None = None
    reasons: list[TicketReason] = Field(default_factory=list)
    takeovers: list[Takeover] = Field(default_factory=list)
    created_at: str
    sla_deadline: str | None = None
    resolved_at: str | None = None
    market: str | None = None
    currency: str | None = None
    total: float | None = None


class Conversation(_Model):
    version: int = STATE_VERSION
    id: str
    channel: str
    user_id: str
    language: str | None = None
    flow: str | None = None  # the running flow (an intent), None between flows
    flow_intent: str | None = None  # the last flow started, kept after it ends (for disputes, tickets)
    step: int = 0
    waiting: bool = False  # the current step has asked and waits for the customer
    slots: Slots = Field(default_factory=Slots)
    handoff: Handoff = Field(default_factory=Handoff)
    fallbacks: int = 0  # messages in a row the bot did not understand
    failures: int = 0  # failed proofs of ownership in this conversation
    dispute: Reason | None = None  # a push-back now goes to a person with this reason
    csat_for: str | None = None  # the ticket whose score is asked for
    ticket: Ticket | None = None
    # A remedy named with the problem ("arrived cracked, can I get my money back?"): offered first at
    # the resolution step, still to be confirmed there.
    wanted: Resolution | None = None
    photo_refs: list[str] = Field(default_factory=list)
    early_photos: list[str] = Field(default_factory=list)  # sent before any flow asked for them
    told_waiting: bool = False
    transcript: list[Said] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)  # platform message ids already handled
    verified_phone: str | None = None  # a number the platform vouches for (WhatsApp)

    @classmethod
    def new(cls, conversation_id: str, channel: str, user_id: str) -> Conversation:
        return cls(id=conversation_id, channel=channel, user_id=user_id)

    @classmethod
    def load(cls, data: dict[str, Any]) -> Conversation:
        """Read a saved state of any version this release knows."""
        data = dict(data)
        version = int(data.get("version") or 0)
        if version > STATE_VERSION:
            data["version"] = STATE_VERSION  # newer fields are ignored; the shape we know still holds
        while version < STATE_VERSION:
            data = _MIGRATIONS[version](data)
            version += 1
        return cls.model_validate(data)

    def dump(self) -> dict[str, Any]:
        """Plain JSON-ready data, as saved."""
        return self.model_dump(mode="json")

    def copy_for_turn(self) -> Conversation:
        """A copy a turn may change freely. Lists are only ever replaced, never changed in place,
        so they are shared: copying a 200-line transcript every turn costs more than the turn."""
        update: dict[str, Any] = {"slots": self.slots.model_copy(), "handoff": self.handoff.model_copy()}
        if self.ticket is not None:
            update["ticket"] = self.ticket.model_copy()
        return self.model_copy(update=update)


def _from_unversioned(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0: the dict of the first releases. Same names; the ticket's reasons may lack a rule,
    and a handoff reason or dispute could be an empty string."""
    data = dict(data, version=1)
    if isinstance(data.get("ticket"), dict):
        ticket = dict(data["ticket"])
        ticket.pop("transcript", None)
        ticket["reasons"] = [{"rule": "", **r} for r in ticket.get("reasons") or [] if isinstance(r, dict)]
        data["ticket"] = ticket
    for name in ("dispute", "csat_for", "language", "flow", "flow_intent"):
        if data.get(name) == "":
            data[name] = None
    return data


_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _from_unversioned}

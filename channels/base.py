"""What a customer channel adapter is: two pure conversions and two platform calls.

    webhook (raw body) --verify--> --split--> [ChannelEvent] --(durable inbox)--> to_inbound --> core
    core --> Outbound --send--> platform (through the delivery queue, with retries and pacing)

An adapter knows its platform and nothing of flows; the server (`channels.server`) does the
rest: the inbox, the workers, the delivery queue. Events are JSON-ready so the inbox can keep
them across a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.messages import Inbound, Outbound


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """One platform message (or button press) as the inbox keeps it, before any I/O."""

    channel: str
    event_id: str  # the platform's id for de-duplication (Telegram update_id, WhatsApp message id)
    conversation_id: str  # e.g. "telegram:12345", "whatsapp:+8190..."
    payload: dict[str, Any]  # the platform's own piece of the webhook, JSON-ready
    group: str | None = None  # events sharing a group (a Telegram album) make one turn
    received_at: float = 0.0  # epoch seconds, when the webhook arrived

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "event_id": self.event_id,
            "conversation_id": self.conversation_id,
            "payload": self.payload,
            "group": self.group,
            "received_at": self.received_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChannelEvent:
        return cls(
            channel=str(data["channel"]),
            event_id=str(data["event_id"]),
            conversation_id=str(data["conversation_id"]),
            payload=dict(data["payload"]),
            group=data.get("group"),
            received_at=float(data.get("received_at") or 0.0),
        )


class RetryLater(Exception):
    """The platform asked to slow down (429) or failed for now (5xx, network): send again later."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.reason = reason


class Undeliverable(Exception):
    """The platform refused this message for good (blocked bot, outside WhatsApp's 24-hour window, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast the platform lets a bot write."""

    per_chat_seconds: float = 1.0  # at most one message a second to one chat
    overall_per_second: float = 30.0


@dataclass
class Sent:
    """What the platform answered for a delivered message."""

    platform_ids: list[str] = field(default_factory=list)


class Channel(Protocol):
    name: str
    pacing: Pacing
    reply_window_seconds: float | None  # WhatsApp: free-form replies only within 24 h of the customer's last message

    async def start(self) -> None:
        """Connect (and, for a webhook channel, register the webhook)."""

    async def stop(self) -> None: ...

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether a webhook POST really comes from the platform (signature or secret over the raw body)."""
        ...

    def split(self, body: Mapping[str, Any], received_at: float) -> list[ChannelEvent]:
        """A verified webhook's customer events (no I/O; receipts and other noise dropped)."""
        ...

    async def to_inbound(self, events: list[ChannelEvent]) -> Inbound | None:
        """One turn from events of one conversation (several for an album): fetches media."""
        ...

    def render(self, outbound: Outbound) -> list[dict[str, Any]]:
        """The platform request bodies for one message (pure; a long text may need several)."""
        ...

    async def send(self, outbound: Outbound) -> Sent:
        """Render and send one message; raises RetryLater or Undeliverable."""
        ...

"""The neutral message types that flow between channel adapters and the core.

Pure data: nothing here does I/O, so adapters, the dialogue step and tests can share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the customer sent: the bytes (already fetched by the adapter) and what they claim to be."""

    kind: str  # "photo" | "document" | ...
    data: bytes = b""
    mime: str = ""
    size: int = 0
    filename: str = ""


@dataclass(frozen=True, slots=True)
class Inbound:
    """One customer event as the core sees it, whatever the platform."""

    channel: str
    conversation_id: str  # channel-scoped, e.g. "telegram:12345"
    user_id: str
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    button: str | None = None
    locale_hint: str | None = None
    message_id: str | None = None  # platform id, for de-duplication
    received_at: datetime | None = None
    verified_phone: str | None = None  # a phone number the platform vouches for (WhatsApp)


@dataclass(frozen=True, slots=True)
class Button:
    payload: str
    label: str


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message for the customer: a catalog key, its rendered text, and optional buttons."""

    conversation_id: str
    key: str
    text: str
    language: str
    buttons: tuple[Button, ...] = field(default=())

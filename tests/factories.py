"""Small builders so tests read like the behaviour they check."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from bot.messages import Attachment, Inbound
from bot.order import Order

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # a Friday, 11:00 in Shanghai: people are at work


def message(text: str = "", *, conversation: str = "console:c1", message_id: str | None = None, **kw: Any) -> Inbound:
    return Inbound("console", conversation, conversation.split(":")[-1], text=text, message_id=message_id, **kw)


def jpeg(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(out, format="JPEG")
    return out.getvalue()


def photo(data: bytes | None = None) -> Attachment:
    data = jpeg() if data is None else data
    return Attachment("photo", data, "image/jpeg", len(data), "p.jpg")


def order(**overrides: Any) -> Order:
    fields: dict[str, Any] = {
        "number": "SO-10023",
        "email": "sato@example.jp",
        "phone": "+81 90 1234 5678",
        "postcode": "150-0001",
        "market": "JP",
        "currency": "JPY",
        "total": 12800,
        "placed_at": "2026-11-01",
        "shipped_at": "2026-11-03",
        "delivered_at": "2026-11-15",
        "status": "delivered",
        "carrier": "Japan Post",
        "tracking": "EJ123456789JP",
        "incoterm": "DDP",
    }
    fields.update(overrides)
    return Order.from_dict(fields)

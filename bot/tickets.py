"""Tickets: one JSON document each, plus an index by creation time."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from redis.asyncio.client import Pipeline

from bot.store import Store, to_json

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O or 1/I: ids are read out on the phone


def new_ticket_id(now: datetime) -> str:
    """Readable and hard to guess: AS-2611-K7Q4M (year-month, then five random characters)."""
    bits = secrets.randbits(25)  # five characters of five bits each
    return f"AS-{now:%y%m}-" + "".join(_ALPHABET[(bits >> shift) & 31] for shift in range(0, 25, 5))


class TicketBook:
    def __init__(self, store: Store) -> None:
        self.store = store

    def stage(self, pipe: Pipeline, ticket: dict[str, Any]) -> None:
        """Queue the ticket's write on a pipeline (a turn sends it with the conversation)."""
        created = datetime.fromisoformat(ticket["created_at"]).timestamp()
        pipe.set(self.store.key("ticket", ticket["id"]), to_json(ticket), ex=self.store.ttl_seconds)
        pipe.zadd(self.store.key("tickets"), {ticket["id"]: created})

    async def get(self, ticket_id: str) -> dict[str, Any] | None:
        return await self.store.get_json("ticket", ticket_id.strip().upper())

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        ids = await self.store.redis.zrevrange(self.store.key("tickets"), 0, limit - 1)
        tickets = []
        for ticket_id in ids:
            ticket = await self.get(ticket_id)
            if ticket is None:  # expired with its TTL: tidy the index
                await self.store.redis.zrem(self.store.key("tickets"), ticket_id)
            else:
                tickets.append(ticket)
        return tickets


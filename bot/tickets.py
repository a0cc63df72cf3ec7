"""Tickets: one JSON document each in its conversation's slot, an id reservation, an index.

A ticket id is reserved (SET NX on `as:ticket:<id>`, holding the conversation id) before the
turn that may open the ticket, so two tickets never share an id; the reservation of an id that
no ticket used expires on its own. The document is `as:{<conversation>}:ticket:<id>`, written
with the conversation's turn. The index `as:tickets` (by creation time) is trimmed by age and
length on every write; readers drop members whose ticket expired.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from redis.asyncio.client import Pipeline

from bot.store import Store, StoreError, store_errors, to_json

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O or 1/I: ids are read out on the phone
RESERVATION_SECONDS = 600  # an id reserved for a turn that opened no ticket is free again after this
KEEP = 100_000  # the index keeps at most this many tickets (and none older than the TTL)


def new_ticket_id(now: datetime) -> str:
    """Readable and hard to guess: AS-2611-K7Q4M (year-month, then five random characters)."""
    bits = secrets.randbits(25)  # five characters of five bits each
    return f"AS-{now:%y%m}-" + "".join(_ALPHABET[(bits >> shift) & 31] for shift in range(0, 25, 5))


class TicketBook:
    def __init__(self, store: Store, *, keep: int = KEEP) -> None:
        self.store = store
        self.keep = keep
        self._index = store.key("tickets")

    def _pointer(self, ticket_id: str) -> str:
        return self.store.key("ticket", ticket_id)

    async def reserve_id(
        self, now: datetime, conversation_id: str, *, propose: Callable[[datetime], str] = new_ticket_id
    ) -> str:
        """A ticket id no other ticket has or will get, for a ticket this conversation may open."""
        with store_errors():
            for _ in range(20):
                ticket_id = propose(now)
                if await self.store.redis.set(
                    self._pointer(ticket_id), conversation_id, nx=True, ex=RESERVATION_SECONDS
                ):
                    return ticket_id
        raise StoreError("no free ticket id after 20 tries")

    def stage(self, pipe: Pipeline, ticket: dict[str, Any]) -> None:
        """Queue the ticket's writes on a pipeline (a turn sends them with the conversation)."""
        ttl = self.store.ttl_seconds
        created = datetime.fromisoformat(ticket["created_at"]).timestamp()
        conversation_id = ticket["conversation_id"]
        pipe.set(self.store.conversation_key(conversation_id, "ticket", ticket["id"]), to_json(ticket), ex=ttl)
        pipe.set(self._pointer(ticket["id"]), conversation_id, ex=ttl)  # the reservation, kept as long as the ticket
        pipe.zadd(self._index, {ticket["id"]: created})
        pipe.zremrangebyscore(self._index, "-inf", created - ttl)
        pipe.zremrangebyrank(self._index, 0, -self.keep - 1)
        pipe.expire(self._index, ttl)

    async def get(self, ticket_id: str) -> dict[str, Any] | None:
        ticket_id = ticket_id.strip().upper()
        with store_errors():
            conversation_id = await self.store.redis.get(self._pointer(ticket_id))
            if conversation_id is None:
                return None
            raw = await self.store.redis.get(self.store.conversation_key(str(conversation_id), "ticket", ticket_id))
        return None if raw is None else json.loads(raw)

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest tickets first."""
        with store_errors():
            ids = [str(i) for i in await self.store.redis.zrevrange(self._index, 0, limit - 1)]
            if not ids:
                return []
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for ticket_id in ids:
                    pipe.get(self._pointer(ticket_id))
                owners = await pipe.execute()
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for ticket_id, owner in zip(ids, owners, strict=True):
                    pipe.get(self.store.conversation_key(str(owner), "ticket", ticket_id))  # a missing owner reads nil
                found = await pipe.execute()
            tickets = [json.loads(raw) for raw, owner in zip(found, owners, strict=True) if raw and owner]
            gone = [ticket_id for ticket_id, raw, owner in zip(ids, found, owners, strict=True) if not (raw and owner)]
            if gone:  # expired with their TTL: tidy the index
                await self.store.redis.zrem(self._index, *gone)
        return tickets

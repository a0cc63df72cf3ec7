"""The human queue in Redis: priority first, then age; claims are atomic.

Each handed-off conversation has an entry hash in its own slot (`as:{<id>}:queue`) and a member
in one index sorted set (`as:queue`), from queued until handed back or resolved (assigned
entries stay in it). The entry is the truth: readers check each index member against its entry
and drop members whose entry expired or is gone, so the index may lag without harm.

Moves made inside the conversation's turn (`Store.turn`, as the manager does) are staged on the
turn and commit with its state, under its fencing token. Outside a turn, claiming is a Lua
script on the entry, so of two agents pressing "claim" at once exactly one wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from bot.contracts import HandoffState, Priority
from bot.store import Store, store_errors

_CLAIM = """
if redis.call('hget', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('hset', KEYS[1], 'state', 'assigned', 'agent', ARGV[1])
return 1
"""


@dataclass(frozen=True)
class QueueEntry:
    conversation_id: str
    reason: str
    priority: str
    state: str
    enqueued_at: datetime
    deadline: datetime
    agent: str | None = None


def _score(priority: str, enqueued_at: datetime) -> float:
    # Lower scores come first: higher priority, then earlier arrival.
    return (Priority.URGENT.rank - Priority.rank_of(priority)) * 1e13 + enqueued_at.timestamp() * 1000


class HumanQueue:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._index = store.key("queue")
        self._claim = store.redis.register_script(_CLAIM)

    def _entry_key(self, conversation_id: str) -> str:
        return self.store.conversation_key(conversation_id, "queue")

    def stage_enqueue(
        self, pipe: Pipeline, conversation_id: str, reason: str, priority: str, deadline: str, now: datetime
    ) -> None:
        """Queue the entry's writes on a pipeline (a turn sends them with the conversation)."""
        key = self._entry_key(conversation_id)
        fields: dict[FieldT, EncodableT] = {
            "conversation_id": conversation_id,
            "reason": reason,
            "priority": priority,
            "state": HandoffState.QUEUED.value,
            "enqueued_at": now.isoformat(),
            "deadline": deadline,
            "agent": "",
        }
        pipe.delete(key)
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.store.ttl_seconds)
        pipe.zadd(self._index, {conversation_id: _score(priority, now)})
        pipe.expire(self._index, self.store.ttl_seconds)

    async def claim(self, conversation_id: str, agent: str) -> bool:
        """True for the one agent who gets it; False if it is gone or someone was faster.
        Inside the conversation's turn the claim commits with the turn."""
        key = self._entry_key(conversation_id)
        turn = self.store.held(conversation_id)
        with store_errors():
            if turn is None:
                return bool(await self._claim(keys=[key], args=[agent]))
            if await self.store.redis.hget(key, "state") != HandoffState.QUEUED:
                return False
        turn.writes.hset(key, mapping={"state": HandoffState.ASSIGNED.value, "agent": agent})
        return True

    async def release(self, conversation_id: str) -> None:
        """Hand-back or resolution: the entry leaves the queue (with the turn, inside one)."""
        turn = self.store.held(conversation_id)
        if turn is not None:
            turn.writes.delete(self._entry_key(conversation_id))
            turn.writes.zrem(self._index, conversation_id)
            return
        with store_errors():
            await self.store.redis.delete(self._entry_key(conversation_id))
            await self.store.redis.zrem(self._index, conversation_id)

    async def get(self, conversation_id: str) -> QueueEntry | None:
        with store_errors():
            raw = await self.store.redis.hgetall(self._entry_key(conversation_id))
        return _entry(raw) if raw else None

    async def waiting(self) -> list[QueueEntry]:
        """Queued conversations, the one to take next first."""
        queued = [e for e in await self._entries() if e.state == HandoffState.QUEUED]
        return sorted(queued, key=lambda e: _score(e.priority, e.enqueued_at))

    async def assigned(self) -> list[QueueEntry]:
        """Conversations a person has taken."""
        return [e for e in await self._entries() if e.state == HandoffState.ASSIGNED]

    async def overdue(self, now: datetime) -> list[QueueEntry]:
        """Queued entries past their first-response deadline that are not urgent yet."""
        return [e for e in await self.waiting() if e.deadline <= now and e.priority != Priority.URGENT]

    async def raise_priority(self, conversation_id: str, priority: str) -> None:
        """A new priority for a queued or assigned conversation (with the turn, inside one)."""
        entry = await self.get(conversation_id)
        if entry is None:
            return
        turn = self.store.held(conversation_id)
        pipe = self.store.redis.pipeline(transaction=False) if turn is None else turn.writes
        pipe.hset(self._entry_key(conversation_id), "priority", priority)
        if entry.state == HandoffState.QUEUED:
            pipe.zadd(self._index, {conversation_id: _score(priority, entry.enqueued_at)})
        if turn is None:
            with store_errors():
                await pipe.execute()

    async def _entries(self) -> list[QueueEntry]:
        """Every entry the index names, in index order; members whose entry is gone are dropped."""
        with store_errors():
            ids = [str(member) for member in await self.store.redis.zrange(self._index, 0, -1)]
            if not ids:
                return []
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for conversation_id in ids:
                    pipe.hgetall(self._entry_key(conversation_id))
                found = await pipe.execute()
            gone = [cid for cid, raw in zip(ids, found, strict=True) if not raw]
            if gone:  # expired with their TTL, or a removal that did not reach the index
                await self.store.redis.zrem(self._index, *gone)
        return [_entry(raw) for raw in found if raw]


def _entry(raw: Mapping[Any, Any]) -> QueueEntry:
    return QueueEntry(
        conversation_id=raw["conversation_id"],
        reason=raw["reason"],
        priority=raw["priority"],
        state=raw["state"],
        enqueued_at=datetime.fromisoformat(raw["enqueued_at"]),
        deadline=datetime.fromisoformat(raw["deadline"]),
        agent=raw.get("agent") or None,
    )

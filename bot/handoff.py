"""The human queue in Redis: priority first, then age; claims are atomic.

Each queued conversation has an entry hash and a place in one sorted set. Claiming is a Lua
script, so of two agents pressing "claim" at once exactly one wins, across any number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from redis.asyncio.client import Pipeline

from bot.contracts import HandoffState, Priority
from bot.store import Store

_CLAIM = """
if redis.call('hget', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('hset', KEYS[1], 'state', 'assigned', 'agent', ARGV[1])
redis.call('zrem', KEYS[2], ARGV[2])
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
        self._queue = store.key("queue")
        self._claim = store.redis.register_script(_CLAIM)

    def _entry_key(self, conversation_id: str) -> str:
        return self.store.key("queue", "entry", conversation_id)

    def stage_enqueue(
        self, pipe: Pipeline, conversation_id: str, reason: str, priority: str, deadline: str, now: datetime
    ) -> None:
        """Queue the entry's writes on a pipeline (a turn sends them with the conversation)."""
        key = self._entry_key(conversation_id)
        fields = {
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
        pipe.zadd(self._queue, {conversation_id: _score(priority, now)})

    async def claim(self, conversation_id: str, agent: str) -> bool:
        """True for the one agent who gets it; False if it is gone or someone was faster."""
        return bool(
            await self._claim(keys=[self._entry_key(conversation_id), self._queue], args=[agent, conversation_id])
        )

    async def release(self, conversation_id: str) -> None:
        """Hand-back or resolution: the entry leaves the queue."""
        async with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._queue, conversation_id)
            pipe.delete(self._entry_key(conversation_id))
            await pipe.execute()

    async def get(self, conversation_id: str) -> QueueEntry | None:
        raw = await self.store.redis.hgetall(self._entry_key(conversation_id))
        return _entry(raw) if raw else None

    async def waiting(self) -> list[QueueEntry]:
        """Queued conversations, the one to take next first."""
        ids = await self.store.redis.zrange(self._queue, 0, -1)
        entries = [await self.get(cid) for cid in ids]
        return [e for e in entries if e is not None and e.state == HandoffState.QUEUED]

    async def assigned(self) -> list[QueueEntry]:
        entries = []
        async for key in self.store.redis.scan_iter(match=self.store.key("queue", "entry", "*"), count=500):
            raw = await self.store.redis.hgetall(key)
            if raw and raw.get("state") == HandoffState.ASSIGNED:
                entries.append(_entry(raw))
        return entries

    async def overdue(self, now: datetime) -> list[QueueEntry]:
        """Queued entries past their first-response deadline that are not urgent yet."""
        return [e for e in await self.waiting() if e.deadline <= now and e.priority != Priority.URGENT]

    async def raise_priority(self, conversation_id: str, priority: str) -> None:
        entry = await self.get(conversation_id)
        if entry is None:
            return
        await self.store.redis.hset(self._entry_key(conversation_id), "priority", priority)
        if entry.state == HandoffState.QUEUED:
            await self.store.redis.zadd(self._queue, {conversation_id: _score(priority, entry.enqueued_at)})


def _entry(raw: dict[str, str]) -> QueueEntry:
    return QueueEntry(
        conversation_id=raw["conversation_id"],
        reason=raw["reason"],
        priority=raw["priority"],
        state=raw["state"],
        enqueued_at=datetime.fromisoformat(raw["enqueued_at"]),
        deadline=datetime.fromisoformat(raw["deadline"]),
        agent=raw.get("agent") or None,
    )

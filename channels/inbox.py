"""The durable inbox: a verified webhook's events are in Redis before the platform gets its 200.

Events are spread over `SHARDS` streams by conversation, so one conversation's events stay in
one stream, in order. Each shard is read by one worker at a time (a lease), through a consumer
group whose consumer is named after the shard: whoever takes a shard over after a crash reads
the pending entries of the worker that died first, then new ones. An entry is acknowledged only
after its turn is saved with its replies queued for delivery.

De-duplication by platform id happens at the door, in the same script that appends: a platform
that retries a webhook (or a second process that polls) never makes a second entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import hiredis
import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from bot.store import Store, store_errors
from channels.base import ChannelEvent

log = logging.getLogger(__name__)

SHARDS = 16
GROUP = "workers"
SEEN_SECONDS = 7 * 24 * 3600  # platforms retry for hours at most (Telegram, Meta: about a day)
LEASE_MS = 15_000  # a worker that dies loses its shards this long after its last renewal
KEEP = 100_000  # entries kept per shard (approximately) once acknowledged
MAX_BATCH = 256  # events appended by one script call

# Append an event unless its platform id was seen; both keys are in the shard's slot.
_APPEND = """
if redis.call('set', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[1])
  return 1
end
return 0
"""
# The same for a batch of events (one round trip). KEYS: stream, seen of each event in turn.
# ARGV: seen seconds, entries kept, then each event's body. Returns 1 (added) or 0 per event.
_APPEND_MANY = """
local added = {}
for i = 1, #KEYS / 2 do
  added[i] = 0
  if redis.call('set', KEYS[2 * i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('xadd', KEYS[2 * i - 1], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[i + 2])
    added[i] = 1
  end
end
return added
"""


def shard_of(conversation_id: str) -> int:
    return int.from_bytes(hashlib.blake2s(conversation_id.encode(), digest_size=2).digest(), "big") % SHARDS


@dataclass(frozen=True)
class Entry:
    shard: int
    entry_id: str
    event: ChannelEvent
    deliveries: int = 1  # how often this entry was read (more than once: a worker died on it)


class Inbox:
    def __init__(self, store: Store, *, worker_id: str | None = None) -> None:
        self.store = store
        self.worker_id = worker_id or f"{os.getpid()}-{secrets.token_hex(3)}"
        self._append = store.redis.register_script(_APPEND)
        self._sha: str | None = None
        self._waiting: deque[tuple[list[ChannelEvent], asyncio.Future[int]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._leases: dict[int, str] = {}
        self.leaving: set[int] = set()  # held until their reader stops between turns

    def _key(self, shard: int, *parts: str) -> str:
        return f"{self.store.prefix}{{inbox-{shard}}}:" + ":".join(parts)

    # -- the door ------------------------------------------------------------------------

    async def append(self, events: list[ChannelEvent]) -> int:
        """Keep events; returns how many were new. Raises StoreUnavailable when Redis is down
        (the webhook then answers 503 and the platform tries again).

        Appends that arrive together (concurrent webhooks, a polled batch) go to the store
        together: one script call, one round trip, per batch, in the order they came, instead of
        a round trip (and a pooled connection) per event."""
        if not events:
            return 0
        if self.store.clustered:  # shards live on several nodes: one by one
            added = 0
            with store_errors():
                for event in events:
                    keys, body = self._append_args(event)
                    added += int(await self._append(keys=keys, args=[body, SEEN_SECONDS, KEEP]))
            return added
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((events, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    def _append_args(self, event: ChannelEvent) -> tuple[list[str], bytes]:
        shard = shard_of(event.conversation_id)
        seen = self._key(shard, "seen", event.channel, hashlib.blake2s(event.event_id.encode()).hexdigest())
        return [self._key(shard, "stream"), seen], orjson.dumps(event.to_json())

    async def _write(self) -> None:
        """Send what is waiting, a batch at a time, until nothing is; each caller gets its count."""
        while self._waiting:
            batch: list[tuple[list[ChannelEvent], asyncio.Future[int]]] = []
            size = 0
            while self._waiting and size < MAX_BATCH:
                batch.append(self._waiting.popleft())
                size += len(batch[-1][0])
            try:
                results = await self._append_batch([event for events, _ in batch for event in events])
            except Exception as error:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            at = 0
            for events, done in batch:
                if not done.done():  # else the caller gave up waiting (its events are kept all the same)
                    done.set_result(sum(results[at : at + len(events)]))
                at += len(events)

    async def _append_batch(self, events: list[ChannelEvent]) -> list[int]:
        """One script call for the whole batch; loaded again if the server lost it (restarted)."""
        keys: list[str] = []
        bodies: list[bytes] = []
        for event in events:
            event_keys, body = self._append_args(event)
            keys += event_keys
            bodies.append(body)
        with store_errors():
            if self._sha is None:
                self._sha = await self.store.redis.script_load(_APPEND_MANY)
            try:
                added = await self._evalsha(self._sha, keys, [SEEN_SECONDS, KEEP, *bodies])
            except NoScriptError:  # the server restarted and lost its scripts: nothing ran
                self._sha = await self.store.redis.script_load(_APPEND_MANY)
                added = await self._evalsha(self._sha, keys, [SEEN_SECONDS, KEEP, *bodies])
        return [int(one) for one in added]

    async def _evalsha(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA with the command packed by hiredis, in C: redis-py packs in Python, about 9 µs
        per event of a batch, the largest cost of a webhook after the HTTP server's own."""
        # A cluster's appends go one by one (`append`); isinstance against redis-py's client
        # classes costs 1.4 µs (a Protocol metaclass), so `store.clustered` says it, checked once.
        pool = cast(Redis, self.store.redis).connection_pool
        command = hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args))
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(command)
            return await connection.read_response()  # a broken connection is dropped, not reused
        finally:
            await pool.release(connection)

    # -- the workers -----------------------------------------------------------------------

    async def lease(self, live_workers: int) -> list[int]:
        """Renew this worker's shards and take free ones, up to its fair share."""
        share = math.ceil(SHARDS / max(1, live_workers))
        with store_errors():
            for shard, token in list(self._leases.items()):
                renewed = await self.store.redis.set(self._key(shard, "lease"), token, xx=True, px=LEASE_MS, get=True)
                if renewed != token:
                    del self._leases[shard]  # expired and taken: someone else reads it now
            staying = [shard for shard in sorted(self._leases) if shard not in self.leaving]
            # More than a fair share (a worker joined): these go to it, but only once their reader
            # has finished the turn in hand (`hand_over`), or the newcomer could overtake it.
            self.leaving.update(staying[share:])
            for shard in range(SHARDS):
                if len(self._leases) - len(self.leaving) >= share:
                    break
                if shard in self._leases:
                    continue
                token = f"{self.worker_id}:{secrets.token_hex(4)}"
                if await self.store.redis.set(self._key(shard, "lease"), token, nx=True, px=LEASE_MS):
                    self._leases[shard] = token
                    await self._ensure_group(shard)
        return sorted(self._leases)

    async def release(self) -> None:
        """Give every shard back at once (a clean shutdown), so another worker need not wait."""
        with store_errors():
            for shard in list(self._leases):
                await self._give_back(shard)

    async def hand_over(self, shard: int) -> None:
        """The shard's reader stopped between turns: if the shard is leaving, let it go now."""
        if shard in self.leaving and shard in self._leases:
            with store_errors():
                await self._give_back(shard)

    async def _give_back(self, shard: int) -> None:
        self.leaving.discard(shard)
        token, key = self._leases.pop(shard), self._key(shard, "lease")
        if await self.store.redis.get(key) == token:
            await self.store.redis.delete(key)

    def holds(self, shard: int) -> bool:
        """Whether this worker should go on reading the shard (held, and not being handed over)."""
        return shard in self._leases and shard not in self.leaving

    async def _ensure_group(self, shard: int) -> None:
        try:
            await self.store.redis.xgroup_create(self._key(shard, "stream"), GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, shard: int, *, count: int = 20, block_ms: int = 500, fresh: bool = False) -> list[Entry]:
        """Entries of a held shard: first those read before and never acknowledged (a worker died
        with them), then new ones (only new ones with `fresh`)."""
        key, consumer = self._key(shard, "stream"), f"shard-{shard}"
        with store_errors():
            pending = [] if fresh else await self.store.redis.xreadgroup(GROUP, consumer, {key: "0"}, count=count)
            batch = _entries(pending)
            if batch:
                counts = await self.store.redis.xpending_range(key, GROUP, min="-", max="+", count=len(batch))
                times = {item["message_id"]: int(item["times_delivered"]) for item in counts}
                return [_entry(shard, i, fields, times.get(i, 2)) for i, fields in batch if fields]
            new = await self.store.redis.xreadgroup(GROUP, consumer, {key: ">"}, count=count, block=block_ms)
        return [_entry(shard, i, fields, 1) for i, fields in _entries(new) if fields]

    async def ack(self, entries: list[Entry]) -> None:
        with store_errors():
            for entry in entries:
                key = self._key(entry.shard, "stream")
                await self.store.redis.xack(key, GROUP, entry.entry_id)
                await self.store.redis.xdel(key, entry.entry_id)

    async def backlog(self) -> int:
        """Entries waiting or in flight, over all shards (for /metrics)."""
        total = 0
        with store_errors():
            for shard in range(SHARDS):
                total += int(await self.store.redis.xlen(self._key(shard, "stream")))
        return total


def _entries(result: Any) -> list[tuple[str, dict[str, str] | None]]:
    """XREADGROUP's answer ([[stream, [(id, fields), ...]]]) as (id, fields) pairs."""
    return [entry for _, entries in result or [] for entry in entries]


def _entry(shard: int, entry_id: str, fields: dict[str, str], deliveries: int) -> Entry:
    return Entry(shard, entry_id, ChannelEvent.from_json(orjson.loads(fields["event"])), deliveries)


async def heartbeat(store: Store, worker_id: str) -> int:
    """Say this worker is alive; returns how many workers are (for a fair share of shards)."""
    key = store.key("workers")
    now = time.time()
    with store_errors():
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {worker_id: now})
            pipe.zremrangebyscore(key, "-inf", now - LEASE_MS / 1000)
            pipe.zcard(key)
            pipe.expire(key, 3600)
            _, _, live, _ = await pipe.execute()
    return int(live)


async def every(seconds: float, stop: asyncio.Event) -> AsyncIterator[None]:
    """Yield now and then every `seconds` until `stop` is set."""
    while not stop.is_set():
        yield
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass


Handler = Callable[[list[Entry]], Awaitable[None]]

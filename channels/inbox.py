"""The durable inbox: a verified webhook is in Redis before the platform gets its 200.

Two stages. The door keeps each verified webhook's raw body, as it came, on its channel's stream
(`raw-<channel>`): nothing is parsed for it, so a burst of webhooks is acknowledged at about the
cost of a bare 200. A splitter per channel (one at a time, over the workers that serve that
channel: a lease) reads that stream in order, splits each body into events (one per customer
message) and appends them to `SHARDS` streams by conversation, so one conversation's events stay
in one stream, in order. Each shard is read by one worker at a time (a lease), through a
consumer group whose consumer is named after the shard: whoever takes a shard over after a crash
reads the pending entries of the worker that died first, then new ones. An entry is acknowledged
only after its turn is saved with its replies queued for delivery; a raw webhook only after its
events are on the shards.

De-duplication by platform id happens where events are appended, in the same script: a platform
that retries a webhook (or a second process that polls) never makes a second entry, and neither
does a splitter that dies between appending and acknowledging (the next one splits it again).
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
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
MAX_BATCH = 256  # events (or raw webhooks) appended by one script call
WRITERS = 2  # batches of webhooks on their way to the store at once
ASIDE = 10_000  # webhooks the splitter could not read, kept for a person to look at

# Append events unless their platform id was seen. KEYS: stream, seen of each event in turn (an
# event's two keys are in its shard's slot: on a cluster, one event per call). ARGV: seen seconds,
# then each event's body. Returns 1 (added) or 0 per event. No MAXLEN: an entry is deleted once
# its turn is handled, and trimming could only drop ones not yet read.
_APPEND = """
local added = {}
for i = 1, #KEYS / 2 do
  added[i] = 0
  if redis.call('set', KEYS[2 * i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('xadd', KEYS[2 * i - 1], '*', 'event', ARGV[i + 1])
    added[i] = 1
  end
end
return added
"""
# Keep raw webhooks, in the order given. KEYS: each one's channel stream. ARGV: received at, body
# of each in turn. No MAXLEN: entries are deleted once split, and a full store refuses (the door: 503).
_KEEP_RAW = """
for i = 1, #KEYS do
  redis.call('xadd', KEYS[i], '*', 'at', ARGV[2 * i - 1], 'body', ARGV[2 * i])
end
return #KEYS
"""


def shard_of(conversation_id: str) -> int:
    return int.from_bytes(hashlib.blake2s(conversation_id.encode(), digest_size=2).digest(), "big") % SHARDS


@dataclass(frozen=True)
class Raw:
    """A verified webhook as the door kept it."""

    entry_id: str
    channel: str
    body: bytes
    received_at: float


@dataclass(frozen=True)
class Entry:
    shard: int
    entry_id: str
    event: ChannelEvent
    deliveries: int = 1  # how often this entry was read (more than once: a worker died on it)


class Inbox:
    def __init__(self, store: Store, *, channels: Iterable[str] = (), worker_id: str | None = None) -> None:
        """`channels`: those this process serves; it splits only their webhooks (a process
        without a channel's settings cannot read its webhooks, e.g. during a rolling update)."""
        self.store = store
        self.channels = tuple(channels)
        self.worker_id = worker_id or f"{os.getpid()}-{secrets.token_hex(3)}"
        self._append = store.redis.register_script(_APPEND)
        self._keep = store.redis.register_script(_KEEP_RAW)
        self._shas: dict[str, str] = {}
        self._waiting: deque[tuple[str, tuple[str, bytes], asyncio.Future[None]]] = deque()
        self._writers: set[asyncio.Task[None]] = set()
        self._leases: dict[int, str] = {}
        self._raw_leases: dict[str, str] = {}  # channel -> token: the channels this worker splits
        self.leaving: set[int] = set()  # held until their reader stops between turns

    def _key(self, shard: int | str, *parts: str) -> str:
        return f"{self.store.prefix}{{inbox-{shard}}}:" + ":".join(parts)

    def _raw(self, channel: str, part: str) -> str:
        return self._key(f"raw-{channel}", part)

    # -- the door ------------------------------------------------------------------------

    async def keep(self, channel: str, body: bytes, received_at: float) -> None:
        """Keep a verified webhook's raw body for the splitter. Raises StoreUnavailable when Redis
        is down and StoreFull when it refuses writes (the webhook then answers 503 and the
        platform tries again).

        Webhooks that arrive together go to the store together: one script call, one round trip,
        per batch, in the order they came, instead of a round trip (and a pooled connection) each.
        Up to WRITERS batches are on their way at once, so a webhook that comes while one is does
        not wait for it. Two batches in flight may reach the store in either order; that can only
        swap webhooks the platform sent before it had an answer for either, between which it
        promised no order (one answered before the other was received is always kept first)."""
        stream, fields = self._raw(channel, "stream"), (f"{received_at:.6f}", body)
        if self.store.clustered:  # no batching connection to borrow: one by one
            with store_errors():
                await self._keep(keys=[stream], args=list(fields))
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((stream, fields, done))
        if len(self._writers) < WRITERS:
            writer = asyncio.create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        await done

    async def _write(self) -> None:
        """Send what is waiting, a batch at a time, until nothing is; each caller hears how it went."""
        while self._waiting:
            batch = [self._waiting.popleft() for _ in range(min(MAX_BATCH, len(self._waiting)))]
            outcome: BaseException | None = None
            try:
                with store_errors():
                    args = [value for _, fields, _ in batch for value in fields]
                    await self._evalsha(_KEEP_RAW, [stream for stream, _, _ in batch], args)
            except Exception as error:
                outcome = error
            for _, _, done in batch:
                if done.done():
                    continue  # the caller gave up waiting (what it sent is kept all the same, or not)
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)

    async def append(self, events: list[ChannelEvent]) -> int:
        """Put events on their shards, in the order given, unless their platform id was seen;
        returns how many were new. Raises StoreUnavailable / StoreFull."""
        added = 0
        with store_errors():
            if self.store.clustered:  # shards live on several nodes: one by one
                for event in events:
                    keys, body = self._append_args(event)
                    added += int((await self._append(keys=keys, args=[SEEN_SECONDS, body]))[0])
                return added
            for start in range(0, len(events), MAX_BATCH):
                keys, bodies = [], []
                for event in events[start : start + MAX_BATCH]:
                    event_keys, body = self._append_args(event)
                    keys += event_keys
                    bodies.append(body)
                added += sum(int(one) for one in await self._evalsha(_APPEND, keys, [SEEN_SECONDS, *bodies]))
        return added

    def _append_args(self, event: ChannelEvent) -> tuple[list[str], bytes]:
        shard = shard_of(event.conversation_id)
        seen = self._key(shard, "seen", event.channel, hashlib.blake2s(event.event_id.encode()).hexdigest())
        return [self._key(shard, "stream"), seen], orjson.dumps(event.to_json())

    async def _evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """A script by its digest, loaded again if the server lost it (restarted: nothing ran)."""
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = await self.store.redis.script_load(script)
        try:
            return await self._call_packed("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            self._shas[script] = await self.store.redis.script_load(script)
            return await self._call_packed("EVALSHA", self._shas[script], len(keys), *keys, *args)

    async def _call_packed(self, *command: Any) -> Any:
        """A command packed by hiredis, in C: redis-py packs in Python, about 9 µs per argument
        group, the largest cost of a webhook after the HTTP server's own."""
        # Not used on a cluster (`store.clustered`, checked by the callers: isinstance against
        # redis-py's client classes costs 1.4 µs, a Protocol metaclass).
        pool = cast(Redis, self.store.redis).connection_pool
        packed = hiredis.pack_command(command)
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(packed)
            return await connection.read_response()  # a broken connection is dropped, not reused
        finally:
            await pool.release(connection)

    # -- the workers -----------------------------------------------------------------------

    async def lease(self, live_workers: int) -> list[int]:
        """Renew this worker's shards and take free ones, up to its fair share; renew or take the
        splitter's lease of each channel it serves (whoever has it splits)."""
        share = math.ceil(SHARDS / max(1, live_workers))
        with store_errors():
            for shard, token in list(self._leases.items()):
                if not await self._renew(self._key(shard, "lease"), token):
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
                taken = await self._take(self._key(shard, "lease"))
                if taken is not None:
                    self._leases[shard] = taken
                    await self._ensure_group(self._key(shard, "stream"))
            for channel in self.channels:
                held = self._raw_leases.pop(channel, None)
                if held is None or not await self._renew(self._raw(channel, "lease"), held):
                    held = await self._take(self._raw(channel, "lease"))
                    if held is not None:
                        await self._ensure_group(self._raw(channel, "stream"))
                if held is not None:
                    self._raw_leases[channel] = held
        return sorted(self._leases)

    @property
    def splits(self) -> list[str]:
        """The channels whose webhooks this worker splits (holds the splitter's lease of)."""
        return sorted(self._raw_leases)

    async def _renew(self, key: str, token: str) -> bool:
        return bool(await self.store.redis.set(key, token, xx=True, px=LEASE_MS, get=True) == token)

    async def _take(self, key: str) -> str | None:
        token = f"{self.worker_id}:{secrets.token_hex(4)}"
        return token if await self.store.redis.set(key, token, nx=True, px=LEASE_MS) else None

    async def release(self) -> None:
        """Give every shard back at once (a clean shutdown), so another worker need not wait."""
        with store_errors():
            for shard in list(self._leases):
                await self._give_back(shard)
            for channel, token in list(self._raw_leases.items()):
                del self._raw_leases[channel]
                await self._delete_if(self._raw(channel, "lease"), token)

    async def hand_over(self, shard: int) -> None:
        """The shard's reader stopped between turns: if the shard is leaving, let it go now."""
        if shard in self.leaving and shard in self._leases:
            with store_errors():
                await self._give_back(shard)

    async def _give_back(self, shard: int) -> None:
        self.leaving.discard(shard)
        await self._delete_if(self._key(shard, "lease"), self._leases.pop(shard))

    async def _delete_if(self, key: str, token: str) -> None:
        if await self.store.redis.get(key) == token:
            await self.store.redis.delete(key)

    def holds(self, shard: int) -> bool:
        """Whether this worker should go on reading the shard (held, and not being handed over)."""
        return shard in self._leases and shard not in self.leaving

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self.store.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, shard: int, *, count: int = 20, block_ms: int = 500, fresh: bool = False) -> list[Entry]:
        """Entries of a held shard: first those read before and never acknowledged (a worker died
        with them), then new ones (only new ones with `fresh`)."""
        key, consumer = self._key(shard, "stream"), f"shard-{shard}"
        with store_errors():
            batch = [] if fresh else await self._read_group(key, consumer, "0", count=count)
            if batch:
                counts = await self.store.redis.xpending_range(key, GROUP, min="-", max="+", count=len(batch))
                times = {item["message_id"]: int(item["times_delivered"]) for item in counts}
                return [_entry(shard, i, fields, times.get(i, 2)) for i, fields in batch]
            new = await self._read_group(key, consumer, ">", count=count, block_ms=block_ms)
        return [_entry(shard, i, fields, 1) for i, fields in new]

    async def _read_group(
        self, stream: str, consumer: str, start: str, *, count: int, block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """XREADGROUP as (id, fields) pairs. A stream whose group is gone (the store lost its data,
        or someone deleted the key) gets it again and reads nothing this time, so its reader goes on
        at the next read instead of failing at every one. A pending entry that no longer exists
        (trimmed) is acknowledged, or it would come back first at every read."""
        try:
            answer = await self.store.redis.xreadgroup(GROUP, consumer, {stream: start}, count=count, block=block_ms)
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            log.warning("inbox stream %s had no consumer group: created again", stream)
            await self._ensure_group(stream)
            return []
        entries = _entries(answer)
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            await self.store.redis.xack(stream, GROUP, *gone)
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    async def ack(self, entries: list[Entry]) -> None:
        """The entries' turn is saved: they go (one round trip)."""
        if not entries:
            return
        with store_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    key = self._key(entry.shard, "stream")
                    pipe.xack(key, GROUP, entry.entry_id)
                    pipe.xdel(key, entry.entry_id)
                await pipe.execute()

    async def read_raw(self, channel: str, *, count: int = MAX_BATCH, block_ms: int = 500) -> list[Raw]:
        """A channel's kept webhooks for its splitter, in order: first those a splitter read and
        never acknowledged (it died with them), then new ones."""
        key, consumer = self._raw(channel, "stream"), "splitter"
        with store_errors():
            batch = await self._read_group(key, consumer, "0", count=count)
            if not batch:
                batch = await self._read_group(key, consumer, ">", count=count, block_ms=block_ms)
        return [_raw(channel, entry_id, fields) for entry_id, fields in batch]

    async def set_aside(self, raws: list[Raw]) -> None:
        """Webhooks the splitter could not read, kept for a person to look at
        (`{inbox-raw-<channel>}:aside`, the last ASIDE of them) instead of holding up the
        conversations behind them."""
        if not raws:
            return
        with store_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for raw in raws:
                    pipe.xadd(
                        self._raw(raw.channel, "aside"),
                        {"at": f"{raw.received_at:.6f}", "body": raw.body},
                        maxlen=ASIDE,
                        approximate=True,
                    )
                await pipe.execute()

    async def ack_raw(self, channel: str, raws: list[Raw]) -> None:
        """The webhooks' events are on the shards: the raw bodies go."""
        if not raws:
            return
        key, ids = self._raw(channel, "stream"), [raw.entry_id for raw in raws]
        with store_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                pipe.xack(key, GROUP, *ids)
                pipe.xdel(key, *ids)
                await pipe.execute()

    async def waiting(self) -> tuple[int, int]:
        """(kept webhooks of this process's channels not yet split, events on the shards not yet
        handled): one round trip. For /metrics: a `kept` that grows means no splitter runs."""
        with store_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for shard in range(SHARDS):
                    pipe.xlen(self._key(shard, "stream"))
                for channel in self.channels:
                    pipe.xlen(self._raw(channel, "stream"))
                lengths = [int(n) for n in await pipe.execute()]
        return sum(lengths[SHARDS:]), sum(lengths[:SHARDS])

    async def backlog(self) -> int:
        """Webhooks and events waiting or in flight, over the raw stream and all shards."""
        return sum(await self.waiting())


def _entries(result: Any) -> list[tuple[str, dict[str, str] | None]]:
    """XREADGROUP's answer ([[stream, [(id, fields), ...]]]) as (id, fields) pairs."""
    return [entry for _, entries in result or [] for entry in entries]


def _raw(channel: str, entry_id: str, fields: dict[str, Any]) -> Raw:
    return Raw(entry_id, channel, _bytes(fields["body"]), float(fields["at"]))


def _bytes(value: str | bytes) -> bytes:
    """A field as bytes: the store's client decodes replies (a raw body was UTF-8 when kept)."""
    return value if isinstance(value, bytes) else value.encode()


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

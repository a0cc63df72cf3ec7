"""The one store: JSON documents in a Redis-protocol server, with fenced per-conversation turns.

Keys. Everything of one conversation shares its hash tag, so it lives in one Redis Cluster slot:
`as:{<conversation id>}:conv` (state), `:lock` (the turn lock), `:fence` (the lock's token
counter), `:queue` (its human-queue entry), `:outbox` (messages for its channel), `:ticket:<id>`.
The rest is global: the queue index, the ticket index and ticket-id reservations, per-order
failure counters. Every key expires or is trimmed.

A turn (`Store.turn`) takes the lock with a fencing token (HINCRBY on `:fence`) and reads the state
in one script; the writes queued during the turn are committed by one script that first checks
the lock still holds that token, so a worker whose lock expired and was taken writes nothing
(`LockLost`). On a single server every write of the turn is in that script: all or nothing. On a
cluster the script holds the conversation's own slot; global index writes that only add
(ZADD, SET, EXPIRE, trims) go out just before it and removals and counters (ZREM, DEL, INCR)
just after, so a crash in between leaves at worst an index entry pointing at nothing, which
readers verify against the conversation's slot and drop.

With no `REDIS_URL` the embedded Valkey of the data folder is used (`bot.embedded_valkey`): one
server shared by every process on that folder. A lost connection is retried with exponential
backoff, and the embedded server restarted if it died; what still fails is `StoreUnavailable`.
A `REDIS_URL` naming any node of a cluster gets a cluster client.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import ClusterError, OutOfMemoryError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.embedded_valkey import EmbeddedValkey, EmbeddedValkeyError

log = logging.getLogger(__name__)

Client = Redis | RedisCluster

LOCK_MS = 30_000  # a turn longer than this loses its lock, and then cannot save
RETRIES = 6  # with the backoff below: about 3.5 s before a command gives up

# Take the turn lock with the next fencing token and read the state, in one round trip.
# KEYS: conv, lock, fence. ARGV: lock ms, ttl s, a nonce naming this attempt. The lock's value is
# "<token>:<nonce>", so an attempt retried after its reply was lost recognises its own lock.
# Returns {lock value, state}, or nil while another worker holds the lock.
_ACQUIRE = """
local held = redis.call('get', KEYS[2])
if held then
  if string.sub(held, -string.len(ARGV[3]) - 1) == ':' .. ARGV[3] then return {held, redis.call('get', KEYS[1])} end
  return false
end
local value = redis.call('hincrby', KEYS[3], 'next', 1) .. ':' .. ARGV[3]
redis.call('expire', KEYS[3], ARGV[2])
redis.call('set', KEYS[2], value, 'PX', ARGV[1])
return {value, redis.call('get', KEYS[1])}
"""
# Commit a turn only if the lock still holds its token: the staged writes, the state, the unlock.
# KEYS: conv, lock, fence, then the keys the writes touch. ARGV: lock value, ttl, state ('' =
# unchanged), then per write: index of its key in KEYS, number of arguments, command, arguments.
# The fence remembers the last committed lock value, so a commit retried after its reply was
# lost answers 1 again instead of writing twice. The first write is refused as a whole when the
# server is out of memory (noeviction), before anything is written.
_COMMIT = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then
  if redis.call('hget', KEYS[3], 'done') == ARGV[1] then return 1 end
  return 0
end
local i = 4
while i <= #ARGV do
  local count = tonumber(ARGV[i + 1])
  local command = {ARGV[i + 2], KEYS[tonumber(ARGV[i])]}
  for j = 1, count do command[j + 2] = ARGV[i + 2 + j] end
  redis.call(unpack(command))
  i = i + 3 + count
end
if ARGV[3] ~= '' then redis.call('set', KEYS[1], ARGV[3], 'EX', ARGV[2]) end
redis.call('hset', KEYS[3], 'done', ARGV[1])
redis.call('del', KEYS[2])
return 1
"""
# Release a lock only if it still holds our token (after a failed turn).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# Commands a turn may stage (each on one key, its first argument). On a cluster, global keys
# with a removal or a counter are written after the fenced commit, the others before it.
_STAGEABLE = {"SET", "INCR", "INCRBY", "EXPIRE", "PEXPIRE", "HSET", "HDEL", "DEL", "ZADD", "ZREM",
              "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "XADD", "XTRIM", "SADD", "SREM"}  # fmt: skip
_AFTER_COMMIT = {"INCR", "INCRBY", "HDEL", "DEL", "ZREM", "SREM"}


# -- errors ---------------------------------------------------------------------------------------


class StoreError(Exception):
    """Something in the store went wrong; the turn was not saved."""


class StoreUnavailable(StoreError):
    """The store could not be reached, even after retrying (and restarting the embedded server)."""


class StoreFull(StoreError):
    """The server refused a write: it is at its `maxmemory` (noeviction). Nothing was written."""


class LockLost(StoreError):
    """The turn's lock expired and another worker took it: nothing of this turn was written."""


def translated(error: BaseException) -> StoreError | None:
    """The store error a Redis client error means (None for errors that are not about the store)."""
    if isinstance(error, OutOfMemoryError):
        log.error("the store is full (maxmemory reached, noeviction): writes are refused: %s", error)
        return StoreFull(f"the store is full: {error}")
    if isinstance(error, RedisConnectionError | RedisTimeoutError | ClusterError | ConnectionError):
        return StoreUnavailable(f"the store cannot be reached: {error}")
    return None


@contextmanager
def store_errors() -> Iterator[None]:
    """Raise Redis client failures as `StoreUnavailable` / `StoreFull`."""
    try:
        yield
    except (RedisError, OSError) as error:
        mapped = translated(error)
        if mapped is None:
            raise
        raise mapped from error


class _RevivingRetry(Retry):
    """redis-py's retry with exponential backoff on connection errors and timeouts; after a lost
    connection, it first makes sure the embedded server runs (restarting it if it died)."""

    def __init__(self, revive: Callable[[], Awaitable[object]] | None) -> None:
        super().__init__(ExponentialBackoff(cap=1.0, base=0.05), RETRIES, (RedisConnectionError, RedisTimeoutError))
        self._revive = revive

    def __deepcopy__(self, memo: dict[int, Any]) -> _RevivingRetry:
        return self  # redis-py copies its retry per connection; they share the one reviver

    async def call_with_retry(
        self, do: Callable[[], Awaitable[Any]], fail: Callable[..., Any], is_retryable: Any = None,
        with_failure_count: bool = False,
    ) -> Any:  # fmt: skip
        revive = self._revive
        if revive is None:
            return await super().call_with_retry(do, fail, is_retryable, with_failure_count)

        async def failed(error: Exception, failures: int) -> None:
            await (fail(error, failures) if with_failure_count else fail(error))
            if isinstance(error, RedisConnectionError):
                await revive()

        return await super().call_with_retry(do, failed, is_retryable, with_failure_count=True)


class _Reviver:
    """One restart at a time in this process (the start lock orders processes)."""

    def __init__(self, embedded: EmbeddedValkey) -> None:
        self.embedded = embedded
        self._lock = asyncio.Lock()

    async def revive(self) -> None:
        async with self._lock:
            try:
                if await asyncio.to_thread(self.embedded.revive):
                    log.warning("the embedded Valkey had stopped: restarted it")
            except EmbeddedValkeyError as error:
                log.error("could not restart the embedded Valkey: %s", error)


# -- the store ------------------------------------------------------------------------------------

# The turns this task holds, by conversation key: queue moves made inside a turn join its commit.
_HELD: contextvars.ContextVar[dict[str, HeldConversation]] = contextvars.ContextVar("held_turns", default={})  # noqa: B039


class Store:
    """Conversation state and fenced turns; tickets, the queue and the outbox build on `redis`."""

    def __init__(self, redis: Client, *, ttl_seconds: int, prefix: str = "as:", lock_ms: int = LOCK_MS) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        self.lock_ms = lock_ms
        self.clustered = isinstance(redis, RedisCluster)
        self._embedded: EmbeddedValkey | None = None
        self._local_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._acquire = redis.register_script(_ACQUIRE)
        self._commit = redis.register_script(_COMMIT)
        self._release = redis.register_script(_RELEASE)
        self._recorder = ConnectionPool()  # never connects: turns record their writes on it

    @classmethod
    async def open(
        cls, redis_url: str | None, data_dir: Path, *, ttl_seconds: int, maxmemory: str | None = None
    ) -> Store:
        """Connect to `redis_url` (a server, or any node of a cluster), or use the embedded
        server of `data_dir` when it is None (started if no process runs it yet)."""
        embedded = None
        with store_errors():
            if redis_url:
                redis = await _connect(redis_url)
            else:
                embedded = EmbeddedValkey(data_dir, maxmemory=maxmemory)
                try:
                    await asyncio.to_thread(embedded.attach)
                except EmbeddedValkeyError as error:
                    raise StoreUnavailable(str(error)) from error
                redis = Redis(
                    unix_socket_path=str(embedded.socket_path),
                    decode_responses=True,
                    retry=_RevivingRetry(_Reviver(embedded).revive),
                    socket_timeout=5,  # then retried: a turn's commands take milliseconds
                    socket_connect_timeout=5,
                )
            try:
                await redis.ping()
            except BaseException:
                await redis.aclose()
                if embedded is not None:
                    await asyncio.to_thread(embedded.detach)
                raise
        store = cls(redis, ttl_seconds=ttl_seconds)
        store._embedded = embedded
        with store_errors():
            moved = await migrate_layout(store)
        if moved:
            log.warning("moved %d keys saved by release 0.1 to the per-conversation key layout", moved)
        return store

    def with_prefix(self, prefix: str) -> Store:
        """Another key space on the same server and connections (one per scripted test)."""
        return Store(self.redis, ttl_seconds=self.ttl_seconds, prefix=prefix, lock_ms=self.lock_ms)

    @property
    def embedded(self) -> EmbeddedValkey | None:
        """The embedded server this store uses, if it uses one."""
        return self._embedded

    async def close(self) -> None:
        await self.redis.aclose()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.detach)
            self._embedded = None

    def key(self, *parts: str) -> str:
        """A global key (not of one conversation): `as:queue`, `as:vfail:SO-1`."""
        return self.prefix + ":".join(parts)

    def conversation_key(self, conversation_id: str, *parts: str) -> str:
        """A key of one conversation, in its hash slot: `as:{telegram:42}:conv`."""
        return f"{self.prefix}{{{conversation_id}}}:" + ":".join(parts)

    # -- JSON documents -------------------------------------------------------------------

    async def get_json(self, *parts: str) -> Any:
        with store_errors():
            raw = await self.redis.get(self.key(*parts))
        return None if raw is None else json.loads(raw)

    async def set_json(self, value: Any, *parts: str) -> None:
        with store_errors():
            await self.redis.set(self.key(*parts), to_json(value), ex=self.ttl_seconds)

    async def load(self, conversation_id: str) -> dict[str, Any] | None:
        """A conversation's saved state, read without taking its lock."""
        with store_errors():
            raw = await self.redis.get(self.conversation_key(conversation_id, "conv"))
        return None if raw is None else json.loads(raw)

    # -- one turn at a time per conversation ---------------------------------------------

    @asynccontextmanager
    async def turn(self, conversation_id: str) -> AsyncIterator[HeldConversation]:
        """Hold the conversation's lock, yield its state, commit it with the turn's writes on exit.

        A local asyncio lock queues turns of this process without polling; the Redis lock (with
        a fencing token) keeps other workers out. Raises `LockLost` when the lock expired and was
        taken before the commit, `StoreUnavailable` / `StoreFull` when the store fails; in every
        case nothing of the turn is written. An exception in the body releases the lock unsaved.
        """
        async with self._local_lock(conversation_id):
            conv_key = self.conversation_key(conversation_id, "conv")
            lock_key = self.conversation_key(conversation_id, "lock")
            fence_key = self.conversation_key(conversation_id, "fence")
            with store_errors():
                lock, raw = await self._take(conv_key, lock_key, fence_key)
            turn = HeldConversation(None if raw is None else json.loads(raw), TurnWrites(self._recorder), lock)
            held = _HELD.set({**_HELD.get(), conv_key: turn})
            try:
                try:
                    yield turn
                finally:
                    _HELD.reset(held)
            except BaseException as error:
                await self._release_quietly(lock_key, lock)
                mapped = translated(error) if isinstance(error, RedisError | OSError) else None
                if mapped is not None:
                    raise mapped from error
                raise
            try:
                with store_errors():
                    await self._save(conversation_id, turn, [conv_key, lock_key, fence_key])
            except LockLost:
                raise  # the lock is another worker's now
            except BaseException:
                await self._release_quietly(lock_key, lock)  # not committed (or already): free it now
                raise

    def held(self, conversation_id: str) -> HeldConversation | None:
        """The turn of this conversation the current task holds (inside `turn`), else None."""
        return _HELD.get().get(self.conversation_key(conversation_id, "conv"))

    async def _take(self, conv_key: str, lock_key: str, fence_key: str) -> tuple[str, str | None]:
        nonce = secrets.token_hex(6)
        delay = 0.002
        while True:
            keys = [conv_key, lock_key, fence_key]
            got = await self._acquire(keys=keys, args=[self.lock_ms, self.ttl_seconds, nonce])
            if got is not None:
                return str(got[0]), got[1]
            await asyncio.sleep(delay)  # another worker holds it: back off briefly
            delay = min(delay * 2, 0.05)

    async def _save(self, conversation_id: str, turn: HeldConversation, own_keys: list[str]) -> None:
        own, before, after = self._split(own_keys[0], turn.writes.command_stack)
        if before:
            await self._send(before)
        keys = {key: n for n, key in enumerate(own_keys, 1)}  # KEYS, numbered from 1 as in Lua
        args: list[Any] = [turn.lock, self.ttl_seconds, "" if turn.state is None else to_json(turn.state)]
        for command in own:
            index = keys.setdefault(command[1], len(keys) + 1)
            args += [index, len(command) - 2, command[0], *command[2:]]
        committed = await self._commit(keys=list(keys), args=args)
        if not committed:
            raise LockLost(
                f"turn not saved: the lock of conversation {conversation_id!r} expired and was taken by "
                f"another worker (this turn held fencing token {turn.token})"
            )
        if after:
            try:
                await self._send(after)
            except RedisError as error:  # the conversation is saved; these indexes are repaired on read
                log.error("index writes after a saved turn failed: %s", error)

    def _split(
        self, conv_key: str, stack: Sequence[tuple[tuple[Any, ...], Any]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The staged writes in the conversation's slot, and (on a cluster) the global ones to
        send before and after the fenced commit."""
        commands = []
        for args, _options in stack:
            name = str(args[0]).upper()
            if name not in _STAGEABLE or len(args) < 2 or (name == "DEL" and len(args) != 2):
                raise TypeError(f"{' '.join(map(str, args[:2]))}: not a write a turn can commit")
            commands.append((name, *args[1:]))
        if not self.clustered:
            return commands, [], []
        slot = key_slot(conv_key.encode())
        own = [c for c in commands if key_slot(str(c[1]).encode()) == slot]
        others = [c for c in commands if key_slot(str(c[1]).encode()) != slot]
        late = {c[1] for c in others if c[0] in _AFTER_COMMIT}  # keep each key's commands together, in order
        return own, [c for c in others if c[1] not in late], [c for c in others if c[1] in late]

    async def _send(self, commands: list[tuple[Any, ...]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()

    async def _release_quietly(self, lock_key: str, lock: str) -> None:
        try:
            await self._release(keys=[lock_key], args=[lock])
        except Exception as error:  # it expires on its own
            log.warning("could not release a turn lock: %s", error)

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


class TurnWrites(Pipeline):
    """The writes of one turn: queue them with the usual redis-py calls (`set`, `hset`, `zadd`,
    `incr`, `expire`, ...); the turn commits them with its state, after checking its lock. They
    are never sent on their own."""

    def __init__(self, recorder: ConnectionPool) -> None:
        super().__init__(recorder, {}, transaction=False, shard_hint=None)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        raise TypeError("a turn's writes are committed by the turn, not executed on their own")


class HeldConversation:
    """One conversation during a turn: set `state` to what should be saved, and queue other
    writes on `writes`; both are committed together when the turn ends (and the lock released)."""

    __slots__ = ("lock", "state", "writes")

    def __init__(self, state: dict[str, Any] | None, writes: TurnWrites, lock: str = "0:") -> None:
        self.state = state
        self.writes: Pipeline = writes
        self.lock = lock  # the lock's value: "<fencing token>:<nonce>"

    @property
    def token(self) -> int:
        """The fencing token of this turn's lock (it grows with every turn of the conversation)."""
        return int(self.lock.partition(":")[0])


async def _connect(url: str) -> Client:
    """A client for the server at `url`; a cluster client when that server is a cluster node."""
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 10, "socket_connect_timeout": 5}
    single = Redis.from_url(url, retry=_RevivingRetry(None), **options)
    try:
        info = await single.info("cluster")
    except BaseException:
        await single.aclose()
        raise
    if str(info.get("cluster_enabled", 0)) != "1":
        return single
    await single.aclose()
    cluster = RedisCluster.from_url(url, retry=_RevivingRetry(None), **options)
    await cluster.initialize()
    return cluster


LAYOUT = "2"  # keys of one conversation under its hash tag (release 0.1 wrote `as:conv:<id>`, ...)


async def migrate_layout(store: Store) -> int:
    """Move what release 0.1 saved (`conv:<id>`, `queue:entry:<id>`, `outbox:<id>` lists, ticket
    documents at `ticket:<id>`) to the per-conversation layout, keeping each key's TTL. Runs once
    per key space (a marker that lasts as long as 0.1 data could); returns how many keys moved."""
    redis, marker = store.redis, store.key("layout")
    if await redis.get(marker) == LAYOUT or not await redis.set(store.key("layout", "moving"), "1", nx=True, ex=600):
        return 0  # done already, or another process is doing it
    moved = 0
    try:
        for kind, part in (("conv", "conv"), ("queue:entry", "queue"), ("outbox", "outbox"), ("ticket", "ticket")):
            old_prefix = store.key(kind, "")
            async for old in redis.scan_iter(match=_glob_escape(old_prefix) + "*", count=1000):
                name = str(old)[len(old_prefix) :]
                moved += await _move(store, str(old), name, part)
        await redis.set(marker, LAYOUT, ex=store.ttl_seconds)
    finally:
        await redis.delete(store.key("layout", "moving"))
    return moved


async def _move(store: Store, old: str, name: str, part: str) -> int:
    redis = store.redis
    ttl_ms = int(await redis.pttl(old))
    if ttl_ms == -2:  # expired meanwhile
        return 0
    ttl_ms = ttl_ms if ttl_ms > 0 else store.ttl_seconds * 1000
    if part == "ticket":
        raw = await redis.get(old)
        if not isinstance(raw, str) or not raw.startswith("{"):
            return 0  # already a reservation of the new layout
        conversation_id = json.loads(raw)["conversation_id"]
        await redis.set(store.conversation_key(conversation_id, "ticket", name), raw, px=ttl_ms)
        await redis.set(old, conversation_id, px=ttl_ms)  # the same name now holds the id reservation
        return 1
    new = store.conversation_key(name, part)
    if part == "conv":
        state = await redis.get(old)
        if state is None:
            return 0
        await redis.set(new, state, px=ttl_ms)
    elif part == "queue":
        entry: dict[Any, Any] = dict(await redis.hgetall(old))
        await redis.hset(new, mapping=entry)
        await redis.pexpire(new, ttl_ms)
        if entry.get("state") == "assigned":  # 0.1 took claimed entries out of the index; now they stay
            await redis.zadd(store.key("queue"), {name: 0})
    else:
        for item in await redis.lrange(old, 0, -1):
            await redis.xadd(new, {"message": item})
        await redis.pexpire(new, ttl_ms)
    await redis.delete(old)
    return 1


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def to_json(value: Any) -> str:
    """Compact JSON as every document in the store is written (never pickle)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)

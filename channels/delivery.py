"""Reliable delivery: every message for a customer leaves through one queue per conversation.

Replies of a turn and agents' messages are kept in the conversation's outbox (`bot.outbox`)
when they are written; this loop sends them in order, one conversation at a time per worker (a
lease), paced per chat and per channel, retried with backoff when the platform says "later"
(429, 5xx, network), and settled only once sent. A message the platform refuses for good
(blocked, outside WhatsApp's 24-hour window) is recorded, logged and reported to whoever wrote
it; nothing is dropped silently.

A worker that dies between "sent" and "settled" sends that one message again when the
conversation is taken over: delivery is at least once (see the README's guarantees).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.manager import conversation_tag
from bot.messages import Outbound
from bot.outbox import Outbox
from bot.store import Store, StoreError, store_errors, to_json
from channels.base import Channel, RetryLater, Undeliverable

log = logging.getLogger(__name__)

LEASE_MS = 30_000
MAX_BACKOFF = 300.0  # seconds: a platform down for long is asked again every five minutes
RECORDS_KEPT = 200  # delivery records per conversation
MAX_CONVERSATIONS_AT_ONCE = 32  # per process: pacing, not parallelism, sets the pace; the store pool has 100

FailureReport = Callable[[Outbound, str], Awaitable[None]]


@dataclass
class Counters:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


class Pacer:
    """At most one message a second to one chat, and a channel's overall rate."""

    def __init__(self, per_chat_seconds: float, overall_per_second: float) -> None:
        self.per_chat = per_chat_seconds
        self.gap = 1.0 / overall_per_second
        self._last_chat: dict[str, float] = {}
        self._next_any = 0.0
        self._lock = asyncio.Lock()

    async def wait(self, chat: str) -> None:
        async with self._lock:
            now = time.monotonic()
            at = max(now, self._next_any, self._last_chat.get(chat, 0.0) + self.per_chat)
            self._next_any = at + self.gap
            self._last_chat[chat] = at
            if len(self._last_chat) > 10_000:  # forget chats quiet for a while: memory stays flat
                cutoff = now - 60
                self._last_chat = {c: t for c, t in self._last_chat.items() if t > cutoff}
        if at > now:
            await asyncio.sleep(at - now)


class Delivery:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        channels: dict[str, Channel],
        *,
        report: FailureReport | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.channels = channels
        self.report = report
        self.worker_id = worker_id or secrets.token_hex(4)
        self.pacers = {
            name: Pacer(c.pacing.per_chat_seconds, c.pacing.overall_per_second) for name, c in channels.items()
        }
        self.counters = Counters()
        self.wake = asyncio.Event()
        self._busy: set[str] = set()
        self._failures: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; woken at once when this process queued something."""
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            try:
                due = await self.outbox.due(limit=200)
            except StoreError as error:
                log.warning("delivery cannot reach the store: %s", error)
                due = []
            for conversation_id in due:
                if len(self._busy) >= MAX_CONVERSATIONS_AT_ONCE:
                    break  # the rest wait for the next round: the store's connection pool is bounded too
                if conversation_id not in self._busy and conversation_id.split(":", 1)[0] in self.channels:
                    self._busy.add(conversation_id)
                    task = asyncio.create_task(self._conversation(conversation_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), 0.25)
            except TimeoutError:
                pass
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    async def _conversation(self, conversation_id: str) -> None:
        lease = self.store.conversation_key(conversation_id, "delivering")
        token = f"{self.worker_id}:{secrets.token_hex(4)}"
        try:
            with store_errors():
                if not await self.store.redis.set(lease, token, nx=True, px=LEASE_MS):
                    return  # another worker delivers this conversation
            try:
                await self._deliver(conversation_id, lease, token)
            finally:
                with store_errors():
                    if await self.store.redis.get(lease) == token:
                        await self.store.redis.delete(lease)
        except StoreError as error:
            log.warning("delivery paused conversation=%s: %s", conversation_tag(conversation_id), error)
        except Exception:
            log.exception("delivery failed conversation=%s", conversation_tag(conversation_id))
            await self.outbox.schedule(conversation_id, 5.0)
        finally:
            self._busy.discard(conversation_id)

    async def _deliver(self, conversation_id: str, lease: str, token: str) -> None:
        name = conversation_id.split(":", 1)[0]
        channel, pacer = self.channels[name], self.pacers[name]
        # Read until nothing is left: messages queued while a (paced, so slow) batch went out are
        # sent too, before `done` takes the conversation out of the due index.
        while batch := await self.outbox.read(conversation_id):
            for message_id, outbound in batch:
                if not await self._renew(lease, token):
                    return  # the lease ran out and another worker took over: it delivers the rest
                if not await self._one(conversation_id, channel, pacer, message_id, outbound):
                    return
        await self.outbox.done(conversation_id)

    async def _renew(self, lease: str, token: str) -> bool:
        with store_errors():
            return bool(await self.store.redis.set(lease, token, xx=True, px=LEASE_MS, get=True) == token)

    async def _one(
        self, conversation_id: str, channel: Channel, pacer: Pacer, message_id: str, outbound: Outbound
    ) -> bool:
        """Send one message and settle it; False when the platform said "later" (rescheduled)."""
        name = conversation_id.split(":", 1)[0]
        reason = await self._outside_window(channel, conversation_id)
        try:
            if reason:
                raise Undeliverable(reason)
            await pacer.wait(conversation_id)
            sent = await channel.send(outbound)
        except RetryLater as later:
            failures = self._failures[conversation_id] = self._failures.get(conversation_id, 0) + 1
            delay = min(MAX_BACKOFF, max(later.seconds, 0.5 * 2 ** min(failures, 10)))
            self.counters.retried += 1
            log.info(
                "delivery later conversation=%s in=%.1fs: %s",
                conversation_tag(conversation_id),
                delay,
                later.reason,
            )
            await self.outbox.schedule(conversation_id, delay)
            return False
        except Undeliverable as refused:
            self.counters.failed += 1
            await self._record(conversation_id, message_id, outbound, "failed", refused.reason, [])
            log.warning(
                "undeliverable conversation=%s key=%s: %s",
                conversation_tag(conversation_id),
                outbound.key,
                refused.reason,
            )
            if self.report is not None:
                await self.report(outbound, refused.reason)
        else:
            self.counters.sent += 1
            self.counters.by_channel[name] = self.counters.by_channel.get(name, 0) + 1
            await self._record(conversation_id, message_id, outbound, "sent", "", sent.platform_ids)
        self._failures.pop(conversation_id, None)
        await self.outbox.settle(conversation_id, [message_id])
        return True

    async def _outside_window(self, channel: Channel, conversation_id: str) -> str:
        window = channel.reply_window_seconds
        if window is None:
            return ""
        with store_errors():
            last = await self.store.redis.get(self.store.conversation_key(conversation_id, "last_inbound"))
        if last is not None and time.time() - float(last) <= window:
            return ""
        hours = round(window / 3600)
        return f"outside the {hours}-hour customer-service window: only a template message can reach this customer now"

    async def _record(
        self, conversation_id: str, message_id: str, outbound: Outbound, status: str, reason: str, ids: list[str]
    ) -> None:
        record = {"message": message_id, "key": outbound.key, "status": status, "reason": reason,
                  "platform_ids": ids, "at": time.time()}  # fmt: skip
        key = self.store.conversation_key(conversation_id, "deliveries")
        with store_errors():
            await self.store.redis.xadd(key, {"record": to_json(record)}, maxlen=RECORDS_KEPT, approximate=True)
            await self.store.redis.expire(key, self.store.ttl_seconds)


async def note_inbound(store: Store, conversation_id: str, at: float) -> None:
    """When the customer last wrote: WhatsApp lets a business answer freely for 24 hours after."""
    key = store.conversation_key(conversation_id, "last_inbound")
    with store_errors():
        await store.redis.set(key, str(at), ex=store.ttl_seconds)

"""Messages for a customer's channel that another process produced (an agent's reply from the
agent console reaching the terminal chat), kept until that channel says it delivered them.

One stream per conversation, `as:{<conversation id>}:outbox` (in the conversation's slot), read
through a consumer group: `collect` returns what was read but not acknowledged yet (so a channel
that crashed between reading and delivering gets it again), then what is new; `ack` settles what
was collected. The stream is trimmed (MAXLEN ~) and expires with the conversation.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import ResponseError

from bot.messages import Button, Outbound
from bot.store import Store, store_errors

GROUP = "delivery"
CONSUMER = "channel"  # one delivering channel per conversation
KEEP = 500  # messages kept per conversation (approximately) when nobody collects them

# Acknowledge (and drop) every message collected and not acknowledged yet.
_ACK = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
local ok, pending = pcall(redis.call, 'xpending', KEYS[1], ARGV[1], '-', '+', 1000, ARGV[2])
if not ok then return 0 end
local ids = {}
for _, entry in ipairs(pending) do ids[#ids + 1] = entry[1] end
if #ids > 0 then
  redis.call('xack', KEYS[1], ARGV[1], unpack(ids))
  redis.call('xdel', KEYS[1], unpack(ids))
end
return #ids
"""


# Forget a conversation in the due index only if nothing was queued for it in the last moments:
# a turn adds to the index just before it commits its messages.
_DONE = """
local score = redis.call('zscore', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then return redis.call('zrem', KEYS[1], ARGV[1]) end
return 0
"""


class Outbox:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._ack = store.redis.register_script(_ACK)
        self._done = store.redis.register_script(_DONE)
        self._due = store.key("outbox", "due")  # conversations with messages to deliver, by when
        self.on_post: Callable[[], object] | None = None  # wakes this process's delivery loop

    def _key(self, conversation_id: str) -> str:
        return self.store.conversation_key(conversation_id, "outbox")

    async def post(self, replies: list[Outbound]) -> None:
        """Keep messages for their conversation's channel. Inside that conversation's turn they
        are committed with it; outside, they are written at once."""
        direct = self.store.redis.pipeline(transaction=False)
        for reply in replies:
            turn = self.store.held(reply.conversation_id)
            pipe = direct if turn is None else turn.writes
            message = json.dumps(dataclasses.asdict(reply), ensure_ascii=False)
            pipe.xadd(self._key(reply.conversation_id), {"message": message}, maxlen=KEEP, approximate=True)
            pipe.expire(self._key(reply.conversation_id), self.store.ttl_seconds)
            pipe.zadd(self._due, {reply.conversation_id: time.time()})
            pipe.expire(self._due, self.store.ttl_seconds)
        if len(direct):
            with store_errors():
                await direct.execute()
        if replies and self.on_post is not None:
            self.on_post()

    # -- for the delivery loop: one message at a time, settled when sent ---------------------

    async def due(self, limit: int = 200) -> list[str]:
        """Conversations with messages to deliver now."""
        with store_errors():
            found = await self.store.redis.zrangebyscore(self._due, "-inf", time.time(), start=0, num=limit)
        return [str(conversation_id) for conversation_id in found]

    async def read(self, conversation_id: str) -> list[tuple[str, Outbound]]:
        """Messages not delivered yet, oldest first, with the ids to `settle` them by."""
        key = self._key(conversation_id)
        with store_errors():
            try:
                await self.store.redis.xgroup_create(key, GROUP, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
            pending: Any = await self.store.redis.xreadgroup(GROUP, CONSUMER, {key: "0"}, count=100)
            fresh: Any = await self.store.redis.xreadgroup(GROUP, CONSUMER, {key: ">"}, count=100)
        entries: list[tuple[str, dict[str, Any] | None]] = [
            entry for result in (pending, fresh) for _, batch in (result or []) for entry in batch
        ]
        return [(entry_id, _outbound(json.loads(fields["message"]))) for entry_id, fields in entries if fields]

    async def settle(self, conversation_id: str, ids: list[str]) -> None:
        """These messages were sent (or refused for good): never delivered again."""
        if ids:
            with store_errors():
                await self.store.redis.xack(self._key(conversation_id), GROUP, *ids)
                await self.store.redis.xdel(self._key(conversation_id), *ids)

    async def schedule(self, conversation_id: str, delay: float) -> None:
        """Try this conversation again in `delay` seconds (the platform said "later")."""
        with store_errors():
            await self.store.redis.zadd(self._due, {conversation_id: time.time() + delay})
            await self.store.redis.expire(self._due, self.store.ttl_seconds)

    async def done(self, conversation_id: str) -> None:
        """Everything was delivered: leave the due index (unless something was just queued)."""
        with store_errors():
            await self._done(keys=[self._due], args=[conversation_id, time.time() - 2.0])

    async def collect(self, conversation_id: str) -> list[Outbound]:
        """The messages to deliver: first those collected before and not acknowledged, then new ones."""
        key = self._key(conversation_id)
        with store_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
                pipe.expire(key, self.store.ttl_seconds)
                pipe.xreadgroup(GROUP, CONSUMER, {key: "0"}, count=100)
                pipe.xreadgroup(GROUP, CONSUMER, {key: ">"}, count=100)
                created, *results = await pipe.execute(raise_on_error=False)
            if isinstance(created, ResponseError) and "BUSYGROUP" not in str(created):
                raise created
            for result in results:
                if isinstance(result, Exception):
                    raise result
        entries: list[tuple[str, dict[str, Any] | None]] = [
            entry for streams in results[1:] for _, batch in (streams or []) for entry in batch
        ]
        return [_outbound(json.loads(fields["message"])) for _, fields in entries if fields]

    async def ack(self, conversation_id: str) -> int:
        """The collected messages were delivered: they are not collected again. Returns how many."""
        with store_errors():
            return int(await self._ack(keys=[self._key(conversation_id)], args=[GROUP, CONSUMER]))


def _outbound(data: dict[str, Any]) -> Outbound:
    buttons = tuple(Button(**b) for b in data.pop("buttons", []))
    return Outbound(**data, buttons=buttons)

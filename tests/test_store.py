"""The store: real server, state survives restarts, keys expire, one turn at a time."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.dialogue import AgentAction
from bot.store import LockLost, Store, StoreFull, migrate_layout
from bot.tickets import TicketBook
from tests.factories import NOW, message, order


def test_fifty_concurrent_messages_to_one_conversation_lose_no_update(make_manager, run):
    manager = make_manager()

    async def burst():
        sends = [manager.handle(message(f"hello number {i}", message_id=f"m{i}", received_at=NOW)) for i in range(50)]
        await asyncio.gather(*sends)
        return await manager.conversation("console:c1")

    state = run(burst())
    said = [e.text for e in state.transcript if e.who == "customer"]
    assert sorted(said) == sorted(f"hello number {i}" for i in range(50))
    assert len(state.seen) == 50


def test_two_workers_on_one_server_still_take_turns(brain, store, make_manager, run):
    """A second Store object stands for a second worker process: only the Redis lock orders them."""
    first = make_manager()
    second_store = Store(store.redis, ttl_seconds=store.ttl_seconds, prefix=store.prefix)
    second = make_manager()
    second.store = second_store

    async def burst():
        sends = []
        for i in range(20):
            worker = first if i % 2 else second
            sends.append(worker.handle(message(f"msg {i}", message_id=f"w{i}", received_at=NOW)))
        await asyncio.gather(*sends)
        return await first.conversation("console:c1")

    state = run(burst())
    assert len([e for e in state.transcript if e.who == "customer"]) == 20


def test_conversation_keys_carry_the_configured_ttl(make_manager, store, run):
    manager = make_manager()
    run(manager.handle(message("hello", received_at=NOW)))
    ttl = run(store.redis.ttl(store.conversation_key("console:c1", "conv")))
    assert 0 < ttl <= store.ttl_seconds


def test_a_duplicate_platform_message_is_handled_once(make_manager, run):
    manager = make_manager()
    first = run(manager.handle(message("hello", message_id="dup-1", received_at=NOW)))
    again = run(manager.handle(message("hello", message_id="dup-1", received_at=NOW)))
    assert [r.key for r in first] == ["greeting"]
    assert again == []


def test_embedded_server_keeps_state_across_restarts(tmp_path, run):
    async def write_then_read():
        store = await Store.open(None, tmp_path, ttl_seconds=600)
        await store.set_json({"kept": True}, "probe")
        await store.close()
        store = await Store.open(None, tmp_path, ttl_seconds=600)
        try:
            return await store.get_json("probe")
        finally:
            await store.close()

    assert run(write_then_read()) == {"kept": True}
    assert any((tmp_path / "valkey").rglob("*.aof*")), "append-only persistence is on"


def _chat(data_dir: Path, lines: str) -> str:
    """What the bot said in one `aftersales chat` session (its replies only, not the banner or help)."""
    env = {**os.environ, "AFTERSALES_DATA": str(data_dir), "PYTHONPATH": str(Path(__file__).parent.parent)}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "channels.cli", "chat", "--user", "restart-test"],
        input=lines,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=data_dir,
    )
    assert done.returncode == 0, done.stderr
    return "\n".join(line.partition("bot: ")[2] for line in done.stdout.splitlines() if "bot: " in line)


def test_chat_conversation_survives_quitting_and_restarting(tmp_path):
    first = _chat(tmp_path, "my parcel has not arrived yet\n/quit\n")
    assert "order number" in first.lower()
    second = _chat(tmp_path, "SO-10023\n/quit\n")
    # The flow was remembered: the number is taken and proof of ownership is asked next (a new
    # conversation would answer a bare number with "How can I help you today?").
    assert "SO-10023" in second and "email" in second.lower()


# -- fencing and atomic turns -------------------------------------------------------------------


def test_fencing_tokens_grow_with_every_turn(store, run):
    async def tokens():
        seen = []
        for _ in range(3):
            async with store.turn("console:f1") as turn:
                seen.append(turn.token)
        return seen

    first, second, third = run(tokens())
    assert first < second < third


def test_a_worker_that_lost_its_lock_saves_nothing(store, run):
    """The lock expired during a long turn and another worker took it: the late commit is refused."""
    slow = Store(store.redis, ttl_seconds=store.ttl_seconds, prefix=store.prefix, lock_ms=100)
    other = Store(store.redis, ttl_seconds=store.ttl_seconds, prefix=store.prefix)
    marker = store.key("written-by-the-slow-turn")

    async def race():
        async def slow_turn():
            async with slow.turn("console:f2") as turn:
                turn.writes.set(marker, "1")
                turn.state = {"by": "slow"}
                await asyncio.sleep(0.3)  # the lock expires meanwhile

        async def quick_turn():
            await asyncio.sleep(0.15)
            async with other.turn("console:f2") as turn:
                turn.state = {"by": "quick"}

        results = await asyncio.gather(slow_turn(), quick_turn(), return_exceptions=True)
        return results, await store.load("console:f2"), await store.redis.exists(marker)

    (slow_result, quick_result), state, marker_exists = run(race())
    assert isinstance(slow_result, LockLost) and "fencing token" in str(slow_result)
    assert quick_result is None
    assert state == {"by": "quick"} and not marker_exists


def test_a_turn_that_fails_writes_nothing_and_frees_the_conversation(make_manager, store, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("I want to talk to a real person", received_at=NOW)))

    async def failing_claim():
        async with store.turn("console:c1") as turn:
            assert await manager.queue.claim("console:c1", "Ann")  # staged on the turn
            turn.writes.set(store.key("side-effect"), "1")
            raise RuntimeError("the step failed")

    with pytest.raises(RuntimeError):
        run(failing_claim())
    entry = run(manager.queue.get("console:c1"))
    assert entry.state == "queued" and entry.agent is None
    assert not run(store.redis.exists(store.key("side-effect")))
    assert run(manager.agent("console:c1", AgentAction("claim", "Ann"))).ok  # the lock was released


def test_queue_moves_in_a_turn_commit_with_it(make_manager, store, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("I want to talk to a real person", received_at=NOW)))

    async def claim_inside_a_turn():
        async with store.turn("console:c1"):
            assert await manager.queue.claim("console:c1", "Ann")
            before_commit = await manager.queue.get("console:c1")
        return before_commit, await manager.queue.get("console:c1")

    before, after = run(claim_inside_a_turn())
    assert before.state == "queued" and after.state == "assigned" and after.agent == "Ann"
    assert [e.conversation_id for e in run(manager.queue.assigned())] == ["console:c1"]


def test_only_writes_a_turn_can_commit_are_accepted(store, run):
    async def odd_write():
        async with store.turn("console:f3") as turn:
            turn.writes.rename(store.key("a"), store.key("b"))

    with pytest.raises(TypeError):
        run(odd_write())
    assert not run(store.redis.exists(store.conversation_key("console:f3", "lock")))  # freed, not left to expire


def test_a_full_store_refuses_the_whole_turn_and_says_so(tmp_path, run, caplog):
    async def scenario():
        store = await Store.open(None, tmp_path, ttl_seconds=600)
        try:
            async with store.turn("console:full") as turn:
                turn.state = {"n": 1}
            used = int((await store.redis.info("memory"))["used_memory"])
            await store.redis.config_set("maxmemory", used + 200_000)
            with pytest.raises(StoreFull):
                async with store.turn("console:full") as turn:
                    turn.state = {"n": 2}
                    turn.writes.set(store.key("staged"), "1")
                    for n in range(100):  # another writer fills the store meanwhile
                        await store.redis.set(store.key("filler", str(n)), "x" * 10_000)
            return await store.load("console:full"), await store.redis.exists(store.key("staged"))
        finally:
            await store.redis.config_set("maxmemory", "256mb")
            await store.close()

    state, staged = run(scenario())
    assert state == {"n": 1} and not staged
    assert any(r.levelname == "ERROR" and "maxmemory" in r.getMessage() for r in caplog.records)


# -- nothing is kept forever ---------------------------------------------------------------------


def test_every_key_a_conversation_writes_expires_or_is_trimmed(make_manager, store, run):
    manager = make_manager([order()], clock=lambda: NOW)
    run(manager.handle(message("where is my parcel SO-10023?", received_at=NOW)))
    run(manager.handle(message("wrong@example.com", received_at=NOW)))  # a failed verification
    run(manager.handle(message("I want to talk to a real person", received_at=NOW)))  # queue, ticket
    run(manager.agent("console:c1", AgentAction("claim", "Ann")))
    run(manager.agent("console:c1", AgentAction("reply", "Ann", "Hello")))  # outbox
    run(manager.collect("console:c1"))
    run(manager.agent("console:c1", AgentAction("resolve", "Ann")))
    keys = run(_keys(store))
    kinds = {key.rsplit(":", 1)[-1] if "}" in key else key[len(store.prefix) :].split(":")[0] for key in keys}
    assert {"conv", "fence", "outbox", "tickets", "ticket", "vfail"} <= kinds, kinds
    assert all(run(store.redis.ttl(key)) > 0 for key in keys), {k: run(store.redis.ttl(k)) for k in keys}


async def _keys(store):
    return [key async for key in store.redis.scan_iter(match=store.prefix + "*", count=1000)]


def test_the_queue_index_drops_conversations_whose_entry_expired(make_manager, store, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("a human please", conversation="console:gone", received_at=NOW)))
    run(manager.handle(message("a human please", conversation="console:here", received_at=NOW)))
    run(store.redis.delete(store.conversation_key("console:gone", "queue")))  # as its TTL would
    assert [e.conversation_id for e in run(manager.queue.waiting())] == ["console:here"]
    assert run(store.redis.zrange(store.key("queue"), 0, -1)) == ["console:here"]


def test_the_ticket_index_is_trimmed_by_age_and_length(store, run):
    """The store keeps tickets an hour here (its TTL): an older one leaves the index, and so do
    all but the newest three."""
    book = TicketBook(store, keep=3)
    times = ["2026-11-20T08:00:00+00:00", *[f"2026-11-20T10:{m}0:00+00:00" for m in range(5)]]

    async def open_tickets():
        for n, created in enumerate(times):
            ticket_id = await book.reserve_id(NOW, f"console:t{n}")
            async with store.turn(f"console:t{n}") as turn:
                book.stage(turn.writes, {"id": ticket_id, "conversation_id": f"console:t{n}", "created_at": created})
        return await store.redis.zcard(store.key("tickets")), await book.recent()

    count, recent = run(open_tickets())
    assert count == 3 and [t["created_at"] for t in recent] == times[:-4:-1]


def test_ticket_ids_are_reserved_so_they_never_collide(store, run):
    book = TicketBook(store)
    proposals = iter(["AS-2611-SAME1", "AS-2611-SAME1", "AS-2611-OTHER"])

    async def reserve_twice():
        return [await book.reserve_id(NOW, f"console:r{n}", propose=lambda now: next(proposals)) for n in range(2)]

    assert run(reserve_twice()) == ["AS-2611-SAME1", "AS-2611-OTHER"]


def test_what_release_0_1_saved_moves_to_the_new_key_layout(make_manager, store, run):
    """Keys as 0.1 wrote them (`conv:<id>`, `queue:entry:<id>`, an `outbox:<id>` list, ticket
    documents at `ticket:<id>`) are moved once, with their TTLs, and read as before."""
    saved = json.loads((Path(__file__).parent / "fixtures" / "state_v0.json").read_text())
    cid, ticket = saved["id"], saved["ticket"]
    entry = {"conversation_id": cid, "reason": "legal_threat", "priority": "high", "state": "assigned",
             "enqueued_at": NOW.isoformat(), "deadline": NOW.isoformat(), "agent": "Mika"}  # fmt: skip
    reply = {"conversation_id": cid, "key": "agent_message", "text": "Mika here", "language": "ja", "buttons": []}

    async def write_0_1_layout():
        await store.redis.set(store.key("conv", cid), json.dumps(saved), ex=500)
        await store.redis.hset(store.key("queue", "entry", cid), mapping=entry)
        await store.redis.expire(store.key("queue", "entry", cid), 500)
        await store.redis.set(store.key("ticket", ticket["id"]), json.dumps(ticket), ex=500)
        await store.redis.zadd(store.key("tickets"), {ticket["id"]: NOW.timestamp()})
        await store.redis.rpush(store.key("outbox", cid), json.dumps(reply))
        await store.redis.expire(store.key("outbox", cid), 500)
        return await migrate_layout(store), await migrate_layout(store)

    assert run(write_0_1_layout()) == (4, 0)
    manager = make_manager(clock=lambda: NOW)
    state = run(manager.conversation(cid))
    assert state.handoff.agent == "Mika" and state.ticket.id == ticket["id"]
    assert [e.agent for e in run(manager.queue.assigned())] == ["Mika"]
    assert run(manager.tickets.get(ticket["id"]))["order_number"] == "SO-10023"
    assert [r.text for r in run(manager.collect(cid))] == ["Mika here"]
    assert 0 < run(store.redis.ttl(store.conversation_key(cid, "conv"))) <= 500
    old_keys = [store.key("conv", cid), store.key("queue", "entry", cid), store.key("outbox", cid)]
    assert not run(store.redis.exists(*old_keys))

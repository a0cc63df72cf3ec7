"""Webhook ingestion: the real WhatsApp route against a bare 200-OK route on the same server.

    python -m bench.ingest [--connections 200] [--seconds 5] [--rounds 5] [--redis-url URL]

The server is `aftersales run`'s app (`channels.server.build`: Starlette on uvicorn, the same
uvicorn settings) in a process of its own, with one route added: `POST /bare`, which answers
200 "ok" and does nothing else. `POST /webhooks/whatsapp` is the real door: the body read,
X-Hub-Signature-256 checked over it, and the body kept in the durable inbox (appends that arrive
together go in one script call) before the 200. The store is the embedded Valkey of a scratch
data folder (or `--redis-url`). The inbox workers, the splitter, the delivery loop and the clock
are stopped once started, so only the door is measured (they would otherwise spend the same core
on the turns the bench queues). After each round of the real route, the splitter's stage is
measured apart (`POST /bench/split`, not in either route's time): every kept webhook parsed,
split and appended to the shards, with nothing else running. Last, in this process, what the
second stage adds to a message's way: the time from a webhook's events being decided to a blocked
worker reading them, one hop (split and append, as the door used to) against two (kept, then split).

The load is a lean loop in this process: `--connections` keep-alive connections (asyncio
streams), each writing a raw HTTP/1.1 POST, reading the whole answer, and writing the next.
Every request is built and signed beforehand, each with its own WhatsApp message id, so the
inbox's de-duplication never short-circuits an append. Both routes get the same bytes (only the
path differs), in alternating rounds; the first second of each round is a warm-up, not counted.
Targets: throughput >= 0.6x the bare route's, p99 <= 2x the bare route's p99. `--profile` runs
the server under cProfile on the real route and prints where its time goes. Figures: README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import hmac
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "106540352242922"
ROUTES = {"bare": "/bare", "whatsapp": "/webhooks/whatsapp"}
WARM_UP = 1.0  # seconds of each round not counted

# -- the server process ----------------------------------------------------------------------------


def serve(port: int, data: str, redis_url: str | None, profile: str | None = None) -> None:
    """`aftersales run`'s app with a bare route added, its background loops stopped after start.
    With `profile`, cProfile runs from start-up to shutdown and its stats are written there."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from bot.app import App
    from bot.config import Settings
    from channels.server import build, split_kept

    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith(("WHATSAPP_", "TELEGRAM_"))}
    env.update(
        AFTERSALES_DATA=data,
        WHATSAPP_ACCESS_TOKEN="bench-token",
        WHATSAPP_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN="bench-verify",
        WHATSAPP_API_BASE="http://127.0.0.1:9",  # nothing is sent: delivery is stopped
        AFTERSALES_VALKEY_MAXMEMORY="2gb",  # every round's webhooks stay: no worker takes them
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    settings = Settings.from_env(env)
    asgi = build(settings, app=App(settings))

    async def bare(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def split_all(request: Request) -> Response:
        """The splitter's stage, measured apart: every kept webhook onto the shards, nothing else running."""
        runtime = asgi.state.runtime
        await runtime.inbox.lease(1)  # the consumer groups (the workers stopped before taking them)
        started, cpu, events = time.perf_counter(), time.process_time(), runtime.counters["events"]
        webhooks = 0
        while moved := await split_kept(runtime, "whatsapp", block_ms=1):
            webhooks += moved
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        added = runtime.counters["events"] - events
        return JSONResponse({"webhooks": webhooks, "events": added, "seconds": seconds, "cpu": cpu})

    # First in the list, so the router finds it at least as fast as the webhook routes.
    asgi.router.routes.insert(0, Route("/bare", bare, methods=["POST"]))
    asgi.router.routes.append(Route("/bench/split", split_all, methods=["POST"]))
    started = asgi.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app):  # type: ignore[no-untyped-def]
        async with started(app):
            runtime = asgi.state.runtime
            runtime.stop.set()  # the routes keep working; the workers, delivery and clock end
            await asyncio.wait(runtime.tasks, timeout=30)
            profiler = cProfile.Profile() if profile else None
            if profiler is not None:
                profiler.enable()
            yield
            if profiler is not None and profile:  # here: uvicorn ends the process with the signal it caught
                profiler.disable()
                profiler.dump_stats(profile)

    asgi.router.lifespan_context = lifespan
    # As channels.cli._run serves it (the log level aside: nothing is logged per request anyway).
    uvicorn.run(asgi, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=30)


# -- the load --------------------------------------------------------------------------------------


def signed_requests(path: str, count: int, first: int) -> list[bytes]:
    """`count` raw HTTP/1.1 POSTs of WhatsApp text-message webhooks, each with its own message id
    and sender (conversations spread over the inbox shards), signed with the app secret."""
    requests = []
    for n in range(first, first + count):
        sender = f"4470{n % 100_000:07d}"
        body = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "102290129340398",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": "15550783881",
                                        "phone_number_id": PHONE_NUMBER_ID,
                                    },
                                    "contacts": [{"profile": {"name": "Customer"}, "wa_id": sender}],
                                    "messages": [
                                        {
                                            "from": sender,
                                            "id": f"wamid.bench{n:012d}",
                                            "timestamp": "1764547200",
                                            "type": "text",
                                            "text": {"body": "hi, where is my parcel?"},
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            },
            separators=(",", ":"),
        ).encode()
        signature = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Hub-Signature-256: sha256={signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


@dataclass
class Round:
    route: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    server_cpu: float = 0.0  # share of one core over the counted window
    client_cpu: float = 0.0

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def load(
    port: int, requests: list[bytes], connections: int, seconds: float, round_: Round, pid: int, *, cycle: bool
) -> int:
    """Run the load; returns how many requests were sent (counted or not). With `cycle` the
    requests are used again from the start when they run out (the bare route reads no id)."""
    clock = time.perf_counter  # not loop.time(): uvloop's has millisecond steps
    begin = clock()
    counted_from, end = begin + WARM_UP, begin + WARM_UP + seconds
    cursor = 0
    marks: dict[str, tuple[float, float]] = {}

    def mark(name: str) -> None:
        marks[name] = (_cpu_seconds(pid), sum(os.times()[:2]))

    async def one_connection() -> None:
        nonlocal cursor
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(high=1 << 20)
        try:
            while True:
                started = clock()
                if started >= end or (cursor >= len(requests) and not cycle):
                    return
                request = requests[cursor % len(requests)]
                cursor += 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                if length:
                    await reader.readexactly(length)
                done = clock()
                if started >= counted_from and done <= end:
                    if head.startswith(b"HTTP/1.1 200"):
                        round_.latencies.append(done - started)
                    else:
                        round_.errors += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def marker() -> None:
        await asyncio.sleep(max(0.0, counted_from - clock()))
        mark("from")
        await asyncio.sleep(max(0.0, end - clock()))
        mark("to")

    tasks = [asyncio.create_task(one_connection()) for _ in range(connections)]
    marking = asyncio.create_task(marker())
    await asyncio.gather(*tasks)
    await marking
    round_.seconds = seconds
    (server_from, client_from), (server_to, client_to) = marks["from"], marks["to"]
    round_.server_cpu = (server_to - server_from) / seconds
    round_.client_cpu = (client_to - client_from) / seconds
    if cursor >= len(requests) and not cycle:
        raise SystemExit("ran out of prepared requests: raise --requests")
    return cursor


def _run(work: Coroutine[Any, Any, T]) -> T:
    """On uvloop when it is installed (as uvicorn runs the server): the load costs less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def _content_length(head: bytes) -> int:
    lowered = head.lower()
    at = lowered.find(b"content-length:")
    if at < 0:
        return 0
    return int(lowered[at + 15 : lowered.index(b"\r\n", at)])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        lines = answer.read().decode().splitlines()
    return {name: float(value) for name, value in (line.split() for line in lines if line and not line.startswith("#"))}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(port: int, server: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.1)
    raise SystemExit(f"the server did not start within {seconds:.0f} s")


def main(
    connections: int, seconds: float, rounds: int, capacity: int, redis_url: str | None, profile: bool = False
) -> None:
    with tempfile.TemporaryDirectory(prefix="aftersales-bench-ingest-") as scratch:
        port = _free_port()
        stats = Path(scratch) / "server.prof"
        command = [sys.executable, "-m", "bench.ingest", "--serve", str(port), "--data", scratch]
        if redis_url:
            command += ["--redis-url", redis_url]
        if profile:
            command += ["--profile", str(stats)]
        server = subprocess.Popen(command)
        try:
            _wait_ready(port, server)
            print(f"preparing {capacity:,} signed requests ...", flush=True)
            prepared = {
                "bare": signed_requests(ROUTES["bare"], 10_000, capacity),  # the same bytes, used in turn
                "whatsapp": signed_requests(ROUTES["whatsapp"], capacity, 0),
            }
            offsets = dict.fromkeys(ROUTES, 0)
            results: dict[str, list[Round]] = {route: [] for route in ROUTES}
            splits: list[dict[str, float]] = []
            for n in range(rounds):
                for route in ["whatsapp"] if profile else ROUTES:
                    round_ = Round(route)
                    requests = prepared[route][offsets[route] :] if route == "whatsapp" else prepared[route]
                    sent = _run(load(port, requests, connections, seconds, round_, server.pid, cycle=route == "bare"))
                    offsets[route] += sent
                    results[route].append(round_)
                    print(
                        f"round {n + 1} {route:>8}: {round_.per_second:8,.0f} req/s"
                        f"  p50 {round_.percentile(0.5):6.2f} ms  p99 {round_.percentile(0.99):6.2f} ms"
                        f"  errors {round_.errors}"
                        f"  cpu: server {round_.server_cpu:.0%} client {round_.client_cpu:.0%}",
                        flush=True,
                    )
                    if route == "whatsapp" and not profile:  # between rounds: not in either's time
                        splits.append(_split_all(port))
            counters = _metrics(port)
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        if profile:
            print(f"\nthe server under cProfile, {ROUTES['whatsapp']} only (cProfile slows it: read the shares):")
            profiled = pstats.Stats(str(stats))
            profiled.sort_stats("tottime").print_stats(25)
            profiled.sort_stats("cumulative").print_stats(r"channels/|json/|copy\.py|hmac", 20)
            return
    _report(results, splits, counters, connections, redis_url)
    took = _run(hops(500))
    p50, p99 = ({way: Round(way, 1.0, t).percentile(q) for way, t in took.items()} for q in (0.5, 0.99))
    print(
        "from a webhook to a worker's read, one at a time: one hop (split, append) "
        f"p50 {p50['one hop']:.2f} / p99 {p99['one hop']:.2f} ms; two hops (kept, then split by the "
        f"splitter) p50 {p50['two hops']:.2f} / p99 {p99['two hops']:.2f} ms"
    )


def _split_all(port: int) -> dict[str, float]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/bench/split", method="POST")
    with urllib.request.urlopen(request, timeout=600) as answer:
        return dict(json.loads(answer.read()))


async def hops(samples: int) -> dict[str, list[float]]:
    """How long from a webhook's events being decided to a blocked worker reading them, on a
    scratch embedded Valkey in this process: one hop (what the door used to do: split, append to
    the shard) against two (keep the body; the running splitter splits and appends it)."""
    import orjson

    from bot.config import Settings
    from bot.store import Store
    from channels.inbox import Inbox, shard_of
    from channels.server import Runtime, split_kept
    from channels.whatsapp import WhatsAppChannel

    bodies = [request.split(b"\r\n\r\n", 1)[1] for request in signed_requests("/x", 2 * samples, 10**7)]
    took: dict[str, list[float]] = {"one hop": [], "two hops": []}
    with tempfile.TemporaryDirectory(prefix="aftersales-bench-hops-") as scratch:
        store = await Store.open(None, Path(scratch), ttl_seconds=3600)
        channel = WhatsAppChannel(
            access_token="t",
            phone_number_id=PHONE_NUMBER_ID,
            app_secret=APP_SECRET,
            verify_token="v",
            api_base="http://127.0.0.1:9",
        )
        runtime = Runtime(Settings.from_env({"AFTERSALES_DATA": scratch}), {"whatsapp": channel})
        runtime.inbox = inbox = Inbox(store, channels=runtime.channels)
        await inbox.lease(1)

        async def splitter() -> None:
            while not runtime.stop.is_set():
                await split_kept(runtime, "whatsapp", block_ms=100)

        splitting = asyncio.create_task(splitter())
        try:
            for n, body in enumerate(bodies):
                way = "one hop" if n % 2 else "two hops"
                shard = shard_of(channel.split(orjson.loads(body), 0.0)[0].conversation_id)
                reader = asyncio.create_task(inbox.read(shard, block_ms=5000, fresh=True))
                await asyncio.sleep(0.002)  # the reader is blocked in the store before anything comes
                started = time.perf_counter()
                if way == "one hop":
                    await inbox.append(channel.split(orjson.loads(body), time.time()))
                else:
                    await inbox.keep("whatsapp", body, time.time())
                entries = await reader
                took[way].append(time.perf_counter() - started)
                await inbox.ack(entries)
        finally:
            runtime.stop.set()
            await splitting
            await store.close()
    return took


def _report(
    results: dict[str, list[Round]],
    splits: list[dict[str, float]],
    counters: dict[str, float],
    connections: int,
    redis_url: str | None,
) -> None:
    summary = {}
    for route, rounds in results.items():
        latencies = [latency for round_ in rounds for latency in round_.latencies]
        pooled = Round(route, sum(r.seconds for r in rounds), latencies, sum(r.errors for r in rounds))
        summary[route] = (
            statistics.median(r.per_second for r in rounds),
            pooled.percentile(0.5),
            pooled.percentile(0.99),
            pooled.errors,
        )
    store = redis_url or "embedded Valkey (unix socket, appendfsync everysec)"
    print(f"\n{connections} keep-alive connections, store: {store}")
    print(f"{'route':<26} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for route, (rate, p50, p99, errors) in summary.items():
        print(f"{ROUTES[route]:<26} {rate:>15,.0f} {p50:>8.2f} {p99:>8.2f} {errors:>7}")
    bare, real = summary["bare"], summary["whatsapp"]
    # Rounds alternate, so each round of the real route has a bare one beside it: the median of
    # those pairs' ratios is steadier on a busy host than the ratio of the two medians.
    pairs = [w.per_second / b.per_second for b, w in zip(results["bare"], results["whatsapp"], strict=True)]
    throughput, tail = statistics.median(pairs), real[2] / bare[2]
    cpu = {
        route: statistics.median(r.server_cpu / r.per_second * 1e6 for r in rounds if r.per_second)
        for route, rounds in results.items()
    }
    print(f"server CPU per request: bare {cpu['bare']:.0f} µs, whatsapp {cpu['whatsapp']:.0f} µs")
    print("throughput ratio per round: " + ", ".join(f"{r:.2f}" for r in pairs))
    print(f"throughput ratio {throughput:.2f} (target >= 0.6): {'ok' if throughput >= 0.6 else 'MISSED'}")
    print(f"p99 ratio        {tail:.2f} (target <= 2.0): {'ok' if tail <= 2.0 else 'MISSED'}")
    kept, events = counters.get("aftersales_webhooks_total", 0), counters.get("aftersales_events_total", 0)
    duplicates = counters.get("aftersales_duplicates_total", 0)
    print(
        f"inbox: {kept:,.0f} webhooks kept, split into {events:,.0f} events, {duplicates:,.0f} duplicates"
        " (every request was a new message)"
    )
    if splits:
        rates = [split["webhooks"] / split["seconds"] for split in splits if split["seconds"]]
        cpu = sum(split["cpu"] for split in splits) / max(1, sum(split["webhooks"] for split in splits)) * 1e6
        print(
            f"splitter, after each round with nothing else running: {statistics.median(rates):,.0f} webhooks/s"
            f" (rounds: {', '.join(f'{rate:,.0f}' for rate in rates)}), {cpu:.0f} µs of server CPU per webhook"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="counted seconds per round (after a 1 s warm-up)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per route, alternating")
    parser.add_argument("--requests", type=int, default=600_000, help="signed requests prepared for the real route")
    parser.add_argument("--redis-url", help="a Valkey/Redis to append to instead of the embedded one")
    parser.add_argument("--profile", nargs="?", const="", help="profile the server on the real route only")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.data, args.redis_url, args.profile or None)
    else:
        main(args.connections, args.seconds, args.rounds, args.requests, args.redis_url, args.profile is not None)

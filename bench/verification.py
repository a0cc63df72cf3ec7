"""Does a proof turn take as long for an order number that does not exist as for a wrong proof?

    python -m bench.verification [--conversations 300]

Each conversation names an order number, then sends one wrong proof; the proof turn is timed.
Half the conversations name orders the shop has, half numbers it does not, interleaved, on the
same embedded Valkey. Run against the shop's orders in memory and against an order API on
127.0.0.1 (so the lookup goes over HTTP, and each number's first lookup is not cached). Then the
lock: the turn that mails an unlock code to an existing order against the one that only goes
through the same SMTP session for a number that does not exist (aiosmtpd on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from bot.app import load_brain
from bot.config import Settings
from bot.evidence import EvidenceStore
from bot.mailer import Mailer, SmtpServer
from bot.manager import DialogueManager
from bot.messages import Inbound
from bot.order import Order
from bot.order_sources import HttpOrders, OrderProvider, StaticOrders
from bot.store import Store

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def _order(i: int) -> dict[str, Any]:
    return {"number": f"SO-{30000 + i}", "email": f"c{i}@example.com", "market": "DE", "status": "shipped"}


def _api(orders: dict[str, dict[str, Any]]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = orders.get(self.path.rsplit("/", 1)[-1])
            body = json.dumps(found).encode() if found else b""
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/orders/{{number}}"


class _Quiet:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _timed(manager: DialogueManager, conversation: str, texts: list[str]) -> list[float]:
    """Send the texts; each turn's time in milliseconds."""
    times = []
    for text in texts:
        started = time.perf_counter()
        await manager.handle(Inbound("console", conversation, conversation, text=text, received_at=NOW))
        times.append((time.perf_counter() - started) * 1000)
    return times


def _line(label: str, values: list[float]) -> float:
    values = sorted(values)
    p50, p95 = statistics.median(values), values[int(len(values) * 0.95) - 1]
    print(f"{label:>52}: p50 {p50:6.2f} ms   p95 {p95:6.2f} ms   ({len(values)} turns)")
    return p50


async def _compare(
    name: str, make: Callable[[str], DialogueManager], n: int, texts: Callable[[str], list[str]]
) -> None:
    manager = make(name)
    known: list[list[float]] = []
    unknown: list[list[float]] = []
    for i in range(n):  # interleaved, so drift on the host touches both alike
        known.append(await _timed(manager, f"k{name}{i}", texts(f"SO-{30000 + i}")))
        unknown.append(await _timed(manager, f"u{name}{i}", texts(f"SO-{90000 + i}")))
    print(f"\n{name}")
    for turn, what in ((0, "the turn naming the number (lookup)"), (-1, "the proof turn")):
        a = _line(f"{what}, existing order", [t[turn] for t in known[5:]])
        b = _line(f"{what}, no such order", [t[turn] for t in unknown[5:]])
        print(f"{'ratio (no such order / existing)':>52}: {b / a:.2f}")


async def main(conversations: int) -> None:
    brain = load_brain(Settings.from_env())
    rows = [_order(i) for i in range(conversations)]
    server, url = _api({row["number"]: row for row in rows})
    port = _port()
    smtp = Controller(_Quiet(), hostname="127.0.0.1", port=port)
    smtp.start()
    with tempfile.TemporaryDirectory() as scratch:
        store = await Store.open(None, Path(scratch), ttl_seconds=3600)

        def manager(orders: OrderProvider, mailer: Mailer | None = None) -> Callable[[str], DialogueManager]:
            def make(name: str) -> DialogueManager:
                return DialogueManager(
                    dialogue=brain.dialogue,
                    renderer=brain.renderer,
                    store=store.with_prefix(f"as:bench:{time.monotonic_ns()}:"),
                    orders=orders,
                    evidence=EvidenceStore(Path(scratch) / "evidence", max_bytes=10 << 20, max_pixels=40_000_000),
                    clock=lambda: NOW,
                    mailer=mailer,
                )

            return make

        try:
            one_wrong = lambda n: [f"where is my parcel {n}", "nobody@example.org"]  # noqa: E731
            three_wrong = lambda n: [f"where is my parcel {n}", "a@x.org", "b@x.org", "c@x.org"]  # noqa: E731
            static = StaticOrders(Order.from_dict(row) for row in rows)
            await _compare("orders in memory: a wrong proof", manager(static), conversations, one_wrong)
            await _compare("order API on 127.0.0.1: a wrong proof", manager(HttpOrders(url)), conversations, one_wrong)
            mailer = Mailer(SmtpServer.from_url(f"smtp://127.0.0.1:{port}"), "bench@shop.example")
            lock = manager(static, mailer)
            await _compare("the third wrong proof: a code is mailed", lock, min(conversations, 100), three_wrong)
        finally:
            await store.close()
            server.shutdown()
            smtp.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=300)
    asyncio.run(main(parser.parse_args().conversations))

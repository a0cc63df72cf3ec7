"""Full turns against an echo handler, on the same embedded Valkey, in the same run.

    python -m bench.turns [--conversations 1000] [--in-flight 1] [--scenario NAME]

A full turn is language + intent + flow + store (+ verification, photos, tickets and handoffs
in the mixed scenarios). The echo handler takes the same per-conversation lock, reads and
writes the same store, and does nothing else: the ratio says what the bot's thinking costs.
1,000 conversations are open at once and interleave. With `--in-flight 1` (the default) the
latency is a turn's own; with more in flight it also counts waiting for the other turns on the
same event loop, while throughput shows how the store's round trips overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from bot.app import load_brain
from bot.config import Settings
from bot.evidence import EvidenceStore
from bot.manager import DialogueManager
from bot.messages import Attachment, Inbound, Outbound
from bot.order import Order
from bot.order_sources import StaticOrders
from bot.store import Store

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # a Friday morning in Shanghai: service is open


def _photo() -> Attachment:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 140, 200)).save(out, format="JPEG")
    return Attachment("photo", out.getvalue(), "image/jpeg", len(out.getvalue()), "p.jpg")


PHOTO = _photo()

# (scenario name, turns); {n} is the conversation's order number, {email} its email.
SCENARIOS = {
    "track (en)": ["hi, where is my parcel?", "it's {n}", "{email}"],
    "refund (es)": ["¿cuándo me devuelven el dinero?", "{n}", "{email}"],
    "damaged + photos + ticket (ja)": [
        "商品が壊れて届きました",
        "{n}",
        "{email}",
        PHOTO,
        "button:done",
        "button:replacement",
    ],
    "return + ticket (de)": ["Ich möchte die Schuhe zurückschicken", "{n}", "{email}", "button:refund"],
    "wrong proof then human (fr)": ["où est mon colis ?", "{n}", "pas le bon email", "je veux parler à un conseiller"],
}


def _inbound(conversation: str, item: object, order: Order, n: int) -> Inbound:
    if isinstance(item, Attachment):
        return Inbound("console", conversation, conversation, attachments=(item,), message_id=str(n), received_at=NOW)
    text = str(item).format(n=order.number, email=order.email)
    if text.startswith("button:"):
        return Inbound("console", conversation, conversation, button=text[7:], message_id=str(n), received_at=NOW)
    return Inbound("console", conversation, conversation, text=text, message_id=str(n), received_at=NOW)


async def drive(
    handler: Callable[[Inbound], Awaitable[list[Outbound]]], plan: list[tuple[str, list[object], Order]], in_flight: int
) -> tuple[float, list[float], int]:
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def conversation(cid: str, turns: list[object], order: Order) -> None:
        for n, item in enumerate(turns):
            inbound = _inbound(cid, item, order, n)
            async with gate:
                start = time.perf_counter()
                await handler(inbound)
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(conversation(cid, turns, order) for cid, turns, order in plan))
    elapsed = time.perf_counter() - start
    return elapsed, latencies, len(latencies)


def echo_handler(store: Store) -> Callable[[Inbound], Awaitable[list[Outbound]]]:
    async def handle(inbound: Inbound) -> list[Outbound]:
        async with store.turn(inbound.conversation_id) as turn:
            count = (turn.state or {}).get("count", 0) + 1
            turn.state = {"count": count, "last": inbound.text}
        return [Outbound(inbound.conversation_id, "echo", inbound.text, "en")]

    return handle


def summary(name: str, elapsed: float, latencies: list[float], turns: int) -> float:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    throughput = turns / elapsed
    print(f"{name:>28}: {throughput:8.0f} turns/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   ({turns} turns)")
    return throughput


async def main(conversations: int, in_flight: int, scenarios: list[str]) -> None:
    brain = load_brain(Settings.from_env())
    with tempfile.TemporaryDirectory() as scratch:
        store = await Store.open(None, Path(scratch), ttl_seconds=3600)
        try:
            for name in scenarios:
                turns_of = SCENARIOS[name]
                orders = [
                    Order.from_dict(
                        {"number": f"SO-{20000 + i}", "email": f"c{i}@example.com", "market": "DE",
                         "currency": "EUR", "total": 80, "delivered_at": "2026-11-15", "status": "delivered"}
                    )
                    for i in range(conversations)
                ]  # fmt: skip
                run_id = f"{time.monotonic_ns()}"
                full_store = store.with_prefix(f"as:bench:{run_id}:full:")
                manager = DialogueManager(
                    dialogue=brain.dialogue,
                    renderer=brain.renderer,
                    store=full_store,
                    orders=StaticOrders(orders),
                    evidence=EvidenceStore(Path(scratch) / "evidence", max_bytes=10 << 20, max_pixels=40_000_000),
                    clock=lambda: NOW,
                )
                echo = echo_handler(store.with_prefix(f"as:bench:{run_id}:echo:"))
                plan = [(f"bench:{i}", turns_of, orders[i]) for i in range(conversations)]
                await drive(echo, plan[:50], in_flight)  # warm both paths up
                await drive(manager.handle, [(f"warm:{i}", turns_of, orders[i]) for i in range(50)], in_flight)
                print(f"\n{name} — {conversations} conversations, {in_flight} turns in flight")
                e = summary("echo handler", *await drive(echo, plan, in_flight))
                f = summary("full turns", *await drive(manager.handle, plan, in_flight))
                print(f"{'ratio full/echo':>28}: {f / e:.2f}")
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    args = parser.parse_args()
    asyncio.run(main(args.conversations, args.in_flight, args.scenario or list(SCENARIOS)))

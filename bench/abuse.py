"""What hostile input costs, against an ordinary message, in the same run.

    python -m bench.abuse [--rounds 20]

Each case is one full turn through `DialogueManager.handle` (bounded input, language, intent,
order-number search, store) on the embedded Valkey. The baseline is a short ordinary message;
the ratio says how much more a hostile message costs. A 1 MB message must be refused in well
under 50 ms, and long messages of every shape must stay linear (no regex rescans a word).
While the 1 MB messages are handled, a second conversation's short turns are timed too: they
must not wait for them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bot.app import App
from bot.config import Settings
from bot.messages import Inbound

CASES = {
    "ordinary (baseline)": "where is my parcel SO-10023?",
    "1 MB of letters": "a" * 1_000_000,
    "2,000 letters, one word": "a" * 2000,
    "2,000 digits": "1" * 2000,
    "1,000 digit-dash pairs": "1-" * 1000,
    "666 'so-' fragments": "so-" * 666,
    "1,000 '#1'": "#1" * 1000,
    "285 'http://'": "http://" * 285,
    "180 emails": " ".join(f"user{n}@example.com" for n in range(180))[:2000],
    "control characters": "\x00\x1b\u202e" * 600,
}


async def _time(app_manager, text: str, rounds: int, tag: str) -> list[float]:
    times = []
    for n in range(rounds):
        inbound = Inbound("console", f"console:{tag}-{n}", f"{tag}-{n}", text=text, message_id=str(n))
        start = time.perf_counter()
        await app_manager.handle(inbound)
        times.append((time.perf_counter() - start) * 1000)
    return times


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        async with App(Settings.from_env({"AFTERSALES_DATA": str(Path(data))})) as manager:
            await _time(manager, CASES["ordinary (baseline)"], 5, "warm")
            base = 0.0
            print(f"{'case':28} {'median ms':>10} {'max ms':>8} {'x baseline':>11}")
            for tag, (name, text) in enumerate(CASES.items()):
                times = await _time(manager, text, rounds, f"c{tag}")
                median = statistics.median(times)
                base = base or median  # the first case is the baseline
                print(f"{name:28} {median:10.2f} {max(times):8.2f} {median / base:11.1f}")
            # Short turns of another conversation while 1 MB messages arrive: do they wait?
            flood = asyncio.create_task(_time(manager, CASES["1 MB of letters"], rounds * 5, "flood"))
            others = await _time(manager, CASES["ordinary (baseline)"], rounds, "other")
            await flood
            print(f"{'ordinary during a 1 MB flood':28} {statistics.median(others):10.2f} {max(others):8.2f} "
                  f"{statistics.median(others) / base:11.1f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))

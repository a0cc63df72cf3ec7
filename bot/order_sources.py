"""Where orders come from: the shop's orders file, scripted-test fixtures, or its order API.

A lookup has three outcomes: the order, no such order (None), or the shop's system could not
say (`OrderApiError`: refused, timed out, HTTP 5xx or 429, an answer that is not an order).
`look_up` turns them into a `Lookup` for the dialogue, which tells the customer the check is not
possible right now instead of counting a failed verification.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import httpx

from bot.order import Order, canonical_order_number, normalise_order_number
from bot.yamlfile import read_yaml

log = logging.getLogger(__name__)


class OrderProvider(Protocol):
    async def get(self, number: str) -> Order | None: ...


class OrderApiError(RuntimeError):
    """The shop's order API failed (not: the order does not exist)."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a lookup found: the order, nothing (no such order), or nothing known (`unavailable`)."""

    order: Order | None = None
    unavailable: bool = False


async def look_up(orders: OrderProvider, number: str | None) -> Lookup:
    """Look an order up; an order system that cannot answer is `unavailable`, never "no such order"."""
    if not number:
        return Lookup()
    try:
        return Lookup(await orders.get(number))
    except OrderApiError as error:
        log.warning("order lookup unavailable: %s", error)  # the reason only: no number, no URL
        return Lookup(unavailable=True)


class StaticOrders:
    """Orders held in memory: scripted-test fixtures, or a file read at start-up."""

    def __init__(self, orders: Iterable[Order] = ()) -> None:
        self._orders = {o.canonical_number: o for o in orders}

    @classmethod
    def from_file(cls, path: Path) -> StaticOrders:
        data = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else read_yaml(path)
        rows = data.get("orders", []) if isinstance(data, dict) else data
        return cls(Order.from_dict(row) for row in rows or [])

    async def get(self, number: str) -> Order | None:
        """By canonical number: "so10023" and "ＳＯ－１００２３" find SO-10023."""
        return self._orders.get(canonical_order_number(number))


def spellings(number: str) -> list[str]:
    """The ways a shop's API may write a number the customer typed: as typed (normalised), without
    separators, and letters-dash-digits ("SO10023" -> SO10023, SO-10023)."""
    typed = normalise_order_number(number)
    canonical = canonical_order_number(number)
    forms = [typed, canonical]
    if split := re.fullmatch(r"([A-Z]+)([0-9]+)", canonical):
        forms.append(f"{split.group(1)}-{split.group(2)}")
    return list(dict.fromkeys(f for f in forms if f))


class HttpOrders:
    """A shop's order API: GET a URL template like https://shop.example/api/orders/{number}.

    Every spelling of the number (`spellings`) is asked at once, so a number typed without its
    dash is found, and a lookup takes as long whether the order exists or not. The whole lookup
    gives up after `timeout` seconds. Answers (an order, or none) are kept `cache_seconds` per
    canonical number, so the turns of one verification ask once; an outage is never kept.
    """

    def __init__(
        self,
        url_template: str,
        *,
        auth_header: str | None = None,
        timeout: float = 2.5,
        cache_seconds: float = 60.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if "{number}" not in url_template:
            raise ValueError("the order API URL template needs a {number} placeholder")
        headers = {}
        if auth_header:
            name, _, value = auth_header.partition(":")
            headers[name.strip()] = value.strip()
        self._template = url_template
        self._timeout = timeout
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)
        self._cache: OrderedDict[str, tuple[float, Order | None]] = OrderedDict()
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._clock = clock
        # httpx logs every request's URL at INFO, and these URLs hold customers' order numbers.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    async def get(self, number: str) -> Order | None:
        key = canonical_order_number(number)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return cached[1]
        try:
            async with asyncio.timeout(self._timeout):
                fetches = (self._fetch(form) for form in spellings(number))
                answers = await asyncio.gather(*fetches, return_exceptions=True)
        except TimeoutError:
            raise OrderApiError("order API did not answer in time") from None
        found = next((answer for answer in answers if isinstance(answer, Order)), None)
        failed = next((answer for answer in answers if isinstance(answer, BaseException)), None)
        if found is None and failed is not None:
            raise failed  # an OrderApiError; anything else is a bug, for the turn's error boundary
        if found is not None and found.canonical_number != key:
            raise OrderApiError("order API answered with another order's number")
        self._cache[key] = (now + self._cache_seconds, found)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found

    async def _fetch(self, number: str) -> Order | None:
        url = self._template.format(number=quote(number, safe=""))  # a number never changes the path
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as error:
            raise OrderApiError(f"order API unreachable: {type(error).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise OrderApiError(f"order API answered HTTP {response.status_code}")
        try:
            return Order.from_dict(response.json())
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise OrderApiError(f"order API answered something that is not an order: {type(error).__name__}") from None

    async def aclose(self) -> None:
        await self._client.aclose()

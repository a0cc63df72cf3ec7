"""Where orders come from: the shop's orders file, scripted-test fixtures, or its order API."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import httpx

from bot.order import Order, normalise_order_number
from bot.yamlfile import read_yaml


class OrderProvider(Protocol):
    async def get(self, number: str) -> Order | None: ...


class StaticOrders:
    """Orders held in memory: scripted-test fixtures, or a file read at start-up."""

    def __init__(self, orders: Iterable[Order] = ()) -> None:
        self._orders = {o.number: o for o in orders}

    @classmethod
    def from_file(cls, path: Path) -> StaticOrders:
        data = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else read_yaml(path)
        rows = data.get("orders", []) if isinstance(data, dict) else data
        return cls(Order.from_dict(row) for row in rows or [])

    async def get(self, number: str) -> Order | None:
        return self._orders.get(normalise_order_number(number))


class OrderApiError(RuntimeError):
    """The shop's order API failed (not: the order does not exist)."""


class HttpOrders:
    """A shop's order API: GET a URL template like https://shop.example/api/orders/{number}."""

    def __init__(self, url_template: str, *, auth_header: str | None = None, timeout: float = 5.0) -> None:
        if "{number}" not in url_template:
            raise ValueError("the order API URL template needs a {number} placeholder")
        headers = {}
        if auth_header:
            name, _, value = auth_header.partition(":")
            headers[name.strip()] = value.strip()
        self._template = url_template
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def get(self, number: str) -> Order | None:
        url = self._template.format(number=quote(number, safe=""))  # a number never changes the path
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as error:
            raise OrderApiError(f"order API unreachable: {type(error).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise OrderApiError(f"order API answered HTTP {response.status_code}")
        try:
            return Order.from_dict(response.json())
        except (ValueError, KeyError, TypeError) as error:
            raise OrderApiError(f"order API answered something that is not an order: {error}") from None

    async def aclose(self) -> None:
        await self._client.aclose()

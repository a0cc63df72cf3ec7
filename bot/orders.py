"""Orders: how order numbers look, what the bot knows about an order, and where it comes from."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from bot.yamlfile import read_yaml

# Case-insensitive; the first that matches wins. Shops add their own in dialogues/policy.yml.
DEFAULT_PATTERNS = (
    r"(?<![A-Za-z0-9-])\d{3}-\d{7}-\d{7}(?![A-Za-z0-9-])",  # 114-1234567-1234567
    r"(?<![A-Za-z0-9#])#\d{5,12}(?![A-Za-z0-9])",  # #100234
    r"(?<![A-Za-z0-9-])[a-z]{1,4}-?\d{4,12}(?![A-Za-z0-9])",  # SO-10023, so10023 (also inside Japanese text)
)


_NOT_ORDERS = re.compile(r"\S+@\S+|https?://\S+")  # "sato10023@mail.jp" holds no order number


class OrderNumbers:
    """Finds an order number anywhere in a message and normalises it."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_PATTERNS) -> None:
        self._patterns = [re.compile(p, re.IGNORECASE) for p in patterns]

    def find(self, text: str) -> str | None:
        text = _NOT_ORDERS.sub(" ", text)
        for pattern in self._patterns:
            if match := pattern.search(text):
                return normalise_order_number(match.group(0))
        return None


def normalise_order_number(raw: str) -> str:
    """Upper case, without a leading '#'; 'so10023' stays 'SO10023' (shops' numbers differ)."""
    return raw.strip().lstrip("#").upper()


@dataclass(frozen=True)
class Refund:
    state: str = "none"  # none | pending | issued
    amount: float | None = None
    issued_at: date | None = None
    method: str | None = None


@dataclass(frozen=True)
class Order:
    number: str
    email: str = ""
    phone: str = ""
    postcode: str = ""
    market: str = ""
    currency: str = "USD"
    total: float = 0.0
    placed_at: date | None = None
    shipped_at: date | None = None
    delivered_at: date | None = None
    status: str = "placed"
    carrier: str = ""
    tracking: str = ""
    incoterm: str = "DAP"
    payment_method: str = "card"
    refund: Refund = field(default_factory=Refund)
    items: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Order:
        """Build from a fixture, a file or an API answer; unknown fields are ignored."""

        def day(value: Any) -> date | None:
            if value in (None, ""):
                return None
            return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])

        refund = data.get("refund") or {}
        return cls(
            number=normalise_order_number(str(data["number"])),
            email=str(data.get("email") or ""),
            phone=str(data.get("phone") or ""),
            postcode=str(data.get("postcode") or ""),
            market=str(data.get("market") or "").upper(),
            currency=str(data.get("currency") or "USD").upper(),
            total=float(data.get("total") or 0),
            placed_at=day(data.get("placed_at")),
            shipped_at=day(data.get("shipped_at")),
            delivered_at=day(data.get("delivered_at")),
            status=str(data.get("status") or "placed"),
            carrier=str(data.get("carrier") or ""),
            tracking=str(data.get("tracking") or ""),
            incoterm=str(data.get("incoterm") or "DAP").upper(),
            payment_method=str(data.get("payment_method") or "card"),
            refund=Refund(
                state=str(refund.get("state") or "none"),
                amount=float(refund["amount"]) if refund.get("amount") is not None else None,
                issued_at=day(refund.get("issued_at")),
                method=refund.get("method"),
            ),
            items=tuple(data.get("items") or ()),
        )

    def proves_ownership(self, proof: str) -> bool:
        """Email (case ignored), phone (last 8+ digits), or postcode (spaces and case ignored)."""
        proof = proof.strip()
        if not proof:
            return False
        if self.email and proof.casefold() == self.email.strip().casefold():
            return True
        if self.phone and phones_match(proof, self.phone):
            return True
        squeeze = re.compile(r"[\s-]")
        return bool(self.postcode) and squeeze.sub("", proof).casefold() == squeeze.sub("", self.postcode).casefold()


def phones_match(given: str, known: str) -> bool:
    """Same phone if the digits agree on at least the last 8: one number may carry the country
    code ("+81 90...") where the other has the national trunk zero ("090...")."""
    a, b = re.sub(r"\D", "", given).lstrip("0"), re.sub(r"\D", "", known).lstrip("0")
    shorter, longer = sorted((a, b), key=len)
    return len(shorter) >= 8 and longer.endswith(shorter)


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

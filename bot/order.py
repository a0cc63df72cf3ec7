"""Orders as the dialogue sees them: how order numbers look, and what the bot knows about an order.

Pure data and text matching; fetching orders is `bot.order_sources`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

# Case-insensitive; the first that matches wins. Shops add their own in dialogues/policy.yml.
DEFAULT_PATTERNS = (
    r"(?<![A-Za-z0-9-])\d{3}-\d{7}-\d{7}(?![A-Za-z0-9-])",  # 114-1234567-1234567
    r"(?<![A-Za-z0-9#])#\d{5,12}(?![A-Za-z0-9])",  # #100234
    r"(?<![A-Za-z0-9-])[a-z]{1,4}-?\d{4,12}(?![A-Za-z0-9])",  # SO-10023, so10023 (also inside Japanese text)
)


# "sato10023@mail.jp" holds no order number. A match starts only where a word does: linear on long words.
_NOT_ORDERS = re.compile(r"(?<!\S)(?:\S*@|https?://)\S*")


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

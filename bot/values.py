"""Values a reply carries before they are words: money, moments, durations, fragments, order facts.

The dialogue step puts these raw values into its replies; `bot.render` alone turns them into
text in the customer's language. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeAlias

from bot.order import Order


@dataclass(frozen=True, slots=True)
class Money:
    amount: float
    currency: str


@dataclass(frozen=True, slots=True)
class Moment:
    """A point in time, shown in the service's time zone."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Minutes:
    """A duration, e.g. the wait promised before a person answers."""

    minutes: int


@dataclass(frozen=True, slots=True)
class Fragment:
    """An entry of a catalog fragment table (`statuses`, `customs`, ...), filled with the same values."""

    table: str
    name: str


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """The service's opening hours, e.g. "Mon–Fri 09:00–18:00 (Asia/Shanghai)"."""


Value: TypeAlias = str | int | float | date | Money | Moment | Minutes | Fragment | OpeningHours | None


def order_values(order: Order, refund_days: int) -> dict[str, Value]:
    """What a message may say about a verified order."""
    refund = order.refund
    return {
        "order_number": order.number,
        "carrier": order.carrier,
        "tracking": order.tracking,
        "incoterm": order.incoterm,
        "placed_on": order.placed_at,
        "shipped_on": order.shipped_at,
        "delivered_on": order.delivered_at,
        "issued_on": refund.issued_at,
        "amount": Money(refund.amount if refund.amount is not None else order.total, order.currency),
        "total": Money(order.total, order.currency),
        "method": Fragment("payment_methods", refund.method or order.payment_method),
        "refund_days": refund_days,
        "order_currency": order.currency,
        "status": Fragment("statuses", order.status),
        "refund": Fragment("refunds", refund.state),
        "customs": Fragment("customs", order.incoterm),
    }


# Placeholders only a verified order can fill: a message using one needs an order to be said.
ORDER_FACTS = frozenset(order_values(Order("X"), 0)) - {"refund_days"}

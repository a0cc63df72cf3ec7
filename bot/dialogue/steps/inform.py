"""`inform: KEY` — tell the customer facts of their verified order (status, refund, customs)."""

from __future__ import annotations

from typing import ClassVar

from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn
from bot.values import ORDER_FACTS, order_values


class Inform(Step):
    kind: ClassVar[str] = "inform"
    catalog_fields: ClassVar[tuple[str, ...]] = ("inform",)
    provides: ClassVar[dict[str, frozenset[str]]] = {"inform": ORDER_FACTS | {"refund_days"}}

    inform: str

    def run(self, turn: Turn) -> bool:
        order = turn.verified_order()
        if order is not None:  # never reached unverified; if it were, nothing about any order is said
            turn.tell(self.inform, order_values(order, turn.d.policy.refund_days))
        return True

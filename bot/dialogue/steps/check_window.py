"""`check_window: KIND` — is the request inside the policy window (days from delivery)?

Outside it, the customer is told when the window closed and the flow ends without a ticket;
pushing back (in words, or the `human` button) then goes to a person as a policy dispute.
"""

from __future__ import annotations

from typing import ClassVar

from bot.contracts import Button, Reason, Window
from bot.dialogue import flow
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn


class CheckWindow(Step):
    kind: ClassVar[str] = "check_window"
    catalog_fields: ClassVar[tuple[str, ...]] = ("expired",)
    provides: ClassVar[dict[str, frozenset[str]]] = {
        "expired": frozenset({"order_number", "delivered_on", "days", "closed_on"}),
    }

    check_window: Window
    expired: str = "return_window_expired"

    def run(self, turn: Turn) -> bool:
        order = turn.verified_order()
        if not order or not order.delivered_at:
            return True  # not delivered yet: nothing has started to run out
        policy = turn.d.policy
        closes = policy.window_closes(self.check_window, order.market, order.delivered_at)
        if closes is None or turn.facts.now.date() <= closes:
            return True
        turn.say(
            self.expired,
            buttons=(Button.HUMAN,),
            order_number=order.number,
            delivered_on=order.delivered_at,
            days=policy.window_days(self.check_window, order.market),
            closed_on=closes,
        )
        flow.leave(turn)
        turn.state.dispute = Reason.POLICY_DISPUTE
        return False

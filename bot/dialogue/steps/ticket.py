"""`ticket: KEY` — open the case with everything collected and tell the customer what happens next.

`then` lists follow-up texts: `return_instructions` (address and who pays shipping) and
`refund_route` (where the money goes, said only for refunds) are filled from the order and
policy; any other key is said with the order's facts.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bot.contracts import Event, Resolution, TicketStatus
from bot.dialogue.people import hand_off
from bot.dialogue.steps.base import Step
from bot.dialogue.tickets import open_ticket
from bot.dialogue.turn import Turn
from bot.values import ORDER_FACTS, Fragment, Moment, order_values

_REFUNDS = (Resolution.REFUND, Resolution.PARTIAL_REFUND)
# The currencies a market pays in; any other means a conversion on refund.
_LOCAL_CURRENCY = {
    "US": "USD", "GB": "GBP", "JP": "JPY", "CN": "CNY", "KR": "KRW", "BR": "BRL", "DE": "EUR", "FR": "EUR",
    "ES": "EUR", "IT": "EUR", "PT": "EUR", "NL": "EUR", "TH": "THB", "RU": "RUB", "SA": "SAR", "AE": "AED",
    "MX": "MXN", "CA": "CAD", "AU": "AUD",
}  # fmt: skip


class Ticket(Step):
    kind: ClassVar[str] = "ticket"
    catalog_fields: ClassVar[tuple[str, ...]] = ("ticket", "then")
    provides: ClassVar[dict[str, frozenset[str]]] = {
        "ticket": frozenset({"ticket_id", "next_steps", "deadline"}),
        "then": ORDER_FACTS | {"refund_days", "return_address", "shipping_payer"},
    }

    ticket: str
    then: list[str] = Field(default_factory=list)

    def run(self, turn: Turn) -> bool:
        policy, slots = turn.d.policy, turn.state.slots
        intent = turn.state.flow or turn.state.flow_intent or "other"
        ticket = open_ticket(turn, intent, TicketStatus.OPEN)
        due = policy.service_hours.add_service_minutes(turn.facts.now, policy.ticket_response_hours * 60)
        # Without a chosen remedy (a complaint), promise a review, not a refund.
        next_steps = Fragment("next_steps", slots.resolution or "review")
        turn.say(self.ticket, ticket_id=ticket.id, next_steps=next_steps, deadline=Moment(due))
        order = turn.verified_order()
        if order is None:
            return True
        values = order_values(order, policy.refund_days)
        for key in self.then:
            if key == "return_instructions":
                payer = policy.return_shipping_payer(intent)
                turn.say(
                    key,
                    return_address=policy.return_address(order.market),
                    shipping_payer=Fragment("shipping_payer", payer),
                )
            elif key == "refund_route":
                if slots.resolution in _REFUNDS:
                    turn.tell(key, values)
                    if _LOCAL_CURRENCY.get(order.market, order.currency) != order.currency:
                        turn.tell("refund_fx_note", values)
            else:
                turn.tell(key, values)
        if policy.is_high_value(order.total, order.currency):
            turn.events.add(Event.HIGH_VALUE_TICKET)
            rule = turn.d.rules.first((), turn.events)
            if rule:
                hand_off(turn, rule.reason, rule.priority, rule.name)
        return True

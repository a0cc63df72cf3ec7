"""Opening and updating the conversation's ticket; each change is an effect the manager saves."""

from __future__ import annotations

from typing import Any

from bot.contracts import Priority, Reason, TicketStatus
from bot.dialogue.outcome import SaveTicket
from bot.dialogue.turn import Turn
from bot.state import Ticket, TicketReason


def open_ticket(turn: Turn, intent: str, status: TicketStatus) -> Ticket:
    state, slots = turn.state, turn.state.slots
    order = turn.verified_order()
    ticket = Ticket(
        id=turn.facts.ticket_id,
        conversation_id=state.id,
        intent=intent,
        order_number=slots.order_number if order else None,
        photos=slots.photos,
        photo_refs=list(state.photo_refs),
        resolution=slots.resolution,
        status=status,
        priority=Priority.NORMAL,
        language=turn.language,
        channel=state.channel,
        created_at=turn.facts.now.isoformat(),
        market=order.market if order else None,
        currency=order.currency if order else None,
        total=order.total if order else None,
    )
    state.ticket = ticket
    turn.effects.append(SaveTicket(ticket))
    return ticket


def update_ticket(turn: Turn, reason: tuple[str, str] | None = None, **fields: Any) -> None:
    """Change the ticket's fields (and add the reason and rule of an escalation), if there is one."""
    if turn.state.ticket is None:
        return
    ticket = turn.state.ticket.model_copy(update=fields)
    if reason:
        entry = TicketReason(reason=Reason(reason[0]), rule=reason[1], at=turn.facts.now.isoformat())
        ticket.reasons = [*ticket.reasons, entry]
    turn.state.ticket = ticket
    turn.effects.append(SaveTicket(ticket))

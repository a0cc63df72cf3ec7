"""The conversation with people: handing off to the human queue, relaying while queued or
assigned, and the agents' moves (claim, reply, macro, hand back, resolve)."""

from __future__ import annotations

from bot.contracts import CSAT_BUTTONS, AgentMove, HandoffState, Priority, Reason, TicketStatus
from bot.dialogue import flow
from bot.dialogue.outcome import AgentAction, Enqueue, RaisePriority, RelayToAgent
from bot.dialogue.tickets import open_ticket, update_ticket
from bot.dialogue.turn import Turn, clean_text
from bot.phones import country_of
from bot.state import Conversation, Handoff, Takeover
from bot.values import Minutes, Moment, OpeningHours, Value, order_values

RELAYED_PHOTO_LIMIT = 20  # photos a conversation may pass to people in all; more are not stored


def hand_off(turn: Turn, reason: str, priority: str, rule: str) -> None:
    """Queue the conversation for a person and tell the customer when to expect one."""
    state, now = turn.state, turn.facts.now
    state.slots.reason = state.slots.reason or Reason(reason)
    minutes = turn.d.policy.sla_minutes(state.channel, _market(turn))
    hours = turn.d.policy.service_hours
    deadline = hours.add_service_minutes(now, minutes).isoformat()
    state.handoff = Handoff(state=HandoffState.QUEUED, reason=Reason(reason), priority=Priority(priority))
    state.told_waiting = False
    state.fallbacks = state.failures = 0
    state.dispute = None
    flow.leave(turn)
    if hours.is_open(now):
        turn.say("handoff_queued", wait=Minutes(minutes))
    else:
        turn.say("handoff_outside_hours", hours=OpeningHours(), opens_at=Moment(hours.next_opening(now)))
    if state.ticket is None:
        open_ticket(turn, state.flow_intent or turn.intent or "talk_to_human", TicketStatus.ESCALATED)
    update_ticket(turn, (reason, rule), status=TicketStatus.ESCALATED, priority=priority, sla_deadline=deadline)
    turn.effects.append(Enqueue(state.id, reason, priority, deadline))


def hand_off_by_rule(turn: Turn, reason: str, rule_name: str | None = None) -> None:
    """Hand off with the priority the escalation rules give this reason."""
    rule = turn.d.rules.first((), {reason})
    priority = rule.priority if rule else turn.d.rules.priority_of(reason)
    hand_off(turn, reason, priority, rule_name or (rule.name if rule else f"flow:{turn.state.flow_intent}"))


def relay(turn: Turn) -> None:
    """Queued or assigned: the customer talks to people; the bot only passes messages on."""
    state = turn.state
    turn.effects.append(RelayToAgent(state.id, transcript_text(turn)))
    understanding = turn.d.recognizer.understand(turn.text, turn.language, turn.facts.meaning) if turn.text else None
    turn.intent = understanding.intent if understanding else None
    room = max(0, RELAYED_PHOTO_LIMIT - len(state.photo_refs))
    photos = turn.keep_photos(turn.accepted_photos()[:room])
    if photos:
        state.photo_refs = [*state.photo_refs, *photos]
        update_ticket(turn, photo_refs=state.photo_refs)
    rule = turn.d.rules.first(understanding.signals) if understanding else None
    if rule and Priority.rank_of(rule.priority) > Priority.rank_of(state.handoff.priority):
        state.handoff.priority = Priority(rule.priority)  # a legal threat in the queue jumps ahead
        turn.effects.append(RaisePriority(state.id, rule.priority))
        update_ticket(turn, (rule.reason, rule.name), priority=rule.priority)
    if state.handoff.state == HandoffState.QUEUED and not state.told_waiting:
        state.told_waiting = True
        turn.say("handoff_waiting")


# Which handoff states each move fits; and which moves only the claiming agent may make.
_FITS = {
    AgentMove.CLAIM: (HandoffState.QUEUED,),
    AgentMove.REPLY: (HandoffState.ASSIGNED,),
    AgentMove.MACRO: (HandoffState.ASSIGNED,),
    AgentMove.HANDBACK: (HandoffState.ASSIGNED,),
    AgentMove.RESOLVE: (HandoffState.ASSIGNED, HandoffState.QUEUED),
    AgentMove.TAKEOVER: (HandoffState.ASSIGNED,),
}
_OWNER_ONLY = (AgentMove.REPLY, AgentMove.MACRO, AgentMove.HANDBACK, AgentMove.RESOLVE)


def refusal(state: Conversation, kind: str, agent: str, supervisor: bool) -> str:
    """Why a person may not make this move now ('' when they may). The one place these rules live:
    the terminal console and Slack both go through it."""
    move = AgentMove(kind) if kind in AgentMove._value2member_map_ else None
    if move is None:
        return f"unknown action {kind!r}"
    handoff = state.handoff
    if handoff.state not in _FITS[move]:
        return f"cannot {move}: the conversation is {handoff.state}"
    if move in _OWNER_ONLY and handoff.state == HandoffState.ASSIGNED and handoff.agent != agent:
        return f"cannot {move}: {handoff.agent} has claimed this conversation"
    if move == AgentMove.TAKEOVER and not supervisor:
        return "cannot take over: only a supervisor can"
    if move == AgentMove.TAKEOVER and handoff.agent == agent:
        return "cannot take over: it is already yours"
    return ""


def agent_move(turn: Turn, action: AgentAction) -> None:
    handoff = turn.state.handoff
    if action.kind == AgentMove.CLAIM:
        handoff.state, handoff.agent = HandoffState.ASSIGNED, action.agent
        turn.record("system", f"{action.agent} joined")
        turn.say("agent_joined", agent=action.agent)
    elif action.kind == AgentMove.TAKEOVER:
        previous, handoff.agent = handoff.agent, action.agent
        turn.record("system", f"{action.agent} took over from {previous}")
        if turn.state.ticket is not None:
            entry = Takeover(by=action.agent, from_agent=previous, at=turn.facts.now.isoformat())
            update_ticket(turn, takeovers=[*turn.state.ticket.takeovers, entry])
        turn.say("agent_joined", agent=action.agent)
    elif action.kind == AgentMove.REPLY:
        text = agent_text(action.text)
        turn.record("agent", text)
        turn.say("agent_message", text=text)
    elif action.kind == AgentMove.MACRO:
        order = turn.verified_order()
        refund_days = turn.d.policy.refund_days
        values: dict[str, Value] = order_values(order, refund_days) if order else {"refund_days": refund_days}
        turn.tell(f"macro_{action.text}", values)
    elif action.kind == AgentMove.HANDBACK:
        handoff.state, handoff.agent = HandoffState.NONE, None
        update_ticket(turn, status=TicketStatus.OPEN)
        turn.say("handoff_ended")
    elif action.kind == AgentMove.RESOLVE:
        handoff.state, handoff.agent = HandoffState.RESOLVED, None
        update_ticket(turn, status=TicketStatus.RESOLVED, resolved_at=turn.facts.now.isoformat())
        turn.state.csat_for = turn.state.ticket.id if turn.state.ticket else None
        turn.say("csat_ask", buttons=CSAT_BUTTONS)


def agent_text(text: str) -> str:
    """A person's reply as plain text: control and invisible characters removed, lines kept."""
    return "\n".join(clean_text(line) for line in (text or "").replace("\r\n", "\n").split("\n")).strip()


def transcript_text(turn: Turn) -> str:
    """The customer's message as the transcript and the agent see it."""
    parts = [turn.text] if turn.text else []
    if turn.inbound.button:
        parts.append(f"[button: {turn.inbound.button}]")
    parts += [f"[{a.kind}]" for a in turn.inbound.attachments]
    return " ".join(parts)


def _market(turn: Turn) -> str:
    """Where the customer most likely is, for the SLA: the order's market, else the phone's
    country, else the language's most likely market."""
    order = turn.verified_order()
    if order and order.market:
        return order.market
    if turn.state.verified_phone:
        return country_of(turn.state.verified_phone)
    return _LANGUAGE_MARKET.get(turn.language, "")


_LANGUAGE_MARKET = {
    "en": "GB", "es": "ES", "pt": "BR", "fr": "FR", "de": "DE", "it": "IT",
    "ru": "RU", "zh": "CN", "ja": "JP", "ko": "KR", "th": "TH", "ar": "SA",
}  # fmt: skip

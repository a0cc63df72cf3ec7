"""The one entry point from adapters into the core.

`handle(inbound)` holds the conversation's turn lock, looks up what the pure dialogue step
needs, runs it, carries out its effects, saves the state and returns rendered replies.
Agents' moves (`agent`) and time-driven work (`tick`) go through the same lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio.client import Pipeline

from bot.contracts import AgentMove, HandoffState, Priority
from bot.dialogue import (
    AgentAction,
    Dialogue,
    Enqueue,
    Facts,
    KeepPhoto,
    Outcome,
    RaisePriority,
    RelayToAgent,
    Reply,
    SaveTicket,
)
from bot.dialogue.outcome import ProofFacts, VerificationEffect
from bot.dialogue.people import refusal
from bot.dialogue.turn import clean_text
from bot.evidence import EvidenceStore
from bot.handoff import HumanQueue
from bot.limits import admit
from bot.lockouts import Lockouts
from bot.mailer import Mailer
from bot.messages import Button, Inbound, Outbound
from bot.order import Order
from bot.order_sources import OrderProvider, look_up
from bot.outbox import Outbox
from bot.render import Renderer, needs_order
from bot.state import Conversation, Said, Ticket
from bot.store import Store, StoreError, to_json
from bot.tickets import TicketBook
from bot.values import ORDER_FACTS

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
AgentListener = Callable[[str, dict[str, Any]], Any]  # (conversation id, event) -> awaitable or None
Event = tuple[str, dict[str, Any]]  # (conversation id, event) for the listeners


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TurnResult:
    """What a turn produced: replies for the customer, and what the core understood."""

    replies: list[Outbound]
    intent: str | None
    state: Conversation


@dataclass(frozen=True)
class AgentResult:
    ok: bool
    replies: list[Outbound]
    problem: str = ""  # why not, when ok is False


class DialogueManager:
    def __init__(
        self,
        *,
        dialogue: Dialogue,
        renderer: Renderer,
        store: Store,
        orders: OrderProvider,
        evidence: EvidenceStore,
        clock: Clock = utc_now,
        supervisors: frozenset[str] = frozenset(),
        mailer: Mailer | None = None,  # sends unlock codes (SMTP_URL); None: a lock goes to a person
    ) -> None:
        self.dialogue = dialogue
        self.renderer = renderer
        self.catalog = renderer.catalog
        self.store = store
        self.orders = orders
        self.evidence = evidence
        self.tickets = TicketBook(store)
        self.queue = HumanQueue(store)
        self.lockouts = Lockouts(store, dialogue.policy, renderer, mailer)
        self.outbox = Outbox(store)
        self.clock = clock
        self.supervisors = supervisors  # agents who may take over a conversation another agent claimed
        # Served channels (`aftersales run`): a turn's replies are queued for delivery with its save,
        # and a store failure is raised so the inbox tries the message again.
        self.deliver_replies = False
        self.listeners: list[AgentListener] = []  # e.g. the Slack console, to show relayed messages

    # -- customers ---------------------------------------------------------------------------

    async def handle(self, inbound: Inbound) -> list[Outbound]:
        """One customer message in, the bot's replies out."""
        return (await self.handle_turn(inbound)).replies

    async def handle_turn(self, inbound: Inbound) -> TurnResult:
        """One customer message, with an error boundary: whatever fails, the customer gets a
        polite `internal_error`, the lock is released and the message is kept for a person."""
        inbound = admit(inbound, self.dialogue.max_input_chars)
        try:
            result, events = await self._turn(inbound)
        except StoreError:
            if self.deliver_replies:
                raise  # the message stays in the inbox and is tried again: nothing is lost
            log.exception("turn failed conversation=%s", conversation_tag(inbound.conversation_id))
            return await self._apologise(inbound)
        except Exception:
            log.exception("turn failed conversation=%s", conversation_tag(inbound.conversation_id))
            return await self._apologise(inbound)
        await self._notify_all(events)
        return result

    async def _turn(self, inbound: Inbound) -> tuple[TurnResult, list[tuple[str, dict[str, Any]]]]:
        now = inbound.received_at or self.clock()
        meaning = None
        if not self.dialogue.too_long(inbound):
            # The embedding takes 15-50 ms of CPU: in a worker thread, before the lock, so webhooks and
            # other conversations' turns go on meanwhile.
            text = clean_text(inbound.text)
            meaning = await asyncio.to_thread(self.dialogue.recognizer.meaning, text) if text else None
        async with self.store.turn(inbound.conversation_id) as turn:
            state = _loaded(turn.state)
            if state is not None and inbound.message_id and inbound.message_id in state.seen:
                return TurnResult([], None, state), []  # a platform's redelivery: no side effect at all
            too_long = self.dialogue.too_long(inbound)
            number = None if too_long else self.dialogue.order_number_for(state, inbound)
            photos = () if too_long else tuple([await self.evidence.check(a) for a in inbound.attachments])
            lookup = await look_up(self.orders, number)
            facts = Facts(
                now=now,
                order=lookup.order,
                order_unavailable=lookup.unavailable,
                proof=await self._failures(state, number),
                photos=photos,
                ticket_id=await self.tickets.reserve_id(now, inbound.conversation_id),
                meaning=meaning,
            )
            outcome = self.dialogue.step(state, inbound, facts)
            if not await self.lockouts.send_codes(outcome.effects, turn.writes, now):  # no mail: a person instead
                outcome = self.dialogue.step(state, inbound, facts.without_mail())
            replies, events = await self._finish(outcome, now, turn.writes)
            if self.deliver_replies:
                await self.outbox.post(replies)  # committed with the turn: never saved without its replies
            for effect in outcome.effects:
                if isinstance(effect, KeepPhoto):
                    await self.evidence.keep(next(p for p in photos if p.ref == effect.ref))
            turn.state = outcome.state.dump()
        log.info(
            "turn conversation=%s intent=%s replies=%s",
            conversation_tag(inbound.conversation_id),
            outcome.intent,
            ",".join(r.key for r in replies),
        )
        return TurnResult(replies, outcome.intent, outcome.state), events

    async def _apologise(self, inbound: Inbound) -> TurnResult:
        """After a failed turn: keep the message where people will see it, and say sorry."""
        at = (inbound.received_at or self.clock()).isoformat()
        kept = {"conversation_id": inbound.conversation_id, "text": inbound.text[:2000], "button": inbound.button,
                "attachments": len(inbound.attachments), "at": at}  # fmt: skip
        try:
            await self.store.redis.xadd(self.store.key("failed_turns"), {"message": to_json(kept)}, maxlen=10_000)
        except Exception:  # the store itself is down: the log line above is all that can be kept
            log.error("could not keep the failed message conversation=%s", conversation_tag(inbound.conversation_id))
        language = inbound.locale_hint if inbound.locale_hint in self.catalog.locales else self.catalog.default
        text = self.renderer.text(language, "internal_error")
        state = Conversation.new(inbound.conversation_id, inbound.channel, inbound.user_id)
        apology = Outbound(inbound.conversation_id, "internal_error", text, language)
        if self.deliver_replies:
            try:
                await self.outbox.post([apology])
            except StoreError:
                log.error("could not queue the apology conversation=%s", conversation_tag(inbound.conversation_id))
        return TurnResult([apology], None, state)

    # -- people ------------------------------------------------------------------------------

    async def agent(self, conversation_id: str, action: AgentAction) -> AgentResult:
        """A person's move; refused with a reason when the conversation is not in the right state."""
        now = self.clock()
        async with self.store.turn(conversation_id) as turn:
            state = _loaded(turn.state)
            if state is None:
                return AgentResult(False, [], "no such conversation")
            problem = refusal(state, action.kind, action.agent, action.agent in self.supervisors)
            if problem:
                return AgentResult(False, [], problem)
            order = await self._order(state.slots.order_number) if state.slots.verified else None
            if action.kind == AgentMove.MACRO:
                problem = self._macro_refusal(state, action.text, order)
                if problem:
                    return AgentResult(False, [], problem)
            if action.kind == AgentMove.CLAIM and not await self.queue.claim(conversation_id, action.agent):
                return AgentResult(False, [], "someone else claimed it first")
            if action.kind in (AgentMove.HANDBACK, AgentMove.RESOLVE):
                await self.queue.release(conversation_id)
            facts = Facts(now=now, order=order, ticket_id=await self.tickets.reserve_id(now, conversation_id))
            outcome = self.dialogue.agent_step(state, action, facts)
            replies, events = await self._finish(outcome, now, turn.writes)
            await self._post(replies)  # inside the turn: committed with it
            turn.state = outcome.state.dump()
        await self._notify_all(events)
        return AgentResult(True, replies)

    async def collect(self, conversation_id: str) -> list[Outbound]:
        """Messages people sent to this customer from another process, for their channel to
        deliver: those collected before and not acknowledged yet, then new ones. Call `ack`
        after delivering them."""
        return await self.outbox.collect(conversation_id)

    async def ack(self, conversation_id: str) -> None:
        """The collected messages reached the customer: they are not collected again."""
        await self.outbox.ack(conversation_id)

    async def _post(self, replies: list[Outbound]) -> None:
        """Keep replies for the customer's channel in another process (inside the conversation's
        turn, they commit with it)."""
        await self.outbox.post(replies)

    async def delivery_failed(self, outbound: Outbound, reason: str) -> None:
        """A message the platform refused for good: the transcript says so, and listeners (the agent
        who wrote it, in Slack) are told."""
        now = self.clock()
        async with self.store.turn(outbound.conversation_id) as turn:
            state = _loaded(turn.state)
            if state is not None:
                line = Said(who="system", text=f"not delivered ({outbound.key}): {reason}", at=now.isoformat())
                state.transcript = [*state.transcript, line]
                turn.state = state.dump()
        event = {"type": "delivery_failed", "key": outbound.key, "reason": reason, "text": outbound.text}
        await self._notify_all([(outbound.conversation_id, event)])

    async def tick(self, now: datetime | None = None) -> list[str]:
        """Time-driven work: queued conversations past their SLA become urgent (their ids are
        returned); evidence photos older than the tickets they belong to are deleted."""
        now = now or self.clock()
        raised = []
        for entry in await self.queue.overdue(now):
            async with self.store.turn(entry.conversation_id) as turn:
                state = _loaded(turn.state)
                if state is None or state.handoff.state != HandoffState.QUEUED:
                    continue
                state.handoff.priority = Priority.URGENT
                if state.ticket:
                    state.ticket.priority = Priority.URGENT
                    self._stage_ticket(turn.writes, state.ticket, state)
                await self.queue.raise_priority(entry.conversation_id, Priority.URGENT)
                turn.state = state.dump()
            raised.append(entry.conversation_id)
        expired = await self.evidence.expire(self.store.ttl_seconds)  # photos go with their tickets
        if expired:
            log.info("expired %d evidence photos", expired)
        return raised

    async def conversation(self, conversation_id: str) -> Conversation | None:
        return _loaded(await self.store.load(conversation_id))

    # -- around the step ------------------------------------------------------------------------

    async def _finish(self, outcome: Outcome, now: datetime, writes: Pipeline) -> tuple[list[Outbound], list[Event]]:
        """Render the replies and carry out the effects; writes go out with the turn's save.
        Returns the events for listeners, told only once the turn is saved."""
        state = outcome.state
        replies = [self.render(state, reply) for reply in outcome.replies]
        for reply in replies:
            if reply.key != "agent_message":  # the agent's own words are in the transcript already
                state.transcript = [*state.transcript, Said(who="bot", text=reply.text, at=now.isoformat())]
        # A turn may touch its ticket several times (opened, then escalated): write the last version once.
        tickets = {e.ticket.id: e.ticket for e in outcome.effects if isinstance(e, SaveTicket)}
        for ticket in tickets.values():
            self._stage_ticket(writes, ticket, state)
        events: list[Event] = []
        for effect in outcome.effects:
            if isinstance(effect, Enqueue):
                self.queue.stage_enqueue(
                    writes, effect.conversation_id, effect.reason, effect.priority, effect.deadline, now
                )
                events.append((effect.conversation_id, {"type": "queued", "reason": effect.reason}))
            elif isinstance(effect, RaisePriority):
                await self.queue.raise_priority(effect.conversation_id, effect.priority)
            elif isinstance(effect, VerificationEffect):
                self.lockouts.stage(writes, effect, state)
            elif isinstance(effect, RelayToAgent):
                events.append((effect.conversation_id, {"type": "customer_message", "text": effect.text}))
        return replies, events

    def render(self, state: Conversation, reply: Reply) -> Outbound:
        language = state.language or self.catalog.default
        if reply.key == "agent_message":
            text = str(reply.values["text"])  # a person's own words, never a template
        else:
            text = self.renderer.text(language, reply.key, reply.values)
        buttons = tuple(Button(p, self.renderer.button_label(language, p)) for p in reply.buttons)
        return Outbound(state.id, reply.key, text, language, buttons)

    def _macro_refusal(self, state: Conversation, name: str, order: Order | None) -> str:
        key = f"macro_{name}"
        if not self.catalog.has_key(key):
            return f"no macro named {name!r}"
        if order is None and needs_order(self.catalog, state.language or self.catalog.default, key, ORDER_FACTS):
            return f"macro {name!r} states order facts, and this conversation has no verified order"
        return ""

    def _stage_ticket(self, writes: Pipeline, ticket: Ticket, state: Conversation) -> None:
        transcript = [line.model_dump() for line in state.transcript[-50:]]
        self.tickets.stage(writes, {**ticket.model_dump(mode="json"), "transcript": transcript})

    async def _order(self, number: str | None) -> Order | None:
        """The order for an agent's move: None when it does not exist or cannot be looked up now."""
        return (await look_up(self.orders, number)).order

    async def _failures(self, state: Conversation | None, number: str | None) -> ProofFacts:
        """Failed proofs, outages and a pending unlock code, read only while a proof is awaited."""
        if state is None or not self.dialogue.awaits_proof(state):
            return ProofFacts(can_mail_codes=self.lockouts.mailer is not None)
        return await self.lockouts.facts(state, number)

    async def _notify_all(self, events: list[Event]) -> None:
        """Tell listeners (the Slack console, ...) after the save; a failing listener is logged and
        cannot undo or break the turn."""
        for conversation_id, event in events:
            for listener in self.listeners:
                try:
                    result = listener(conversation_id, event)
                    if hasattr(result, "__await__"):
                        await result
                except Exception:
                    log.exception("listener failed conversation=%s", conversation_tag(conversation_id))


def _loaded(data: dict[str, Any] | None) -> Conversation | None:
    return None if data is None else Conversation.load(data)


def conversation_tag(conversation_id: str) -> str:
    """A stable, anonymous tag for logs: conversation ids can hold phone numbers."""
    return hashlib.blake2s(conversation_id.encode(), digest_size=6).hexdigest()

"""The terminal agent console, for teams without Slack: the queue, claim, read, reply, resolve.

It drives the same handoff service (`DialogueManager.agent`) the Slack console uses. Customer
text is shown with control characters made visible, so a message cannot repaint the terminal.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from datetime import datetime
from typing import Any, TextIO

from bot.contracts import AgentMove, HandoffState
from bot.dialogue import AgentAction
from bot.manager import DialogueManager

HELP = """commands:
  queue                      waiting conversations (highest priority, then oldest, first) and yours
  show CONV                  transcript, verified order, photos and ticket of a conversation
  claim CONV                 take a queued conversation (CONV may be its number in the queue list)
  reply CONV TEXT            write to the customer
  macro CONV NAME            send a prepared answer: refund_approved, replacement_sent, need_more_photos
  handback CONV              give the conversation back to the bot
  resolve CONV               close the case and ask the customer for a rating
  takeover CONV              (supervisors) take over a conversation another agent claimed
  tickets | ticket ID        recent tickets, or one in full
  help | quit"""


def visible(text: object) -> str:
    """Customer text made safe for a terminal: control characters shown, not executed."""
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in str(text))


def format_ticket_line(ticket: dict[str, Any]) -> str:
    return (
        f"{ticket['id']}  {ticket.get('status', ''):<9} {ticket.get('priority', ''):<7} "
        f"{ticket.get('intent', ''):<15} {ticket.get('order_number') or '-':<20} "
        f"{ticket.get('language', '')}/{ticket.get('channel', '')}  {ticket.get('created_at', '')[:16]}"
    )


def format_ticket(ticket: dict[str, Any]) -> str:
    lines = [f"Ticket {ticket['id']}"]
    for name in ("status", "priority", "intent", "order_number", "resolution", "photos", "language", "channel",
                 "csat", "created_at", "sla_deadline", "conversation_id"):  # fmt: skip
        lines.append(f"  {name:<15} {visible(ticket.get(name)) if ticket.get(name) is not None else '-'}")
    for reason in ticket.get("reasons") or []:
        lines.append(f"  handoff         {reason['reason']} (rule {reason.get('rule') or '-'}) at {reason['at'][:16]}")
    for ref in ticket.get("photo_refs") or []:
        lines.append(f"  photo           {ref}")
    if ticket.get("transcript"):
        lines.append("  transcript:")
        lines += [f"    {e['at'][11:16]} {e['who']:>8}: {visible(e['text'])}" for e in ticket["transcript"]]
    return "\n".join(lines)


class AgentConsole:
    def __init__(self, manager: DialogueManager, agent: str, out: TextIO = sys.stdout) -> None:
        self.manager = manager
        self.agent = agent
        self.out = out
        self._listed: list[str] = []

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _conversation(self, ref: str) -> str:
        if ref.isdigit() and 0 < int(ref) <= len(self._listed):
            return self._listed[int(ref) - 1]
        return ref

    async def execute(self, line: str) -> bool:
        """Run one command line; False when the agent quits."""
        try:
            words = shlex.split(line)
        except ValueError as error:
            self.say(f"cannot read that: {error}")
            return True
        if not words:
            return True
        command, args = words[0].lower(), words[1:]
        if command in ("quit", "exit"):
            return False
        if command == "help":
            self.say(HELP)
        elif command == "queue":
            await self.queue()
        elif command == "show" and args:
            await self.show(self._conversation(args[0]))
        elif command in ("claim", "handback", "resolve", "takeover") and args:
            await self.act(self._conversation(args[0]), AgentAction(AgentMove(command), self.agent))
        elif command == "reply" and len(args) >= 2:
            await self.act(self._conversation(args[0]), AgentAction(AgentMove.REPLY, self.agent, " ".join(args[1:])))
        elif command == "macro" and len(args) == 2:
            await self.act(self._conversation(args[0]), AgentAction(AgentMove.MACRO, self.agent, args[1]))
        elif command == "tickets":
            for ticket in await self.manager.tickets.recent(30):
                self.say(format_ticket_line(ticket))
        elif command == "ticket" and args:
            found = await self.manager.tickets.get(args[0])
            self.say(format_ticket(found) if found else f"no ticket {args[0]}")
        else:
            self.say(f"not understood: {visible(line)!r} — type help")
        return True

    async def queue(self) -> None:
        await self.manager.tick()
        waiting = await self.manager.queue.waiting()
        mine = [e for e in await self.manager.queue.assigned() if e.agent == self.agent]
        self._listed = [e.conversation_id for e in waiting] + [e.conversation_id for e in mine]
        if not self._listed:
            self.say("the queue is empty")
        now = self.manager.clock()
        for n, entry in enumerate([*waiting, *mine], 1):
            age = int((now - entry.enqueued_at).total_seconds() // 60)
            due = (
                "OVERDUE"
                if entry.deadline <= now and entry.state == HandoffState.QUEUED
                else f"due {entry.deadline:%H:%M}"
            )
            self.say(
                f"{n:>3}. {entry.state:<8} {entry.priority:<7} {entry.reason:<20} {age:>4} min  {due:<10} "
                f"{visible(entry.conversation_id)}"
            )

    async def show(self, conversation_id: str) -> None:
        state = await self.manager.conversation(conversation_id)
        if state is None:
            self.say(f"no conversation {visible(conversation_id)}")
            return
        slots, handoff = state.slots, state.handoff
        self.say(f"Conversation {visible(conversation_id)} ({state.channel}, language {state.language})")
        self.say(f"  handoff: {handoff.state} / {handoff.reason} / {handoff.priority}")
        order = await self.manager.orders.get(slots.order_number) if slots.order_number else None
        if order and slots.verified:
            items = ", ".join(f"{i.get('qty', 1)}× {i.get('name', i.get('sku', '?'))}" for i in order.items)
            self.say(
                f"  verified order {order.number}: {order.status}, {order.total} {order.currency}, market "
                f"{order.market}, delivered {order.delivered_at or '-'}, {order.carrier} {order.tracking} — {items}"
            )
        elif slots.order_number:
            self.say(f"  order {visible(slots.order_number)} (not verified: do not disclose order details)")
        for ref in state.photo_refs:
            self.say(f"  photo: {self.manager.evidence.folder / ref}")
        if state.ticket:
            self.say(f"  ticket: {format_ticket_line(state.ticket.model_dump(mode='json'))}")
        for entry in state.transcript[-30:]:
            self.say(f"    {entry.at[11:16]} {entry.who:>8}: {visible(entry.text)}")

    async def act(self, conversation_id: str, action: AgentAction) -> None:
        result = await self.manager.agent(conversation_id, action)
        if not result.ok:
            self.say(f"not done: {result.problem}")
            return
        for reply in result.replies:
            self.say(f"  → customer ({reply.key}): {reply.text}")


async def run_console(manager: DialogueManager, agent: str, stdin: TextIO = sys.stdin) -> None:
    console = AgentConsole(manager, agent)
    console.say(f"Agent console — signed in as {agent}. Type help for commands.")
    await console.queue()
    while True:
        console.say(f"[{datetime.now():%H:%M}] agent> ")
        line = await asyncio.to_thread(stdin.readline)
        if not line or not await console.execute(line.strip()):
            return

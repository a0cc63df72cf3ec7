"""The terminal agent console drives the same handoff service as Slack will."""

from __future__ import annotations

import io

from bot.messages import Inbound
from channels.agent_console import AgentConsole, format_ticket, visible
from tests.factories import NOW, message, order


def console_for(manager):
    out = io.StringIO()
    return AgentConsole(manager, "Mei", out=out), out


MUG = {"sku": "MUG-01", "name": "Ceramic mug", "qty": 2, "price": 6400}


def test_an_agent_lists_claims_reads_replies_and_resolves(make_manager, run):
    manager = make_manager([order(items=[MUG])], clock=lambda: NOW)
    run(manager.handle(message("my mug arrived broken SO-10023", received_at=NOW)))
    run(manager.handle(message("sato@example.jp", received_at=NOW)))
    run(manager.handle(message("I want to talk to a human", received_at=NOW)))
    console, out = console_for(manager)

    run(console.execute("queue"))
    assert "customer_request" in out.getvalue() and "console:c1" in out.getvalue()
    run(console.execute("claim 1"))
    assert "agent_joined" in out.getvalue()
    run(console.execute("show console:c1"))
    shown = out.getvalue()
    assert "verified order SO-10023" in shown and "2× Ceramic mug" in shown  # what was ordered, once verified
    assert "my mug arrived broken" in shown
    run(console.execute("reply console:c1 'We are sending a new mug today.'"))
    run(console.execute("macro console:c1 replacement_sent"))
    run(console.execute("resolve console:c1"))
    text = out.getvalue()
    assert "We are sending a new mug today." in text and "macro_replacement_sent" in text and "csat_ask" in text
    state = run(manager.conversation("console:c1"))
    assert state.handoff.state == "resolved" and state.ticket.status == "resolved"


def test_an_order_not_yet_verified_is_shown_without_its_details(make_manager, run):
    manager = make_manager([order(items=[MUG])], clock=lambda: NOW)
    run(manager.handle(message("my mug arrived broken SO-10023", received_at=NOW)))
    run(manager.handle(message("I want to talk to a human", received_at=NOW)))
    console, out = console_for(manager)
    run(console.execute("show console:c1"))
    shown = out.getvalue()
    assert "order SO-10023 (not verified" in shown
    assert "Ceramic" not in shown and "EJ123456789JP" not in shown


def test_customer_text_cannot_drive_the_terminal(make_manager, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("agent please \x1b[2J\x1b[31mHACKED", received_at=NOW)))
    console, out = console_for(manager)
    run(console.execute("show console:c1"))
    assert "\x1b" not in out.getvalue()
    assert "customer: agent please" in out.getvalue() and "HACKED" in out.getvalue()  # shown, but inert
    assert visible("a\x1bb") == "a\\x1bb"


def test_a_conversation_not_queued_cannot_be_claimed(make_manager, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(Inbound("console", "console:c9", "c9", text="hello", received_at=NOW)))
    console, out = console_for(manager)
    run(console.execute("claim console:c9"))
    assert "not done" in out.getvalue()


def test_tickets_print_readably(make_manager, run):
    manager = make_manager([order()], clock=lambda: NOW)
    run(manager.handle(message("I want a real person", received_at=NOW)))
    ticket = run(manager.tickets.recent())[0]
    printed = format_ticket(ticket)
    assert ticket["id"] in printed and "escalated" in printed and "customer_request" in printed
    assert "transcript:" in printed and "I want a real person" in printed

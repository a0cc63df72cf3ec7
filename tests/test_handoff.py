"""The human queue: priority then age, atomic claims, SLA escalation, relay while with a person."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.dialogue import AgentAction
from tests.factories import NOW, message


def test_two_agents_claiming_at_once_exactly_one_wins(make_manager, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("I want to talk to a real person", received_at=NOW)))

    async def race():
        claims = [manager.agent("console:c1", AgentAction("claim", f"agent-{i}")) for i in range(10)]
        return await asyncio.gather(*claims)

    results = run(race())
    assert sum(r.ok for r in results) == 1
    assert {r.problem for r in results if not r.ok} <= {
        "someone else claimed it first",
        "cannot claim: the conversation is assigned",
    }


def test_claims_from_two_workers_race_on_the_redis_script(make_manager, store, run):
    """Bypassing the conversation lock, the Lua claim alone still lets exactly one through."""
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("I want to talk to a real person", received_at=NOW)))

    async def race():
        return await asyncio.gather(*(manager.queue.claim("console:c1", f"a{i}") for i in range(20)))

    assert sum(run(race())) == 1


def test_the_queue_orders_by_priority_then_age(make_manager, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("can I talk to a person", conversation="console:early", received_at=NOW)))
    later = NOW + timedelta(minutes=5)
    run(manager.handle(message("I will call my lawyer", conversation="console:angry", received_at=later)))
    run(manager.handle(message("agent please, a human", conversation="console:late", received_at=later)))
    order = [e.conversation_id for e in run(manager.queue.waiting())]
    assert order == ["console:angry", "console:early", "console:late"]


def test_a_queued_conversation_past_its_sla_becomes_urgent(make_manager, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("a human please", received_at=NOW)))
    assert run(manager.tick(NOW + timedelta(minutes=59))) == []
    assert run(manager.tick(NOW + timedelta(minutes=61))) == ["console:c1"]
    state = run(manager.conversation("console:c1"))
    assert state.handoff.priority == "urgent"
    assert run(manager.queue.waiting())[0].priority == "urgent"


def test_agent_moves_are_refused_in_the_wrong_state(make_manager, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("hello", received_at=NOW)))
    refused = run(manager.agent("console:c1", AgentAction("reply", "Ann", "hi")))
    assert not refused.ok and "none" in refused.problem
    assert not run(manager.agent("console:nobody", AgentAction("claim", "Ann"))).ok


def test_agent_replies_reach_another_process_through_the_outbox(make_manager, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("a human please", received_at=NOW)))
    run(manager.agent("console:c1", AgentAction("claim", "Ann")))
    run(manager.agent("console:c1", AgentAction("reply", "Ann", "Hello, Ann here")))
    delivered = run(manager.collect("console:c1"))
    assert [r.text for r in delivered][-1] == "Hello, Ann here"
    run(manager.ack("console:c1"))
    assert run(manager.collect("console:c1")) == []


def test_outbox_messages_not_acknowledged_are_delivered_again(make_manager, run):
    """A channel that crashed between reading and delivering gets the messages again."""
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("a human please", received_at=NOW)))
    run(manager.agent("console:c1", AgentAction("claim", "Ann")))
    run(manager.agent("console:c1", AgentAction("reply", "Ann", "Hello, Ann here")))
    assert run(manager.collect("console:c1"))[-1].text == "Hello, Ann here"  # read, then the channel dies
    restarted = make_manager(clock=lambda: NOW)
    again = run(restarted.collect("console:c1"))
    assert [r.text for r in again].count("Hello, Ann here") == 1
    run(restarted.agent("console:c1", AgentAction("reply", "Ann", "Still there?")))
    run(restarted.ack("console:c1"))
    assert [r.text for r in run(restarted.collect("console:c1"))] == ["Still there?"]
    run(restarted.ack("console:c1"))
    assert run(restarted.collect("console:c1")) == []


def test_a_legal_threat_while_queued_moves_the_conversation_up(make_manager, run):
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("a human please", conversation="console:first", received_at=NOW)))
    later = NOW + timedelta(minutes=1)
    run(manager.handle(message("a human please", conversation="console:second", received_at=later)))
    run(manager.handle(message("I will sue you, my lawyer is ready", conversation="console:second", received_at=later)))
    waiting = run(manager.queue.waiting())
    assert [e.conversation_id for e in waiting] == ["console:second", "console:first"]
    assert waiting[0].priority == "high"


def test_a_macro_stating_order_facts_is_refused_without_a_verified_order(make_manager, run):
    """Never "the refund of  for order  has been approved": the agent is told why instead."""
    manager = make_manager(clock=lambda: NOW)
    run(manager.handle(message("I want to talk to a real person", received_at=NOW)))
    assert run(manager.agent("console:c1", AgentAction("claim", "Mei"))).ok
    refused = run(manager.agent("console:c1", AgentAction("macro", "Mei", "refund_approved")))
    assert not refused.ok and "no verified order" in refused.problem and refused.replies == []
    sent = run(manager.agent("console:c1", AgentAction("macro", "Mei", "need_more_photos")))
    assert sent.ok and [r.key for r in sent.replies] == ["macro_need_more_photos"]


def _claimed_by_mei(make_manager, run, **kw):
    manager = make_manager(clock=lambda: NOW, **kw)
    run(manager.handle(message("I want to talk to a real person", received_at=NOW)))
    assert run(manager.agent("console:c1", AgentAction("claim", "Mei"))).ok
    return manager


def test_only_the_agent_who_claimed_may_reply_hand_back_or_resolve(make_manager, run):
    manager = _claimed_by_mei(make_manager, run)
    for kind, text in (
        ("reply", "hi, I am here too"),
        ("handback", ""),
        ("resolve", ""),
        ("macro", "need_more_photos"),
    ):
        result = run(manager.agent("console:c1", AgentAction(kind, "Raj", text)))
        assert not result.ok and "Mei has claimed" in result.problem and result.replies == []
    assert run(manager.conversation("console:c1")).handoff.agent == "Mei"
    assert run(manager.agent("console:c1", AgentAction("resolve", "Mei"))).ok


def test_a_supervisor_takes_over_and_the_ticket_records_it(make_manager, run):
    manager = _claimed_by_mei(make_manager, run, supervisors=frozenset({"Lena"}))
    refused = run(manager.agent("console:c1", AgentAction("takeover", "Raj")))
    assert not refused.ok and "supervisor" in refused.problem
    taken = run(manager.agent("console:c1", AgentAction("takeover", "Lena")))
    assert taken.ok and [r.key for r in taken.replies] == ["agent_joined"]
    state = run(manager.conversation("console:c1"))
    assert state.handoff.agent == "Lena"
    ticket = run(manager.tickets.get(state.ticket.id))
    assert [(t["by"], t["from_agent"]) for t in ticket["takeovers"]] == [("Lena", "Mei")]
    assert not run(manager.agent("console:c1", AgentAction("reply", "Mei", "still me?"))).ok


def test_agent_text_reaches_the_customer_as_plain_text_without_control_characters(make_manager, run):
    manager = _claimed_by_mei(make_manager, run)
    result = run(manager.agent("console:c1", AgentAction("reply", "Mei", "Hello\x1b[31m there\u202e!\r\nLine two\x00")))
    assert [r.text for r in result.replies] == ["Hello[31m there!\nLine two"]

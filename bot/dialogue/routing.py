"""One customer message, top to bottom: who gets it (the people, the CSAT question, an
escalation rule, the waiting step, a new flow) and what the bot answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.contracts import Button, HandoffState, Intent, Signal
from bot.dialogue import flow
from bot.dialogue.csat import take_score
from bot.dialogue.people import hand_off, relay, transcript_text
from bot.dialogue.turn import SURE, Turn
from bot.order import same_order_number

if TYPE_CHECKING:
    from bot.intents import Understanding

SEEN_LIMIT = 50


def handle(turn: Turn) -> None:
    state = turn.state
    if _already_seen(turn):
        return
    if len(turn.text) > turn.d.max_input_chars:
        _settle_language(turn, keep_current=True)
        turn.say("input_rejected", max_chars=turn.d.max_input_chars)
        return
    _settle_language(turn)
    if turn.inbound.verified_phone:
        state.verified_phone = turn.inbound.verified_phone
    turn.record("customer", transcript_text(turn))
    if state.handoff.state in (HandoffState.QUEUED, HandoffState.ASSIGNED):
        relay(turn)
        return
    if state.csat_for and take_score(turn):
        return
    understanding = turn.d.recognizer.understand(turn.text, turn.language, turn.facts.meaning) if turn.text else None
    turn.intent = understanding.intent if understanding else None
    _take_order_number(turn)
    signals = understanding.signals if understanding else frozenset()
    # The classifier alone must be sure before a person is called; the keyword rules need not be.
    sure_about_human = (
        understanding and understanding.intent == Intent.TALK_TO_HUMAN and understanding.confidence >= SURE
    )
    if turn.inbound.button == Button.HUMAN or sure_about_human:
        signals = signals | {Signal.HUMAN}
    if state.dispute and _disputes(turn, understanding, signals):
        turn.events.add(state.dispute)
    rule = turn.d.rules.first(signals, turn.events)
    if rule:
        hand_off(turn, rule.reason, rule.priority, rule.name)
        return
    if turn.inbound.button:
        _button(turn, turn.inbound.button)
    elif turn.inbound.attachments and not turn.text:
        _attachments_only(turn)
    else:
        _text(turn, understanding)
    if state.fallbacks and (rule := turn.d.rules.first((), (), state.fallbacks)):
        hand_off(turn, rule.reason, rule.priority, rule.name)


def _already_seen(turn: Turn) -> bool:
    message_id = turn.inbound.message_id
    if not message_id:
        return False
    if message_id in turn.state.seen:
        return True
    turn.state.seen = [*turn.state.seen[-(SEEN_LIMIT - 1) :], message_id]
    return False


def _settle_language(turn: Turn, keep_current: bool = False) -> None:
    current = turn.state.language
    if keep_current and current:
        return
    detector = turn.d.detector
    decision = detector.decide(turn.text[:300], current, turn.inbound.locale_hint, turn.d.default_locale)
    turn.state.language = decision.language
    if decision.switched:
        turn.say("language_switched")
    elif decision.unsupported:
        turn.say("language_unsupported", languages=turn.d.language_names)


def _take_order_number(turn: Turn) -> None:
    """An order number anywhere in a message is taken, whatever was asked."""
    number = turn.d.numbers.find(turn.text)
    slots = turn.state.slots
    if number and not same_order_number(number, slots.order_number):  # "so10023" is still SO-10023
        slots.order_number, slots.verified = number, False
        turn.new_number = True
        flow.rewind_to_verification(turn)


def _disputes(turn: Turn, understanding: Understanding | None, signals: frozenset[str]) -> bool:
    """After a refusal or a charge: does the customer push back?"""
    if signals & {Signal.DISPUTE, Signal.HUMAN}:
        return True
    intent = understanding.intent if understanding else None
    return intent in (Intent.COMPLAINT, Intent.TALK_TO_HUMAN) or (
        intent is not None and intent == turn.state.flow_intent
    )


def _button(turn: Turn, payload: str) -> None:
    step = turn.waiting_step
    if step and step.press(turn, payload):
        flow.advance(turn)
        return
    turn.say("button_expired")
    if step:
        step.prompt(turn)
    else:
        turn.say("how_can_i_help")


def _attachments_only(turn: Turn) -> None:
    step = turn.waiting_step
    if step and step.takes_photos and step.receive(turn):
        flow.advance(turn)
        return
    if turn.accepted_photos():
        turn.keep_photos_for_later()
        turn.say("photo_not_expected")
    else:
        turn.say("attachment_unsupported")
    if step:
        step.prompt(turn)


def _text(turn: Turn, understanding: Understanding | None) -> None:
    state, step = turn.state, turn.step
    if step and not state.waiting and turn.new_number:  # rewound to verify a new number
        flow.advance(turn)
        return
    waiting = turn.waiting_step
    if waiting and waiting.answer(turn, understanding):
        state.fallbacks = 0
        flow.advance(turn)
        return
    intent = understanding.intent if understanding else None
    if waiting and (intent == state.flow or not _leaves_flow(understanding)):
        intent = intent if intent == Intent.OTHER else None  # "ok", "hello", the same request again: ask again
    if intent and intent != Intent.OTHER and intent in turn.d.flows:
        state.fallbacks = 0
        if not (waiting and waiting.takes_photos):
            turn.keep_photos_for_later()
        flow.start(turn, intent, understanding.choice if understanding else None)
        return
    if waiting:
        if intent == Intent.OTHER:
            state.fallbacks += 1
            turn.say("fallback")
        waiting.prompt(turn)
        return
    if intent is None:
        turn.say("how_can_i_help")
        return
    state.fallbacks += 1
    turn.say("fallback")


def _leaves_flow(understanding: Understanding | None) -> bool:
    """A waiting flow is left only for a clear, different request (or a clear goodbye)."""
    return bool(
        understanding and understanding.intent not in (Intent.OTHER, Intent.GREET) and understanding.confidence >= SURE
    )

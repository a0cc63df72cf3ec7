"""The dialogue step: (conversation state, inbound message, facts) -> (new state, replies, effects).

Pure: it reads no store and sends nothing. The manager looks up what a turn may need (the
order named in the conversation, failed verifications on it, checked photos, a fresh ticket
id) and passes it in as `Facts`; the step answers with catalog keys and effects to carry out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bot.catalog import Catalog
from bot.escalation import EscalationRules
from bot.flows import Step
from bot.formatting import (
    format_day,
    format_minutes,
    format_moment,
    format_money,
    format_service_hours,
)
from bot.intents import CHOICES, IntentRecognizer, Understanding
from bot.language import LanguageDetector
from bot.messages import Inbound
from bot.order import Order, OrderNumbers, phones_match
from bot.policy import Policy

TRANSCRIPT_LIMIT = 200
SEEN_LIMIT = 50
CSAT_BUTTON = re.compile(r"^csat:([1-5])$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")
_CSAT_DIGIT = re.compile(r"^\s*([1-5])\s*(?:/\s*5)?\s*[.!]*\s*$")


@dataclass(frozen=True, slots=True)
class PhotoCheck:
    """What the evidence service made of one attachment."""

    accepted: bool
    reason: str | None = None  # a photo_reasons key when rejected
    ref: str | None = None  # stored file name when accepted
    is_image: bool = True


@dataclass(frozen=True, slots=True)
class Facts:
    """What the manager looked up for this turn."""

    now: datetime
    order: Order | None = None  # the order for the number the conversation names, if it exists
    order_failures: int = 0  # failed verifications on that number, across conversations
    photos: tuple[PhotoCheck, ...] = ()
    ticket_id: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    key: str
    values: dict[str, Any] = field(default_factory=dict)
    buttons: tuple[str, ...] = ()


# -- effects: what the manager carries out after the step --------------------------------


@dataclass(frozen=True, slots=True)
class SaveTicket:
    ticket: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Enqueue:
    conversation_id: str
    reason: str
    priority: str
    deadline: str  # ISO time by which a person should have answered


@dataclass(frozen=True, slots=True)
class RaisePriority:
    conversation_id: str
    priority: str


@dataclass(frozen=True, slots=True)
class CountFailedVerification:
    order_number: str


@dataclass(frozen=True, slots=True)
class RelayToAgent:
    conversation_id: str
    text: str


@dataclass(frozen=True, slots=True)
class AgentAction:
    kind: str  # claim | reply | macro | handback | resolve
    agent: str
    text: str = ""  # the reply, or the macro name


Effect = SaveTicket | Enqueue | RaisePriority | CountFailedVerification | RelayToAgent


@dataclass
class Outcome:
    state: dict[str, Any]
    replies: list[Reply]
    effects: list[Effect]
    intent: str | None = None


def new_state(inbound: Inbound) -> dict[str, Any]:
    return {
        "id": inbound.conversation_id,
        "channel": inbound.channel,
        "user_id": inbound.user_id,
        "language": None,
        "flow": None,
        "step": 0,
        "waiting": False,
        "slots": {"order_number": None, "verified": False, "photos": 0, "resolution": None, "reason": None},
        "handoff": {"state": "none", "reason": None, "priority": None},
        "fallbacks": 0,
        "failures": 0,
        "dispute": None,
        "csat_for": None,
        "ticket": None,
        "photo_refs": [],
        "early_photos": [],
        "told_waiting": False,
        "transcript": [],
        "seen": [],
        "verified_phone": None,
    }


class Dialogue:
    """The after-sales conversation logic, configured by flows, policy, rules and catalogs."""

    def __init__(
        self,
        *,
        flows: dict[str, tuple[Step, ...]],
        catalog: Catalog,
        detector: LanguageDetector,
        recognizer: IntentRecognizer,
        numbers: OrderNumbers,
        policy: Policy,
        rules: EscalationRules,
        max_input_chars: int = 2000,
        default_locale: str = "en",
    ) -> None:
        self.flows = flows
        self.catalog = catalog
        self.detector = detector
        self.recognizer = recognizer
        self.numbers = numbers
        self.policy = policy
        self.rules = rules
        self.max_input_chars = max_input_chars
        self.default_locale = default_locale

    def step(self, state: dict[str, Any] | None, inbound: Inbound, facts: Facts) -> Outcome:
        turn = _Turn(self, _copy_state(state) if state else new_state(inbound), inbound, facts)
        turn.run()
        return Outcome(turn.state, turn.replies, turn.effects, turn.intent)

    def agent_step(self, state: dict[str, Any], action: AgentAction, facts: Facts) -> Outcome:
        """A person's move in a handed-off conversation: claim, reply, macro, hand back, resolve."""
        turn = _Turn(self, _copy_state(state), Inbound(state["channel"], state["id"], state["user_id"]), facts)
        turn.agent(action)
        return Outcome(turn.state, turn.replies, turn.effects, None)

    def order_number_for(self, state: dict[str, Any] | None, inbound: Inbound) -> str | None:
        """The order number this turn will be about: named in the message, or already known."""
        return self.numbers.find(clean_text(inbound.text)) or (state or {}).get("slots", {}).get("order_number")

    def awaits_proof(self, state: dict[str, Any] | None) -> bool:
        """Whether this turn may check a proof of ownership (and so needs the failure count)."""
        step = _current_step(self, state or {})
        return step is not None and step.kind == "verify" and bool((state or {}).get("waiting"))

    def expects_photos(self, state: dict[str, Any] | None) -> bool:
        step = _current_step(self, state or {})
        return step is not None and step.kind == "ask" and step.get("ask") == "photos"


def _copy_state(state: dict[str, Any]) -> dict[str, Any]:
    """A copy the step may change freely. Lists are never changed in place, only replaced,
    so sharing them is safe — and copying a 200-line transcript every turn would cost more
    than the rest of the turn."""
    copied = dict(state)
    for name in ("slots", "handoff", "ticket"):
        if isinstance(copied.get(name), dict):
            copied[name] = dict(copied[name])
    return copied


def clean_text(text: str) -> str:
    """Control and invisible characters removed, Unicode normalised, whitespace trimmed."""
    return _CONTROL.sub("", unicodedata.normalize("NFC", text or "")).strip()


def _current_step(dialogue: Dialogue, state: dict[str, Any]) -> Step | None:
    flow = dialogue.flows.get(state.get("flow") or "")
    index = state.get("step", 0)
    return flow[index] if flow and index < len(flow) else None


class _Turn:
    """One step's working memory; all mutation stays on the copied state."""

    def __init__(self, dialogue: Dialogue, state: dict[str, Any], inbound: Inbound, facts: Facts) -> None:
        self.d = dialogue
        self.state = state
        self.inbound = inbound
        self.facts = facts
        self.replies: list[Reply] = []
        self.effects: list[Effect] = []
        self.intent: str | None = None
        self.text = clean_text(inbound.text)
        self.events: set[str] = set()
        self.new_number = False

    # -- the turn, top to bottom ----------------------------------------------------------

    def run(self) -> None:
        if self._already_seen():
            return
        if len(self.text) > self.d.max_input_chars:
            self._settle_language(short_only=True)
            self.say("input_rejected", max_chars=self.d.max_input_chars)
            return
        self._settle_language()
        if self.inbound.verified_phone:
            self.state["verified_phone"] = self.inbound.verified_phone
        self._record("customer", self._transcript_text())
        if self.state["handoff"]["state"] in ("queued", "assigned"):
            self._relay()
            return
        if self.state.get("csat_for") and self._take_csat():
            return
        understanding = self.d.recognizer.understand(self.text, self.language) if self.text else None
        self.intent = understanding.intent if understanding else None
        self._take_order_number()
        signals = understanding.signals if understanding else frozenset()
        # The classifier alone must be sure before a person is called; the keyword rules need not be.
        if self.inbound.button == "human" or (self.intent == "talk_to_human" and understanding.confidence >= 0.6):
            signals = signals | {"human"}
        if self.state.get("dispute") and self._disputes(understanding, signals):
            self.events.add(self.state["dispute"])
        rule = self.d.rules.first(signals, self.events)
        if rule:
            self.handoff(rule.reason, rule.priority, rule.name)
            return
        if self.inbound.button:
            self._button()
        elif self.inbound.attachments and not self.text:
            self._attachments_only()
        else:
            self._text(understanding)
        if self.state["fallbacks"] and (rule := self.d.rules.first((), (), self.state["fallbacks"])):
            self.handoff(rule.reason, rule.priority, rule.name)

    # -- language, transcript, de-duplication --------------------------------------------

    @property
    def language(self) -> str:
        return self.state["language"] or self.d.default_locale

    def _settle_language(self, short_only: bool = False) -> None:
        sample = self.text[:300]
        current = self.state["language"]
        if short_only and current:
            return
        language, switched = self.d.detector.decide(sample, current, self.inbound.locale_hint, self.d.default_locale)
        self.state["language"] = language
        if switched:
            self.say("language_switched")

    def _already_seen(self) -> bool:
        message_id = self.inbound.message_id
        if not message_id:
            return False
        if message_id in self.state["seen"]:
            return True
        self.state["seen"] = [*self.state["seen"][-(SEEN_LIMIT - 1) :], message_id]
        return False

    def _transcript_text(self) -> str:
        parts = [self.text] if self.text else []
        if self.inbound.button:
            parts.append(f"[button: {self.inbound.button}]")
        parts += [f"[{a.kind}]" for a in self.inbound.attachments]
        return " ".join(parts)

    def _record(self, who: str, text: str) -> None:
        entry = {"who": who, "text": text, "at": self.facts.now.isoformat()}
        self.state["transcript"] = [*self.state["transcript"][-(TRANSCRIPT_LIMIT - 1) :], entry]

    def say(self, key: str, buttons: tuple[str, ...] = (), **values: Any) -> None:
        self.replies.append(Reply(key, values, buttons))

    # -- with a person -------------------------------------------------------------------

    def _relay(self) -> None:
        """Queued or assigned: the customer talks to people; the bot only passes messages on."""
        self.effects.append(RelayToAgent(self.state["id"], self._transcript_text()))
        understanding = self.d.recognizer.understand(self.text, self.language) if self.text else None
        self.intent = understanding.intent if understanding else None
        self._keep_photos_for_agent()
        rule = self.d.rules.first(understanding.signals) if understanding else None
        handoff = self.state["handoff"]
        if rule and _rank(rule.priority) > _rank(handoff["priority"]):
            handoff["priority"] = rule.priority  # a legal threat in the queue jumps ahead
            self.effects.append(RaisePriority(self.state["id"], rule.priority))
            self._update_ticket(priority=rule.priority, add_reason=(rule.reason, rule.name))
        if handoff["state"] == "queued" and not self.state["told_waiting"]:
            self.state["told_waiting"] = True
            self.say("handoff_waiting")

    def _keep_photos_for_agent(self) -> None:
        refs = [p.ref for p in self.facts.photos if p.accepted and p.ref]
        if refs:
            self.state["photo_refs"] = [*self.state["photo_refs"], *refs]
            self._update_ticket(photo_refs=self.state["photo_refs"])

    def handoff(self, reason: str, priority: str, rule: str) -> None:
        """Queue the conversation for a person and tell the customer when to expect one."""
        slots, now = self.state["slots"], self.facts.now
        slots["reason"] = slots["reason"] or reason
        market = self._market()
        minutes = self.d.policy.sla_minutes(self.state["channel"], market)
        hours = self.d.policy.service_hours
        deadline = hours.add_service_minutes(now, minutes)
        self.state["handoff"] = {"state": "queued", "reason": reason, "priority": priority}
        self.state.update(told_waiting=False, fallbacks=0, failures=0)
        self.state["dispute"] = None
        self._leave_flow()
        if reason == "verification_locked":
            self.say("verification_locked")
        if hours.is_open(now):
            self.say("handoff_queued", wait=self._duration(minutes))
        else:
            opens = hours.next_opening(now)
            self.say("handoff_outside_hours", hours=self._hours_text(), opens_at=self._moment(opens))
        if self.state["ticket"]:
            self._update_ticket(
                status="escalated", priority=priority, add_reason=(reason, rule), sla_deadline=deadline.isoformat()
            )
        else:
            self._open_ticket(self.state.get("flow_intent") or self.intent or "talk_to_human", status="escalated")
            self._update_ticket(priority=priority, add_reason=(reason, rule), sla_deadline=deadline.isoformat())
        self.effects.append(Enqueue(self.state["id"], reason, priority, deadline.isoformat()))

    def _market(self) -> str:
        order = self._verified_order()
        if order and order.market:
            return order.market
        phone = self.state.get("verified_phone")
        if phone:
            return _country_of_phone(phone)
        return _LANGUAGE_MARKET.get(self.language, "")

    def agent(self, action: AgentAction) -> None:
        handoff = self.state["handoff"]
        if action.kind == "claim":
            handoff.update(state="assigned", agent=action.agent)
            self._record("system", f"{action.agent} joined")
            self.say("agent_joined", agent=action.agent)
        elif action.kind == "reply":
            self._record("agent", action.text)
            self.say("agent_message", text=action.text)
        elif action.kind == "macro":
            order = self._verified_order()
            values = self._order_values(order) if order else {"refund_days": self.d.policy.refund_days}
            self.say(f"macro_{action.text}", **values)
        elif action.kind == "handback":
            handoff.update(state="none", agent=None)
            self._update_ticket(status="open")
            self.say("handoff_ended")
        elif action.kind == "resolve":
            handoff.update(state="resolved", agent=None)
            self._update_ticket(status="resolved", resolved_at=self.facts.now.isoformat())
            self.state["csat_for"] = (self.state["ticket"] or {}).get("id")
            self.say("csat_ask", buttons=_CSAT_BUTTONS)

    # -- satisfaction ----------------------------------------------------------------------

    def _take_csat(self) -> bool:
        match = CSAT_BUTTON.match(self.inbound.button or "") or _CSAT_DIGIT.match(self.text)
        if not match:
            if self.inbound.button and self.inbound.button.startswith("csat:"):
                self.say("csat_ask", buttons=_CSAT_BUTTONS)
                return True
            self.state["csat_for"] = None  # they moved on: don't insist
            return False
        score = int(match.group(1))
        self._update_ticket(csat=score)
        self.state["csat_for"] = None
        self.say("csat_thanks")
        return True

    # -- order numbers and verification ----------------------------------------------------

    def _take_order_number(self) -> None:
        number = self.d.numbers.find(self.text)
        if not number:
            return
        slots = self.state["slots"]
        if number != slots["order_number"]:
            slots["order_number"] = number
            slots["verified"] = False
            self.new_number = True
            self._rewind_to_verification()

    def _rewind_to_verification(self) -> None:
        """Another order mid-flow: whatever was collected was about the old one, so verify again."""
        flow = self.d.flows.get(self.state["flow"] or "")
        if not flow:
            return
        verify = next((n for n, step in enumerate(flow) if step.kind == "verify"), None)
        if verify is not None and self.state["step"] > verify:
            self.state.update(step=verify, waiting=False)
            self.state["slots"].update(photos=0, resolution=None)

    def _verified_order(self) -> Order | None:
        order = self.facts.order
        slots = self.state["slots"]
        if order and slots["verified"] and order.number == slots["order_number"]:
            return order
        return None

    def _try_phone_vouch(self) -> bool:
        """WhatsApp vouches for the sender's number: a match with the order's phone verifies."""
        phone, order = self.state.get("verified_phone"), self.facts.order
        if phone and order and order.number == self.state["slots"]["order_number"] and phones_match(phone, order.phone):
            self.state["slots"]["verified"] = True
            return True
        return False

    def _proof_beside_number(self) -> bool:
        rest = self.text.upper().replace(self.state["slots"]["order_number"] or "", " ").replace("#", " ")
        return bool(_EMAIL.search(rest) or any(c.isdigit() for c in rest))

    def _check_proof(self, step: Step) -> bool:
        """Handle a verification answer; True when verified now."""
        slots, order = self.state["slots"], self.facts.order
        limit = self.d.policy.max_verification_failures
        if self.facts.order_failures >= limit:
            self.events.add("verification_locked")
            return False
        candidates = {self.text, *(_EMAIL.findall(self.text)), *(_PHONE.findall(self.text))}
        if slots["order_number"]:
            candidates.add(self.text.upper().replace(slots["order_number"], " ").replace("#", " ").strip())
        candidates.discard("")
        if order and order.number == slots["order_number"] and any(order.proves_ownership(c) for c in candidates):
            slots["verified"] = True
            self.state["failures"] = 0
            return True
        # A wrong number and a wrong proof get the same answer: numbers cannot be enumerated.
        self.state["failures"] += 1
        if slots["order_number"]:
            self.effects.append(CountFailedVerification(slots["order_number"]))
        if self.state["failures"] >= limit or self.facts.order_failures + 1 >= limit:
            self.events.add("verification_locked")
        else:
            attempts_left = limit - max(self.state["failures"], self.facts.order_failures + 1)
            self.say(step["failed"], attempts_left=attempts_left)
        return False

    # -- inputs ----------------------------------------------------------------------------

    def _button(self) -> None:
        payload = self.inbound.button or ""
        step = _current_step(self.d, self.state)
        if step and step.kind == "ask" and step["ask"] == "photos" and payload == "done":
            self._photos(step, done=True)
        elif step and step.kind == "ask" and step["ask"] == "resolution" and payload in CHOICES:
            # Any resolution is taken, not only the offered ones: a person reviews the ticket anyway.
            self._choose(payload)
        else:
            self.say("button_expired")
            if step and self.state["waiting"]:
                self._prompt(step)
            else:
                self.say("how_can_i_help")
            return
        self._advance()

    def _attachments_only(self) -> None:
        step = _current_step(self.d, self.state)
        if step and step.kind == "ask" and step["ask"] == "photos":
            self._photos(step)
            self._advance()
            return
        accepted = [p.ref for p in self.facts.photos if p.accepted and p.ref]
        if accepted:
            self.state["early_photos"] = [*self.state["early_photos"], *accepted]
            self.say("photo_not_expected")
        else:
            self.say("attachment_unsupported")
        if step and self.state["waiting"]:
            self._prompt(step)

    def _text(self, understanding: Understanding | None) -> None:
        step = _current_step(self.d, self.state)
        if step and not self.state["waiting"] and self.new_number:  # rewound to verify a new number
            self._advance()
            return
        if step and self.state["waiting"] and self._answer(step, understanding):
            self.state["fallbacks"] = 0
            self._advance()
            return
        intent = understanding.intent if understanding else None
        waiting = bool(step and self.state["waiting"])
        if waiting and (intent == self.state["flow"] or not self._leaves_flow(understanding)):
            intent = intent if intent == "other" else None  # "ok", "hello", the same request again: ask again
        if intent and intent != "other" and intent in self.d.flows:
            self.state["fallbacks"] = 0
            if self.facts.photos and not self.d.expects_photos(self.state):
                accepted = [p.ref for p in self.facts.photos if p.accepted and p.ref]
                self.state["early_photos"] = [*self.state["early_photos"], *accepted]
            self._start(intent)
            return
        if step and self.state["waiting"]:
            if intent == "other":
                self.state["fallbacks"] += 1
                self.say("fallback")
            self._prompt(step)
            return
        if intent is None:
            self.say("how_can_i_help")
            return
        self.state["fallbacks"] += 1
        self.say("fallback")

    @staticmethod
    def _leaves_flow(understanding: Understanding | None) -> bool:
        """A waiting flow is left only for a clear, different request (or a clear goodbye)."""
        return bool(
            understanding and understanding.intent not in ("other", "greet") and understanding.confidence >= 0.6
        )

    def _answer(self, step: Step, understanding: Understanding | None) -> bool:
        """Let the waiting step take this message; False when it is about something else."""
        slots = self.state["slots"]
        new_intent = understanding and understanding.intent not in (None, "other") and understanding.confidence >= 0.6
        if step.kind == "ask" and step["ask"] == "order_number":
            if slots["order_number"]:
                return True
            if new_intent and understanding.intent != self.state["flow"]:
                return False
            if any(c.isdigit() for c in self.text) or not new_intent or understanding.intent == self.state["flow"]:
                self.say(step["invalid"], buttons=("human",))  # no number at hand: a person can still help
                self.state["fallbacks"] = 0
                return True
            return False
        if step.kind == "verify":
            if self.inbound.attachments and not self.text:
                return False
            if new_intent and not _EMAIL.search(self.text) and not any(c.isdigit() for c in self.text):
                return False
            if self._try_phone_vouch():
                return True
            if self.new_number and not self._proof_beside_number():
                self._prompt(step)  # a corrected order number: ask again for its proof
                return True
            if not (_EMAIL.search(self.text) or any(c.isdigit() for c in self.text)):
                return False  # "one moment", "why?": not an attempt, so not a failure
            self._check_proof(step)
            return True  # answered: verified, or failed and the step stays
        if step.kind == "ask" and step["ask"] == "photos":
            if self.facts.photos:
                self._photos(step)
                return True
            if understanding and "done" in understanding.signals:
                self._photos(step, done=True)
                return True
            return False
        if step.kind == "ask" and step["ask"] == "resolution":
            choice = understanding.choice if understanding else None
            sibling = _SIBLING_CHOICE.get(choice or "")
            if choice not in self._choices() and sibling in self._choices():
                choice = sibling  # many languages use one word for "exchange" and "replacement"
            if choice in CHOICES:
                self._choose(choice)
                return True
            return False
        return False

    # -- flows -----------------------------------------------------------------------------

    def _start(self, intent: str) -> None:
        if intent != self.state.get("flow"):
            self.state["slots"]["photos"] = 0
            self.state["slots"]["resolution"] = None
            if self.state["ticket"] and self.state["ticket"].get("status") == "resolved":
                self.state["ticket"] = None
        self.state.update(flow=intent, flow_intent=intent, step=0, waiting=False, dispute=None)
        self._advance()

    def _leave_flow(self) -> None:
        self.state.update(flow=None, step=0, waiting=False)

    def _advance(self) -> None:
        """Run steps until one waits for the customer or the flow ends."""
        while True:
            step = _current_step(self.d, self.state)
            if step is None:
                self._leave_flow()
                return
            if self.state["handoff"]["state"] == "queued":
                return
            if not self._run(step):
                return
            self.state.update(step=self.state["step"] + 1, waiting=False)

    def _wait(self, step: Step) -> bool:
        if not self.state["waiting"]:
            self.state["waiting"] = True
            self._prompt(step)
        return False

    def _prompt(self, step: Step) -> None:
        if step.kind == "ask" and step["ask"] == "photos":
            low, high = self.d.policy.photo_limits(self.state["flow"])
            self.say(step["prompt"], buttons=("done",), min=low, max=high)
        elif step.kind == "ask" and step["ask"] == "resolution":
            self.say(step["prompt"], buttons=tuple(self._choices()))
        elif step.kind == "verify":
            self.say(step["prompt"], order_number=self.state["slots"]["order_number"])
        else:
            self.say(step["prompt"])

    def _run(self, step: Step) -> bool:
        """Do one step; True to go on to the next, False to wait for the customer."""
        slots = self.state["slots"]
        if step.kind == "say":
            self.say(step["say"])
            return True
        if step.kind == "ask" and step["ask"] == "order_number":
            return bool(slots["order_number"]) or self._wait(step)
        if step.kind == "verify":
            if slots["verified"] and self.facts.order and self.facts.order.number == slots["order_number"]:
                return True
            if self._try_phone_vouch():
                return True
            if "verification_locked" in self.events:
                rule = self.d.rules.first((), {"verification_locked"})
                self.handoff("verification_locked", rule.priority if rule else "normal", rule.name if rule else "")
                return False
            return self._wait(step)
        if step.kind == "inform":
            self._inform(step["inform"])
            return True
        if step.kind == "check_window":
            return self._check_window(step)
        if step.kind == "ask" and step["ask"] == "photos":
            if not self.state["waiting"] and self.state["early_photos"]:
                self._count_early_photos()
            _, high = self.d.policy.photo_limits(self.state["flow"])
            return slots["photos"] >= high or self._wait(step)
        if step.kind == "ask" and step["ask"] == "resolution":
            return bool(slots["resolution"]) or self._wait(step)
        if step.kind == "ticket":
            self._ticket(step)
            return True
        if step.kind == "handoff":
            reason = step["handoff"]
            self.handoff(reason, self.d.rules.priority_of(reason), f"flow:{self.state['flow']}")
            return False
        if step.kind == "listen_for_dispute":
            self.state["dispute"] = step["listen_for_dispute"]
            return True
        return True

    def _photos(self, step: Step, done: bool = False) -> None:
        slots = self.state["slots"]
        low, high = self.d.policy.photo_limits(self.state["flow"])
        for check in self.facts.photos:
            if slots["photos"] >= high:
                self.say(step["rejected"], reason=self._photo_reason("too_many"))
            elif check.accepted:
                slots["photos"] += 1
                self.state["photo_refs"] = [*self.state["photo_refs"], check.ref]
                self.say(step["received"], count=slots["photos"], max=high)
            else:
                self.say(step["rejected"], reason=self._photo_reason(check.reason or "not_image"))
        if done and slots["photos"] < low:
            self.say(step["prompt"], buttons=("done",), min=low, max=high)
            return
        if done or slots["photos"] >= high:
            self.state["step"] += 1
            self.state["waiting"] = False

    def _count_early_photos(self) -> None:
        _, high = self.d.policy.photo_limits(self.state["flow"])
        early = self.state["early_photos"][:high]
        self.state["slots"]["photos"] += len(early)
        self.state["photo_refs"] = [*self.state["photo_refs"], *early]
        self.state["early_photos"] = []

    def _photo_reason(self, reason: str) -> str:
        max_mb = self.d.policy.evidence_limits[0] // (1024 * 1024)
        return self.d.catalog.locale(self.language).fragment("photo_reasons", reason, max_mb=max_mb)

    def _choices(self) -> list[str]:
        return self.d.policy.resolutions(self.state.get("flow") or "")

    def _choose(self, choice: str) -> None:
        self.state["slots"]["resolution"] = choice
        self.state["step"] += 1
        self.state["waiting"] = False

    def _check_window(self, step: Step) -> bool:
        order = self._verified_order()
        if not order or not order.delivered_at:
            return True  # not delivered yet: nothing has started to run out
        kind = step["check_window"]
        closes = self.d.policy.window_closes(kind, order.market, order.delivered_at)
        if closes is None or self.facts.now.date() <= closes:
            return True
        self.say(
            step["expired"],
            buttons=("human",),
            order_number=order.number,
            delivered_on=self._day(order.delivered_at),
            days=self.d.policy.window_days(kind, order.market),
            closed_on=self._day(closes),
        )
        self._leave_flow()
        self.state["dispute"] = "policy_dispute"
        return False

    def _disputes(self, understanding: Understanding | None, signals: frozenset[str]) -> bool:
        """After a refusal or a charge: does the customer push back?"""
        if signals & {"dispute", "human"}:
            return True
        intent = understanding.intent if understanding else None
        return intent in ("complaint", "talk_to_human") or (
            intent is not None and intent == self.state.get("flow_intent")
        )

    # -- what the customer is told ----------------------------------------------------------

    def _inform(self, key: str) -> None:
        order = self._verified_order()
        if order is None:  # never reached without verification; say nothing about any order
            return
        locale = self.d.catalog.locale(self.language)
        values = self._order_values(order)
        if key == "order_status":
            values["status"] = locale.fragment("statuses", order.status, **values)
        elif key == "refund_status":
            values["refund"] = locale.fragment("refunds", order.refund.state, **values)
        elif key == "customs_info":
            values["customs"] = locale.fragment("customs", order.incoterm, **values)
        self.say(key, **values)

    def _order_values(self, order: Order) -> dict[str, Any]:
        locale = self.d.catalog.locale(self.language)
        refund_amount = order.refund.amount if order.refund.amount is not None else order.total
        method = order.refund.method or order.payment_method
        return {
            "order_number": order.number,
            "carrier": order.carrier,
            "tracking": order.tracking,
            "incoterm": order.incoterm,
            "placed_on": self._day(order.placed_at),
            "shipped_on": self._day(order.shipped_at),
            "delivered_on": self._day(order.delivered_at),
            "issued_on": self._day(order.refund.issued_at),
            "amount": self._money(refund_amount, order.currency),
            "total": self._money(order.total, order.currency),
            "method": locale.fragment("payment_methods", method) or locale.fragment("payment_methods", "other"),
            "refund_days": self.d.policy.refund_days,
            "order_currency": order.currency,
        }

    def _ticket(self, step: Step) -> None:
        intent = self.state["flow"]
        self._open_ticket(intent, status="open")
        ticket = self.state["ticket"]
        order = self._verified_order()
        locale = self.d.catalog.locale(self.language)
        due = self.d.policy.service_hours.add_service_minutes(self.facts.now, self.d.policy.ticket_response_hours * 60)
        resolution = self.state["slots"]["resolution"]
        self.say(
            step["ticket"],
            ticket_id=ticket["id"],
            next_steps=locale.fragment("next_steps", resolution or "refund"),
            deadline=self._moment(due),
        )
        values = self._order_values(order) if order else {}
        for key in step.get("then") or []:
            if key == "return_instructions" and order:
                payer = self.d.policy.return_shipping_payer(intent)
                self.say(
                    key,
                    return_address=self.d.policy.return_address(order.market),
                    shipping_payer=locale.fragment("shipping_payer", payer),
                )
            elif key == "refund_route" and order and resolution in ("refund", "partial_refund"):
                self.say(key, **values)
                if order.currency not in _LOCAL_CURRENCY.get(order.market, (order.currency,)):
                    self.say("refund_fx_note", **values)
            elif key not in ("return_instructions", "refund_route"):
                self.say(key, **values)
        if order and self.d.policy.is_high_value(order.total, order.currency):
            self.events.add("high_value_ticket")
            rule = self.d.rules.first((), self.events)
            if rule:
                self.handoff(rule.reason, rule.priority, rule.name)

    def _open_ticket(self, intent: str, status: str) -> None:
        slots = self.state["slots"]
        order = self._verified_order()
        self.state["ticket"] = {
            "id": self.facts.ticket_id,
            "conversation_id": self.state["id"],
            "intent": intent,
            "order_number": slots["order_number"] if order else None,
            "photos": slots["photos"],
            "photo_refs": list(self.state["photo_refs"]),
            "resolution": slots["resolution"],
            "status": status,
            "priority": "normal",
            "language": self.language,
            "channel": self.state["channel"],
            "csat": None,
            "reasons": [],
            "created_at": self.facts.now.isoformat(),
            "sla_deadline": None,
            "market": order.market if order else None,
            "currency": order.currency if order else None,
            "total": order.total if order else None,
        }
        self.effects.append(SaveTicket(dict(self.state["ticket"])))

    def _update_ticket(self, add_reason: tuple[str, str] | None = None, **fields: Any) -> None:
        if not self.state["ticket"]:
            return
        ticket = self.state["ticket"] = {**self.state["ticket"], **fields}
        if add_reason:
            reason, rule = add_reason
            entry = {"reason": reason, "rule": rule, "at": self.facts.now.isoformat()}
            ticket["reasons"] = [*ticket.get("reasons", []), entry]
        self.effects.append(SaveTicket(dict(ticket)))

    def _day(self, day: date | None) -> str:
        return format_day(day, self.language) if day else ""

    def _money(self, amount: float, currency: str) -> str:
        return format_money(amount, currency, self.language)

    def _moment(self, moment: datetime) -> str:
        """A time the customer can read: their language, the service's time zone."""
        return format_moment(moment, self.d.policy.service_hours.timezone, self.language)

    def _duration(self, minutes: int) -> str:
        return format_minutes(minutes, self.language)

    def _hours_text(self) -> str:
        hours = self.d.policy.service_hours
        return format_service_hours(
            tuple(sorted(hours.weekdays)), hours.opens, hours.closes, hours.timezone, self.language
        )


_SIBLING_CHOICE = {"exchange": "replacement", "replacement": "exchange"}
_CSAT_BUTTONS = ("csat:1", "csat:2", "csat:3", "csat:4", "csat:5")
_PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}


def _rank(priority: str | None) -> int:
    return _PRIORITY_RANK.get(priority or "low", 0)


# Where a customer without a known order most likely is, from their language (SLA regions).
_LANGUAGE_MARKET = {
    "en": "GB", "es": "ES", "pt": "BR", "fr": "FR", "de": "DE", "it": "IT",
    "ru": "RU", "zh": "CN", "ja": "JP", "ko": "KR", "th": "TH", "ar": "SA",
}  # fmt: skip
_PHONE_PREFIX = {
    "1": "US", "7": "RU", "33": "FR", "34": "ES", "39": "IT", "44": "GB", "49": "DE", "52": "MX",
    "55": "BR", "66": "TH", "81": "JP", "82": "KR", "86": "CN", "351": "PT", "966": "SA", "971": "AE",
    "31": "NL", "32": "BE", "41": "CH", "43": "AT", "48": "PL", "54": "AR", "56": "CL", "57": "CO",
    "61": "AU", "65": "SG", "852": "HK", "886": "TW", "91": "IN", "20": "EG",
}  # fmt: skip
# The currencies a market pays in; any other means a conversion on refund.
_LOCAL_CURRENCY = {
    "US": ("USD",), "GB": ("GBP",), "JP": ("JPY",), "CN": ("CNY",), "KR": ("KRW",), "BR": ("BRL",),
    "DE": ("EUR",), "FR": ("EUR",), "ES": ("EUR",), "IT": ("EUR",), "PT": ("EUR",), "NL": ("EUR",),
    "TH": ("THB",), "RU": ("RUB",), "SA": ("SAR",), "AE": ("AED",), "MX": ("MXN",), "CA": ("CAD",),
    "AU": ("AUD",),
}  # fmt: skip


def _country_of_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    for length in (3, 2, 1):
        if digits[:length] in _PHONE_PREFIX:
            return _PHONE_PREFIX[digits[:length]]
    return ""

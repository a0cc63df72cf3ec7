"""The dialogue: flows, policy, rules and recognisers configured once; `step` runs one turn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.dialogue import routing
from bot.dialogue.outcome import AgentAction, Facts, Outcome
from bot.dialogue.people import agent_move
from bot.dialogue.steps import Step
from bot.dialogue.turn import Turn, clean_text
from bot.messages import Inbound
from bot.state import Conversation

if TYPE_CHECKING:  # the trained and loaded parts arrive built; importing them here would pull in scikit-learn
    from bot.escalation import EscalationRules
    from bot.intents import IntentRecognizer
    from bot.language import LanguageDetector
    from bot.order import OrderNumbers
    from bot.policy import Policy


class Dialogue:
    """The after-sales conversation logic. Pure: no store, no clock, no network."""

    def __init__(
        self,
        *,
        flows: dict[str, tuple[Step, ...]],
        detector: LanguageDetector,
        recognizer: IntentRecognizer,
        numbers: OrderNumbers,
        policy: Policy,
        rules: EscalationRules,
        max_input_chars: int = 2000,
        default_locale: str = "en",
        language_names: str = "",
    ) -> None:
        self.flows = flows
        self.detector = detector
        self.recognizer = recognizer
        self.numbers = numbers
        self.policy = policy
        self.rules = rules
        self.max_input_chars = max_input_chars
        self.default_locale = default_locale
        self.language_names = language_names or ", ".join(detector.supported)  # "English, Deutsch, ..."

    def step(self, state: Conversation | None, inbound: Inbound, facts: Facts) -> Outcome:
        """A customer's message: the new state, the replies and the effects to carry out."""
        current = (
            state.copy_for_turn()
            if state
            else Conversation.new(inbound.conversation_id, inbound.channel, inbound.user_id)
        )
        turn = Turn(self, current, inbound, facts)
        routing.handle(turn)
        return Outcome(turn.state, turn.replies, turn.effects, turn.intent)

    def agent_step(self, state: Conversation, action: AgentAction, facts: Facts) -> Outcome:
        """A person's move in a handed-off conversation: claim, reply, macro, hand back, resolve."""
        turn = Turn(self, state.copy_for_turn(), Inbound(state.channel, state.id, state.user_id), facts)
        agent_move(turn, action)
        return Outcome(turn.state, turn.replies, turn.effects, None)

    def too_long(self, inbound: Inbound) -> bool:
        """A message refused for its length before any other work is done on it."""
        return len(inbound.text) > self.max_input_chars

    def order_number_for(self, state: Conversation | None, inbound: Inbound) -> str | None:
        """The order number this turn will be about: named in the message, or already known."""
        return self.numbers.find(clean_text(inbound.text)) or (state.slots.order_number if state else None)

    def current_step(self, state: Conversation | None) -> Step | None:
        if state is None:
            return None
        flow = self.flows.get(state.flow or "")
        return flow[state.step] if flow and state.step < len(flow) else None

    def awaits_proof(self, state: Conversation | None) -> bool:
        """Whether this turn may check a proof of ownership (and so needs the failure count)."""
        step = self.current_step(state)
        return step is not None and step.awaits_proof and bool(state and state.waiting)

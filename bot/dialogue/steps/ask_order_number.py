"""`ask_order_number: PROMPT` — wait until the conversation names an order number.

The number itself is taken by routing wherever it appears in any message; this step asks, reads
an answer more loosely than any message ("SO 10023", "SO_10023"), and answers a message without one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bot.contracts import Button
from bot.dialogue.flow import wait
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn, is_new_request

if TYPE_CHECKING:
    from bot.intents import Understanding


LOOSE_ANSWER_CHARS = 40


class AskOrderNumber(Step):
    kind: ClassVar[str] = "ask_order_number"
    catalog_fields: ClassVar[tuple[str, ...]] = ("ask_order_number", "invalid")

    ask_order_number: str
    invalid: str = "order_number_invalid"

    def run(self, turn: Turn) -> bool:
        return bool(turn.state.slots.order_number) or wait(turn)

    def prompt(self, turn: Turn) -> None:
        turn.say(self.ask_order_number)

    def answer(self, turn: Turn, understanding: Understanding | None) -> bool:
        if turn.state.slots.order_number:
            return True
        # A short answer may write the number with a space or an underscore where the shop has a
        # dash ("SO 10023"): read it, whatever the classifier makes of those few letters.
        number = turn.d.numbers.find_loose(turn.text) if len(turn.text) <= LOOSE_ANSWER_CHARS else None
        if number:
            turn.state.slots.order_number, turn.state.slots.verified = number, False
            return True
        if is_new_request(understanding) and understanding and understanding.intent != turn.state.flow:
            return False  # about something else: routing starts that
        # No number in it: say so; a person can still help someone who has none at hand.
        turn.say(self.invalid, buttons=(Button.HUMAN,))
        turn.state.fallbacks = 0
        return True

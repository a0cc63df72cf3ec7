"""`say: KEY` — tell the customer something and go on."""

from __future__ import annotations

from typing import ClassVar

from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn


class Say(Step):
    kind: ClassVar[str] = "say"
    catalog_fields: ClassVar[tuple[str, ...]] = ("say",)

    say: str

    def run(self, turn: Turn) -> bool:
        turn.say(self.say)
        return True

"""`handoff: REASON` — pass the conversation to a person."""

from __future__ import annotations

from typing import ClassVar

from bot.contracts import Reason
from bot.dialogue.people import hand_off
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn


class Handoff(Step):
    kind: ClassVar[str] = "handoff"

    handoff: Reason

    def run(self, turn: Turn) -> bool:
        rule = f"flow:{turn.state.flow}"
        hand_off(turn, self.handoff, turn.d.rules.priority_of(self.handoff), rule)
        return False

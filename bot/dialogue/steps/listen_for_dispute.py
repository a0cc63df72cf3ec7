"""`listen_for_dispute: REASON` — from now on, a customer who pushes back goes to a person."""

from __future__ import annotations

from typing import ClassVar

from bot.contracts import Reason
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn


class ListenForDispute(Step):
    kind: ClassVar[str] = "listen_for_dispute"

    listen_for_dispute: Reason

    def run(self, turn: Turn) -> bool:
        turn.state.dispute = self.listen_for_dispute
        return True

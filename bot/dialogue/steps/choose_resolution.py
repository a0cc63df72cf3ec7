"""`choose_resolution: PROMPT` — refund, replacement, repair, exchange or partial refund, as the
policy offers per intent; taken from a button or from words."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bot.contracts import RESOLUTIONS, Resolution
from bot.dialogue.flow import next_step, wait
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn

if TYPE_CHECKING:
    from bot.intents import Understanding

# Many languages use one word for both: take the one this flow offers.
_SIBLING = {Resolution.EXCHANGE: Resolution.REPLACEMENT, Resolution.REPLACEMENT: Resolution.EXCHANGE}


class ChooseResolution(Step):
    kind: ClassVar[str] = "choose_resolution"
    catalog_fields: ClassVar[tuple[str, ...]] = ("choose_resolution",)

    choose_resolution: str

    def run(self, turn: Turn) -> bool:
        return bool(turn.state.slots.resolution) or wait(turn)

    def prompt(self, turn: Turn) -> None:
        turn.say(self.choose_resolution, buttons=tuple(_offered(turn)))

    def answer(self, turn: Turn, understanding: Understanding | None) -> bool:
        choice = understanding.choice if understanding else None
        offered = _offered(turn)
        sibling = _SIBLING.get(Resolution(choice)) if choice in RESOLUTIONS else None
        if choice not in offered and sibling in offered:
            choice = sibling
        if choice not in RESOLUTIONS:
            return False
        _choose(turn, str(choice))
        return True

    def press(self, turn: Turn, payload: str) -> bool:
        # Any resolution is taken, not only the offered ones: a person reviews the ticket anyway.
        if payload not in RESOLUTIONS:
            return False
        _choose(turn, payload)
        return True


def _offered(turn: Turn) -> list[str]:
    return turn.d.policy.resolutions(turn.state.flow or "")


def _choose(turn: Turn, choice: str) -> None:
    turn.state.slots.resolution = Resolution(choice)
    next_step(turn)

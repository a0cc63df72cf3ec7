"""`choose_resolution: PROMPT` — refund, replacement, repair, exchange or partial refund, as the
policy offers per intent; taken from a button or from words. A remedy the customer named with
the problem is offered first and named (`suggested`), and a yes confirms it."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bot.contracts import RESOLUTIONS, Resolution
from bot.dialogue.flow import next_step, wait
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn
from bot.values import Fragment

if TYPE_CHECKING:
    from bot.intents import Understanding

# Many languages use one word for both: take the one this flow offers.
_SIBLING = {Resolution.EXCHANGE: Resolution.REPLACEMENT, Resolution.REPLACEMENT: Resolution.EXCHANGE}


class ChooseResolution(Step):
    kind: ClassVar[str] = "choose_resolution"
    catalog_fields: ClassVar[tuple[str, ...]] = ("choose_resolution", "suggested")
    provides: ClassVar[dict[str, frozenset[str]]] = {"suggested": frozenset({"choice"})}

    choose_resolution: str
    suggested: str = "resolution_suggested"

    def run(self, turn: Turn) -> bool:
        return bool(turn.state.slots.resolution) or wait(turn)

    def prompt(self, turn: Turn) -> None:
        offered = _offered(turn)
        wanted = _as_offered(turn.state.wanted, offered)
        if wanted:
            turn.say(self.suggested, choice=Fragment("buttons", wanted))
            offered = [wanted, *(choice for choice in offered if choice != wanted)]
        turn.say(self.choose_resolution, buttons=tuple(offered))

    def answer(self, turn: Turn, understanding: Understanding | None) -> bool:
        if understanding is None:
            return False
        offered = _offered(turn)
        choice = _as_offered(understanding.choice, offered) or understanding.choice
        if choice is None and understanding.agrees:
            choice = _as_offered(turn.state.wanted, offered)  # "yes" to the remedy named earlier
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


def _as_offered(choice: str | None, offered: list[str]) -> str | None:
    """The choice, or its sibling when only that is offered; None when neither is."""
    if choice in offered:
        return choice
    sibling = _SIBLING.get(Resolution(choice)) if choice in RESOLUTIONS else None
    return sibling if sibling in offered else None


def _choose(turn: Turn, choice: str) -> None:
    turn.state.slots.resolution = Resolution(choice)
    next_step(turn)

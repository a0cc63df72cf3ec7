"""`collect_photos: PROMPT` — evidence photos, between the policy's minimum and maximum per intent.

Each accepted photo is acknowledged; `done` (button or words) ends collection once the minimum
is reached, and so does the maximum. Photos sent before any flow asked are counted here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bot.contracts import Button, Signal
from bot.dialogue.flow import next_step, wait
from bot.dialogue.steps.base import Step
from bot.dialogue.turn import Turn
from bot.values import Fragment

if TYPE_CHECKING:
    from bot.intents import Understanding


class CollectPhotos(Step):
    kind: ClassVar[str] = "collect_photos"
    catalog_fields: ClassVar[tuple[str, ...]] = ("collect_photos", "received", "rejected")
    provides: ClassVar[dict[str, frozenset[str]]] = {
        "collect_photos": frozenset({"min", "max"}),
        "received": frozenset({"count", "max"}),
        "rejected": frozenset({"reason", "max_mb"}),
    }
    takes_photos: ClassVar[bool] = True

    collect_photos: str
    received: str = "photo_received"
    rejected: str = "photo_rejected"

    def run(self, turn: Turn) -> bool:
        state = turn.state
        _, high = turn.d.policy.photo_limits(state.flow or "")
        if not state.waiting and state.early_photos:
            early = state.early_photos[:high]
            state.slots.photos += len(early)
            state.photo_refs = [*state.photo_refs, *early]
            state.early_photos = []
        return state.slots.photos >= high or wait(turn)

    def prompt(self, turn: Turn) -> None:
        low, high = turn.d.policy.photo_limits(turn.state.flow or "")
        turn.say(self.collect_photos, buttons=(Button.DONE,), min=low, max=high)

    def answer(self, turn: Turn, understanding: Understanding | None) -> bool:
        if turn.facts.photos:
            self._take(turn)
            return True
        if understanding and Signal.DONE in understanding.signals:
            self._take(turn, done=True)
            return True
        return False

    def press(self, turn: Turn, payload: str) -> bool:
        if payload != Button.DONE:
            return False
        self._take(turn, done=True)
        return True

    def receive(self, turn: Turn) -> bool:
        self._take(turn)
        return True

    def _take(self, turn: Turn, done: bool = False) -> None:
        state, slots = turn.state, turn.state.slots
        low, high = turn.d.policy.photo_limits(state.flow or "")
        max_mb = turn.d.policy.evidence_limits[0] // (1024 * 1024)
        for check in turn.facts.photos:
            if slots.photos >= high:
                turn.say(self.rejected, reason=Fragment("photo_reasons", "too_many"), max_mb=max_mb)
            elif check.accepted and check.ref:
                slots.photos += 1
                state.photo_refs = [*state.photo_refs, *turn.keep_photos([check.ref])]
                turn.say(self.received, count=slots.photos, max=high)
            else:
                reason = Fragment("photo_reasons", check.reason or "not_image")
                turn.say(self.rejected, reason=reason, max_mb=max_mb)
        if done and slots.photos < low:
            self.prompt(turn)
        elif done or slots.photos >= high:
            next_step(turn)

"""The step kinds a flow may use, found by the key that introduces each step in flows.yml.

A new step kind is one module here and one entry in `STEP_KINDS`.
"""

from __future__ import annotations

from bot.dialogue.steps.ask_order_number import AskOrderNumber
from bot.dialogue.steps.base import Step
from bot.dialogue.steps.check_window import CheckWindow
from bot.dialogue.steps.choose_resolution import ChooseResolution
from bot.dialogue.steps.collect_photos import CollectPhotos
from bot.dialogue.steps.handoff import Handoff
from bot.dialogue.steps.inform import Inform
from bot.dialogue.steps.listen_for_dispute import ListenForDispute
from bot.dialogue.steps.say import Say
from bot.dialogue.steps.ticket import Ticket
from bot.dialogue.steps.verify import Verify

STEP_KINDS: dict[str, type[Step]] = {
    kind.kind: kind
    for kind in (
        Say,
        Inform,
        AskOrderNumber,
        Verify,
        CollectPhotos,
        ChooseResolution,
        CheckWindow,
        Ticket,
        Handoff,
        ListenForDispute,
    )
}

__all__ = ["STEP_KINDS", "Step"]

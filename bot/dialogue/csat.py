"""The satisfaction score asked for after a person resolved the case (CSAT, 1 to 5)."""

from __future__ import annotations

import re

from bot.contracts import CSAT_BUTTONS, CSAT_PREFIX
from bot.dialogue.tickets import update_ticket
from bot.dialogue.turn import Turn

_BUTTON = re.compile(rf"^{CSAT_PREFIX}([1-5])$")
_TYPED = re.compile(r"^\s*([1-5])\s*(?:/\s*5)?\s*[.!]*\s*$")  # "4", "5/5", "3!"


def take_score(turn: Turn) -> bool:
    """True when this message was the score (or a broken score button); False when the customer
    moved on, and then the question is dropped rather than asked again."""
    button = turn.inbound.button or ""
    match = _BUTTON.match(button) or _TYPED.match(turn.text)
    if not match:
        if button.startswith(CSAT_PREFIX):
            turn.say("csat_ask", buttons=CSAT_BUTTONS)
            return True
        turn.state.csat_for = None
        return False
    update_ticket(turn, csat=int(match.group(1)))
    turn.state.csat_for = None
    turn.say("csat_thanks")
    return True

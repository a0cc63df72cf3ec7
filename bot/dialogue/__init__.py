"""The dialogue step: (conversation state, inbound message, facts) -> (new state, replies, effects).

Pure: it reads no store and sends nothing. The manager looks up what a turn may need (the
order named in the conversation, failed verifications on it, checked photos, a fresh ticket
id) and passes it in as `Facts`; the step answers with catalog keys, raw values and effects.

Reading order: `core` (the entry), `routing` (one message top to bottom), `flow` (the runner),
`steps/` (one module per step kind), `people` (handoff, relay, agents), `tickets`, `csat`.
"""

from bot.dialogue.core import Dialogue
from bot.dialogue.outcome import (
    AgentAction,
    CountFailedVerification,
    Effect,
    Enqueue,
    Facts,
    KeepPhoto,
    Outcome,
    PhotoCheck,
    RaisePriority,
    RelayToAgent,
    Reply,
    SaveTicket,
)
from bot.dialogue.turn import clean_text

__all__ = [
    "AgentAction",
    "CountFailedVerification",
    "Dialogue",
    "Effect",
    "Enqueue",
    "Facts",
    "KeepPhoto",
    "Outcome",
    "PhotoCheck",
    "RaisePriority",
    "RelayToAgent",
    "Reply",
    "SaveTicket",
    "clean_text",
]

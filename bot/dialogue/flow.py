"""The flow runner: start a flow, run its steps until one waits for the customer, leave it."""

from __future__ import annotations

from bot.contracts import RESOLUTIONS, HandoffState, Resolution, TicketStatus
from bot.dialogue.turn import Turn


def start(turn: Turn, intent: str, wanted: str | None = None) -> None:
    """Start the flow of `intent`; `wanted` is a remedy the request named, kept for the resolution step."""
    state = turn.state
    if intent != state.flow:
        state.slots.photos = 0
        state.slots.resolution = None
        state.wanted = None
        if state.ticket and state.ticket.status == TicketStatus.RESOLVED:
            state.ticket = None  # a new request after a closed case gets a case of its own
    if wanted in RESOLUTIONS:
        state.wanted = Resolution(wanted)
    state.flow = state.flow_intent = intent
    state.step, state.waiting, state.dispute = 0, False, None
    advance(turn)


def leave(turn: Turn) -> None:
    turn.state.flow, turn.state.step, turn.state.waiting = None, 0, False


def advance(turn: Turn) -> None:
    """Run steps until one waits for the customer or the flow ends."""
    while True:
        step = turn.step
        if step is None:
            leave(turn)
            return
        if turn.state.handoff.state == HandoffState.QUEUED:
            return
        if not step.run(turn):
            return
        next_step(turn)


def next_step(turn: Turn) -> None:
    turn.state.step += 1
    turn.state.waiting = False


def wait(turn: Turn) -> bool:
    """The current step asks (once) and waits for the customer; always False: do not go on."""
    step = turn.step
    if step is not None and not turn.state.waiting:
        turn.state.waiting = True
        step.prompt(turn)
    return False


def rewind_to_verification(turn: Turn) -> None:
    """Another order mid-flow: whatever was collected was about the old one, so verify again."""
    flow = turn.d.flows.get(turn.state.flow or "")
    if not flow:
        return
    verify = next((n for n, step in enumerate(flow) if step.awaits_proof), None)
    if verify is not None and turn.state.step > verify:
        turn.state.step, turn.state.waiting = verify, False
        turn.state.slots.photos, turn.state.slots.resolution = 0, None

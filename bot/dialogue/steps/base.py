"""What every step kind is: a validated schema (the fields a flow gives it) with behaviour.

A step kind subclasses `Step`, names itself in `kind` (the key that introduces it in
dialogues/flows.yml, holding its main value), lists its catalog-key fields in `catalog_fields`,
and implements `run`. The other hooks are for steps that wait for the customer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from bot.dialogue.turn import Turn
    from bot.intents import Understanding


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]
    catalog_fields: ClassVar[tuple[str, ...]] = ()  # fields that name catalog keys
    # Placeholders the step's texts may use, per catalog-key field (checked against every locale).
    provides: ClassVar[dict[str, frozenset[str]]] = {}
    awaits_proof: ClassVar[bool] = False  # the manager then looks up failed attempts on the order
    takes_photos: ClassVar[bool] = False  # photos sent now are evidence for this step

    def run(self, turn: Turn) -> bool:
        """Do the step when the flow reaches it; True to go on, False to wait for the customer."""
        raise NotImplementedError

    def prompt(self, turn: Turn) -> None:
        """Ask (again) for what the step waits for."""

    def answer(self, turn: Turn, understanding: Understanding | None) -> bool:
        """A text message while waiting: True when the step took it, False when it is about something else."""
        return False

    def press(self, turn: Turn, payload: str) -> bool:
        """A button while waiting: True when the step took it."""
        return False

    def receive(self, turn: Turn) -> bool:
        """Attachments without text while waiting: True when the step took them."""
        return False

    def catalog_keys(self) -> list[str]:
        keys: list[str] = []
        for name in self.catalog_fields:
            value = getattr(self, name)
            keys += value if isinstance(value, list) else [value] if value else []
        return keys

"""Escalation rules (dialogues/escalation.yml): when a conversation goes to a person, and why."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from bot.schema import EscalationModel


@dataclass(frozen=True)
class Rule:
    reason: str
    priority: str
    condition: str
    value: str | int

    @property
    def name(self) -> str:
        """How the ticket records which rule fired, e.g. `signal:legal`."""
        return f"{self.condition}:{self.value}"

    def fires(self, signals: Collection[str], events: Collection[str], fallbacks: int) -> bool:
        if self.condition == "signal":
            return self.value in signals
        if self.condition == "event":
            return self.value in events
        return fallbacks >= int(self.value)


class EscalationRules:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def from_model(cls, model: EscalationModel) -> EscalationRules:
        return cls([Rule(rule.reason, rule.priority, *rule.when.condition) for rule in model.rules])

    @classmethod
    def load(cls, path: Path) -> EscalationRules:
        """Read and check escalation.yml; raise ConfigError listing every problem."""
        from bot.validation import load_rules  # bot.validation reads every file: imported when used

        return load_rules(path)

    def first(self, signals: Collection[str], events: Collection[str] = (), fallbacks: int = 0) -> Rule | None:
        return next((r for r in self.rules if r.fires(signals, events, fallbacks)), None)

    def priority_of(self, reason: str) -> str:
        return next((r.priority for r in self.rules if r.reason == reason), "normal")

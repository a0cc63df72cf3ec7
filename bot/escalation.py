"""Escalation rules (dialogues/escalation.yml): when a conversation goes to a person, and why."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.contracts import Reason
from bot.flows import FlowError
from bot.intents import SIGNALS
from bot.yamlfile import read_yaml

PRIORITIES = ("low", "normal", "high", "urgent")
EVENTS = ("verification_locked", "high_value_ticket", "policy_dispute", "customs_dispute")
CONDITIONS = ("signal", "event", "fallbacks_in_a_row")


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
    def load(cls, path: Path) -> EscalationRules:
        try:
            data = read_yaml(path) or {}
        except (OSError, yaml.YAMLError) as error:
            raise FlowError(f"{path}: cannot read escalation rules: {error}") from None
        rules = []
        for n, raw in enumerate(data.get("rules") or [], 1):
            where = f"{path}: rule {n}"
            if not isinstance(raw, dict) or set(raw) - {"reason", "when", "priority"}:
                raise FlowError(f"{where}: a rule has reason, when and priority")
            if raw.get("reason") not in tuple(Reason):
                raise FlowError(f"{where}: unknown reason {raw.get('reason')!r}")
            if raw.get("priority", "normal") not in PRIORITIES:
                raise FlowError(f"{where}: unknown priority {raw.get('priority')!r}")
            when = raw.get("when") or {}
            if len(when) != 1 or next(iter(when)) not in CONDITIONS:
                raise FlowError(f"{where}: 'when' needs one of {', '.join(CONDITIONS)}")
            condition, value = next(iter(when.items()))
            if condition == "signal" and value not in SIGNALS:
                raise FlowError(f"{where}: unknown signal {value!r} (known: {', '.join(SIGNALS)})")
            if condition == "event" and value not in EVENTS:
                raise FlowError(f"{where}: unknown event {value!r} (known: {', '.join(EVENTS)})")
            rules.append(Rule(raw["reason"], raw.get("priority", "normal"), condition, value))
        return cls(rules)

    def first(self, signals: Collection[str], events: Collection[str] = (), fallbacks: int = 0) -> Rule | None:
        return next((r for r in self.rules if r.fires(signals, events, fallbacks)), None)

    def priority_of(self, reason: str) -> str:
        return next((r.priority for r in self.rules if r.reason == reason), "normal")

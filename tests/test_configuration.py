"""The configuration is checked as a whole before anything starts: every problem is named with its
file, line and key, and a shop's overlay changes single texts and policy values."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings, shipped_folder
from bot.validation import ENVIRONMENT, ConfigError, check_configuration, load_configuration
from channels.cli import main

ROOT = Path(__file__).parent.parent


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    """A copy of the shipped dialogues/ and locales/ folders, to break one thing at a time."""
    shutil.copytree(shipped_folder("dialogues"), tmp_path / "dialogues")
    shutil.copytree(shipped_folder("locales"), tmp_path / "locales")
    return tmp_path


@pytest.fixture
def check(copies: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """`aftersales check` (or another command) with the environment pointing at the copies."""

    def run(*args: str, **variables: str) -> Run:
        for name in ("AFTERSALES_OVERLAY", "AFTERSALES_ORDERS", "AFTERSALES_ORDERS_URL", "AFTERSALES_DEFAULT_LOCALE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AFTERSALES_DIALOGUES", str(copies / "dialogues"))
        monkeypatch.setenv("AFTERSALES_LOCALES", str(copies / "locales"))
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        code = main(list(args or ["check"]))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def says(self, path: Path, line: int | None, text: str) -> bool:
        where = f"{path}:{line}: " if line else f"{path}: "
        return any(row.startswith(where) and text in row for row in (self.out + self.err).splitlines())


def edit(path: Path, old: str, new: str) -> int:
    """Replace the one occurrence of `old` in `path`; the line number it is on."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def test_the_shipped_configuration_passes(check):
    run = check()
    assert run.code == 0, run.out
    assert run.out.startswith("configuration ok: 12 locales")


def test_a_misspelt_window_is_named_with_file_line_and_a_suggestion(check, copies):
    policy = copies / "dialogues" / "policy.yml"
    line = edit(policy, "  return_item: {EU: 14", "  retrun_item: {EU: 14")
    run = check()
    assert run.code == 1
    assert run.says(policy, line, "windows.retrun_item: unknown key (did you mean 'return_item'?)")


def test_a_word_where_a_number_belongs(check, copies):
    policy = copies / "dialogues" / "policy.yml"
    line = edit(policy, "refund_days: 7", "refund_days: seven")
    run = check()
    assert run.code == 1
    assert run.says(policy, line, "refund_days: expected a whole number, got 'seven'")


def test_a_misspelt_keywords_section_is_an_error_not_an_empty_list(check, copies):
    recognition = copies / "locales" / "en" / "recognition.yml"
    line = edit(recognition, "\nkeywords:\n", "\nkeyword:\n") + 1
    run = check()
    assert run.code == 1
    assert run.says(recognition, line, "keyword: unknown key (did you mean 'keywords'?)")


def test_a_misspelt_rules_section_is_an_error_not_no_rules(check, copies):
    escalation = copies / "dialogues" / "escalation.yml"
    line = edit(escalation, "\nrules:\n", "\nrulez:\n") + 1
    run = check()
    assert run.code == 1
    assert run.says(escalation, line, "rulez: unknown key (did you mean 'rules'?)")
    assert run.says(escalation, None, "rules: missing (required)")


def test_a_language_is_a_two_letter_code_equal_to_its_folder(check, copies):
    french = copies / "locales" / "fr" / "texts.yml"
    line = edit(french, "language: fr\n", "language: french\n")
    german = copies / "locales" / "de" / "texts.yml"
    other = edit(german, "language: de\n", "language: it\n")
    run = check()
    assert run.code == 1
    assert run.says(french, line, "language: 'french' is not a two-letter ISO 639-1 language code")
    assert run.says(german, other, "language: 'it', but the folder is 'de'")


def test_a_locale_lacking_a_required_key_is_rejected(check, copies):
    german = copies / "locales" / "de" / "texts.yml"
    text = german.read_text(encoding="utf-8")
    kept = [row for row in text.splitlines(keepends=True) if not row.startswith("  internal_error:")]
    german.write_text("".join(kept), encoding="utf-8")
    messages_line = text[: text.index("\nmessages:")].count("\n") + 2
    run = check()
    assert run.code == 1
    assert run.says(german, messages_line, "messages: missing required keys: internal_error")


def test_a_misspelt_fragment_table_is_an_error(check, copies):
    japanese = copies / "locales" / "ja" / "texts.yml"
    line = edit(japanese, "\nstatuses:\n", "\nstatusses:\n") + 1
    run = check()
    assert run.code == 1
    assert run.says(japanese, line, "statusses: unknown key (did you mean 'statuses'?)")


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        (r'"(SO-\\d+"', "not a valid regular expression: missing ), unterminated subpattern"),
        (r'"(\\d+-?)+x"', "a repeat inside a repeat"),
        (r'"\\d+\\d+\\d+x"', "searching long messages (2000 characters) took over"),
    ],
)
def test_an_order_number_pattern_must_compile_and_stay_fast(check, copies, pattern, complaint):
    policy = copies / "dialogues" / "policy.yml"
    line = edit(policy, "order_number_patterns: []", f"order_number_patterns: [{pattern}]")
    run = check()
    assert run.code == 1
    assert run.says(policy, line, f"order_number_patterns[0]: {complaint}")


def test_a_malformed_orders_file_is_named_line_by_line(check, copies):
    orders = copies / "orders.yml"
    orders.write_text(
        "orders:\n"
        "  - number: SO-1\n"
        "    market: JP\n"
        "    delivered_at: 15/11/2026\n"
        "    colour: red\n"
        "  - number: 100234\n"
        "    status: teleported\n"  # any status is fine: an unknown one reads as the generic status
        "    total: lots\n",
        encoding="utf-8",
    )
    run = check(AFTERSALES_ORDERS=str(orders))
    assert run.code == 1
    assert run.says(orders, 4, "orders[0].delivered_at: '15/11/2026' is not an ISO date like 2026-11-15")
    assert run.says(orders, 5, "orders[0].colour: unknown key")
    assert run.says(orders, 6, "orders[1].number: expected text, got 100234 (put it in quotes")
    assert "status" not in run.out + run.err
    assert run.says(orders, 8, "orders[1].total: expected a number, got 'lots'")


def test_an_orders_file_that_is_not_yaml_is_named(check, copies):
    orders = copies / "orders.json"
    orders.write_text('[{"number": "SO-1",}]', encoding="utf-8")
    run = check(AFTERSALES_ORDERS=str(orders))
    assert run.code == 1 and run.says(orders, 1, "not valid JSON")


def test_every_problem_is_listed_at_once(check, copies):
    edit(copies / "dialogues" / "policy.yml", "refund_days: 7", "refund_days: seven")
    edit(copies / "dialogues" / "escalation.yml", "\nrules:\n", "\nrulez:\n")
    edit(copies / "locales" / "fr" / "texts.yml", "language: fr\n", "language: french\n")
    edit(copies / "dialogues" / "flows.yml", "say: goodbye", "say: goodby")
    run = check(AFTERSALES_TTL_DAYS="forever")
    assert run.code == 1
    for name in ("policy.yml", "escalation.yml", "fr/texts.yml", "flows.yml", "AFTERSALES_TTL_DAYS"):
        assert name in run.out, name


def test_numbers_in_the_environment(check):
    assert check(AFTERSALES_ORDERS_TIMEOUT="2.5").code == 0
    assert Settings.from_env({"AFTERSALES_ORDERS_TIMEOUT": "2.5"}).orders_timeout == 2.5
    run = check(AFTERSALES_ORDERS_TIMEOUT="soon", AFTERSALES_MAX_INPUT_CHARS="0", AFTERSALES_DEFAULT_LOCALE="nl")
    assert run.code == 1
    assert run.says(ENVIRONMENT, None, "AFTERSALES_ORDERS_TIMEOUT must be a number, got 'soon'")
    assert run.says(ENVIRONMENT, None, "AFTERSALES_MAX_INPUT_CHARS must be more than 0, got '0'")
    assert run.says(ENVIRONMENT, None, "AFTERSALES_DEFAULT_LOCALE is 'nl', which has no catalog")


def test_other_commands_stop_before_starting_and_print_the_problems(check, copies):
    policy = copies / "dialogues" / "policy.yml"
    line = edit(policy, "timezone: Asia/Shanghai", "timezone: Asia/Shanghia")
    run = check("tickets", "list")
    assert run.code == 2
    assert run.says(policy, line, "service_hours.timezone: 'Asia/Shanghia' is not a time zone")
    assert "not started" in run.err


def test_the_overlay_changes_one_text_and_one_policy_value(copies):
    overlay = copies / "overlay"
    (overlay / "locales" / "en").mkdir(parents=True)
    (overlay / "dialogues").mkdir()
    (overlay / "locales" / "en" / "texts.yml").write_text(
        'messages:\n  greeting: "Welcome to Example Shop! How can we help?"\n', encoding="utf-8"
    )
    (overlay / "locales" / "en" / "recognition.yml").write_text(
        'intents:\n  track_order: ["where has my llama gone"]\n', encoding="utf-8"
    )
    (overlay / "dialogues" / "policy.yml").write_text("windows:\n  return_item: {default: 30}\n", encoding="utf-8")
    settings = Settings(dialogues_dir=copies / "dialogues", locales_dir=copies / "locales", overlay_dir=overlay)
    configuration = load_configuration(settings)
    catalog, policy = configuration.catalog, configuration.policy
    assert catalog.render("en", "greeting") == "Welcome to Example Shop! How can we help?"
    assert catalog.render("en", "fallback").startswith("Sorry")  # the rest as shipped
    assert catalog.render("de", "greeting") != catalog.render("en", "greeting")
    assert catalog.locales["en"].intents["track_order"][-1] == "where has my llama gone"
    assert len(catalog.locales["en"].intents["track_order"]) > 10  # added to, not replaced
    assert policy.window_days("return_item", "US") == 30  # the overlay's default
    assert policy.window_days("return_item", "DE") == 14  # the shipped EU value, merged key by key
    assert policy.refund_days == 7


def test_a_typo_in_the_overlay_is_named_in_the_overlay(copies):
    overlay = copies / "overlay"
    (overlay / "locales" / "fr").mkdir(parents=True)
    (overlay / "dialogues").mkdir()
    texts = overlay / "locales" / "fr" / "texts.yml"
    texts.write_text('messages:\n  greting: "Bonjour !"\n', encoding="utf-8")
    policy = overlay / "dialogues" / "policy.yml"
    policy.write_text("verification:\n  max_failures: 0\n", encoding="utf-8")
    (overlay / "dialogues" / "flows.yml").write_text("flows: {}\n", encoding="utf-8")
    settings = Settings(dialogues_dir=copies / "dialogues", locales_dir=copies / "locales", overlay_dir=overlay)
    problems = [str(p) for p in check_configuration(settings)]
    reword = "messages.greting: the fr texts have no such entry to reword (did you mean 'greeting'?)"
    assert f"{texts}:2: {reword}" in problems
    assert f"{policy}:2: verification.max_failures: must be at least 1, got 0" in problems
    assert any(p.startswith(f"{overlay / 'dialogues' / 'flows.yml'}: not read") for p in problems)


def test_the_old_one_file_per_language_layout_is_pointed_out(copies):
    stray = copies / "locales" / "nl.yml"
    stray.write_text("language: nl\n", encoding="utf-8")
    settings = Settings(dialogues_dir=copies / "dialogues", locales_dir=copies / "locales")
    with pytest.raises(ConfigError, match=r"nl\.yml: not read: each language is a folder"):
        load_configuration(settings)


def test_check_runs_as_a_module_without_loading_the_models():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "channels.cli", "check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("configuration ok")
    assert "sklearn" not in done.stderr  # the import log: the check does not train anything


def test_the_schemas_name_what_the_contracts_and_the_catalog_name():
    from bot.catalog import FRAGMENT_TABLES
    from bot.contracts import SIGNALS, Window
    from bot.schema import KeywordsModel, TextsModel, Windows

    assert set(Windows.model_fields) == set(Window)
    assert set(TextsModel.model_fields) == {"language", "name", "messages", *FRAGMENT_TABLES}
    assert set(KeywordsModel.model_fields) == {*SIGNALS, "agree", "function_words", "resolution"}


def test_a_placeholder_no_step_fills_is_named_with_its_file(tmp_path):
    """`{tracking_url}` in the verification question would render blank: the check says so at start-up."""
    locales = tmp_path / "locales"
    shutil.copytree(shipped_folder("locales"), locales)
    texts = locales / "fr" / "texts.yml"
    content = texts.read_text(encoding="utf-8")
    start = content.index("  ask_verification:")
    end = content.index("\n", start)
    texts.write_text(
        content[:start] + '  ask_verification: "Confirmez {tracking_url} svp"' + content[end:], encoding="utf-8"
    )
    problems = [str(p) for p in check_configuration(Settings(locales_dir=locales))]
    assert any(str(texts) in p and "ask_verification" in p and "{tracking_url}" in p for p in problems), problems


def test_a_key_a_flow_says_that_a_locale_lacks_is_a_problem(tmp_path):
    dialogues = tmp_path / "dialogues"
    shutil.copytree(shipped_folder("dialogues"), dialogues)
    flows = dialogues / "flows.yml"
    flows.write_text(
        flows.read_text(encoding="utf-8").replace("- say: sympathy", "- say: sympathy_v2", 1), encoding="utf-8"
    )
    problems = [str(p) for p in check_configuration(Settings(dialogues_dir=dialogues))]
    assert any("sympathy_v2" in p and "flows.yml" in p for p in problems), problems


def test_an_order_status_the_catalog_does_not_know_is_accepted(tmp_path):
    """A shop's system may say "in_transit": it reads as the generic status, not as a broken file."""
    orders = tmp_path / "orders.yml"
    orders.write_text('orders:\n  - {number: "SO-1", status: in_transit, incoterm: CPT}\n', encoding="utf-8")
    assert check_configuration(Settings(orders_file=orders)) == []


def test_a_misspelt_keyword_list_in_an_overlay_is_named(copies):
    """`agre:` instead of `agree:` would leave the yes-words unread: the check names it."""
    overlay = copies / "overlay"
    (overlay / "locales" / "es").mkdir(parents=True)
    recognition = overlay / "locales" / "es" / "recognition.yml"
    recognition.write_text('keywords:\n  agre: ["vale"]\n', encoding="utf-8")
    settings = Settings(dialogues_dir=copies / "dialogues", locales_dir=copies / "locales", overlay_dir=overlay)
    problems = [str(p) for p in check_configuration(settings)]
    assert any(str(recognition) in p and "agre" in p and "agree" in p for p in problems), problems

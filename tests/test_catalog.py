"""Every locale says everything, with the same placeholders; money and dates follow the locale."""

from __future__ import annotations

import shutil
from datetime import date

import pytest

from bot.catalog import FRAGMENT_TABLES, REQUIRED_KEYS, Catalog, placeholders
from bot.config import shipped_folder
from bot.formatting import format_day, format_money
from bot.validation import ConfigError

SUPPORTED = ("en", "zh", "ja", "ko", "es", "pt", "fr", "de", "it", "ru", "ar", "th")


def test_all_twelve_locales_are_present(brain):
    assert set(SUPPORTED) <= set(brain.catalog.codes)


@pytest.mark.parametrize("key", ["internal_error", "greeting"])
def test_a_locale_missing_a_required_key_is_not_loaded(tmp_path, key):
    """The loader enforces the keys every locale defines: a locale without one stops start-up."""
    locales = tmp_path / "locales"
    shutil.copytree(shipped_folder("locales"), locales)
    texts = locales / "ko" / "texts.yml"
    rows = texts.read_text(encoding="utf-8").splitlines(keepends=True)
    texts.write_text("".join(r for r in rows if not r.startswith(f"  {key}:")), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        Catalog.load(locales)
    assert str(error.value) == f"{texts}:6: messages: missing required keys: {key}"
    assert key in REQUIRED_KEYS


@pytest.mark.parametrize("code", [c for c in SUPPORTED if c != "en"])
def test_placeholders_match_english_everywhere(brain, code):
    english, other = brain.catalog.locales["en"], brain.catalog.locales[code]
    for key, text in english.messages.items():
        if key in other.messages:
            assert placeholders(other.messages[key]) == placeholders(text), f"{code}: {key}"
    for table in FRAGMENT_TABLES:
        for name, text in english.fragments[table].items():
            assert name in other.fragments[table], f"{code}: {table}.{name} missing"
            assert placeholders(other.fragments[table][name]) == placeholders(text), f"{code}: {table}.{name}"


@pytest.mark.parametrize("code", SUPPORTED)
def test_every_locale_has_recognition_examples_for_every_intent(brain, code):
    intents = brain.catalog.locales[code].intents
    from bot.intents import INTENTS

    assert {i: len(intents.get(i, [])) >= 10 for i in INTENTS} == {i: True for i in INTENTS}


def test_amounts_and_dates_are_formatted_per_locale():
    assert format_money(12800, "JPY", "ja") == "￥12,800"
    assert format_money(89.9, "EUR", "de") == "89,90\xa0€"
    assert "2026" in format_day(date(2026, 11, 15), "fr") and "novembre" in format_day(date(2026, 11, 15), "fr")
    assert format_day(date(2026, 11, 15), "ja") == "2026年11月15日"

"""One renderer: money, dates and fragments in the customer's language; no placeholder left empty."""

from __future__ import annotations

from datetime import date

import pytest

from bot.values import Fragment, Money, order_values
from tests.factories import order

LANGUAGES = ("en", "zh", "ja", "ko", "es", "pt", "fr", "de", "it", "ru", "ar", "th")


@pytest.mark.parametrize("code", LANGUAGES)
def test_a_status_the_catalog_does_not_know_reads_as_the_generic_status(brain, code):
    values = order_values(order(status="in_transit"), 7)
    text = brain.renderer.text(code, "order_status", values)
    assert "in_transit" not in text
    assert brain.catalog.locales[code].fragments["statuses"]["other"] in text


@pytest.mark.parametrize("code", LANGUAGES)
def test_an_unknown_incoterm_gets_the_generic_customs_text(brain, code):
    text = brain.renderer.text(code, "customs_info", order_values(order(incoterm="CPT"), 7))
    assert brain.catalog.locales[code].fragments["customs"]["other"] in text


@pytest.mark.parametrize("code", LANGUAGES)
def test_missing_order_facts_never_render_empty(brain, code):
    """A shipped order whose API gave no carrier or tracking number still reads as a sentence."""
    values = order_values(order(status="shipped", carrier="", tracking="", shipped_at=None), 7)
    text = brain.renderer.text(code, "order_status", values)
    unknown = brain.catalog.locales[code].fragments["generic"]["unknown"]
    assert text.count(unknown) == 3  # shipped_on, carrier and tracking


def test_every_text_renders_with_no_values_at_all(brain):
    """Whatever a text asks for, something stands in its place: never '{name}' or an empty gap."""
    for code in LANGUAGES:
        for key in brain.catalog.locales[code].messages:
            text = brain.renderer.text(code, key, {})
            assert "{" not in text and "  " not in text.replace("\u3000", ""), (code, key, text)


def test_money_and_dates_follow_the_language(brain):
    values = {"amount": Money(12800, "JPY"), "order_number": "SO-1", "refund_days": 7}
    assert "￥12,800" in brain.renderer.text("ja", "macro_refund_approved", values)
    text = brain.renderer.text("de", "refund_status", {"order_number": "SO-1", "refund": Fragment("refunds", "issued"),
                                                        "amount": Money(89.9, "EUR"), "issued_on": date(2026, 11, 18),
                                                        "method": Fragment("payment_methods", "card")})  # fmt: skip
    assert "89,90\xa0€" in text and "18. November 2026" in text

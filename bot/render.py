"""The one renderer: a reply's catalog key and raw values become text in the customer's language.

Money, dates, moments and durations are formatted here (Babel, via `bot.formatting`); fragments
are looked up here. A value the shop's systems do not know (an order status "in_transit", an
incoterm "CPT") renders with its table's generic `other` entry, and a missing value with the
`generic.unknown` text, so no placeholder ever renders empty.
"""

from __future__ import annotations

import string
from datetime import date
from functools import lru_cache

from bot.catalog import Catalog, Locale
from bot.contracts import CSAT_PREFIX
from bot.formatting import format_day, format_minutes, format_moment, format_money, format_service_hours
from bot.policy import ServiceHours
from bot.values import Fragment, Minutes, Moment, Money, OpeningHours, Value

_LAST_RESORT = "—"  # only if even the default locale lacks the generic text


class Renderer:
    def __init__(self, catalog: Catalog, hours: ServiceHours) -> None:
        self.catalog = catalog
        self.hours = hours

    def text(self, language: str, key: str, values: dict[str, Value] | None = None) -> str:
        """The text of `key` (the default locale's when this one lacks it), every placeholder filled."""
        locale = self.catalog.locale(language)
        template = locale.messages.get(key) or self.catalog.locale(self.catalog.default).messages[key]
        return self._fill(template, values or {}, locale)

    def button_label(self, language: str, payload: str) -> str:
        if payload.startswith(CSAT_PREFIX):
            return "⭐" * int(payload.removeprefix(CSAT_PREFIX))
        return self.catalog.button_label(language, payload)

    def _fill(self, template: str, values: dict[str, Value], locale: Locale) -> str:
        filled = {name: self._value(values.get(name), values, locale) for name in _names(template)}
        return template.format_map(filled)

    def _value(self, value: Value, values: dict[str, Value], locale: Locale) -> str:
        code = locale.code
        if value is None or value == "":
            return self._generic(locale)
        if isinstance(value, Fragment):
            return self._fill(self._fragment(value, locale), values, locale)
        if isinstance(value, Money):
            return format_money(value.amount, value.currency, code)
        if isinstance(value, Moment):
            return format_moment(value.at, self.hours.timezone, code)
        if isinstance(value, date):
            return format_day(value, code)
        if isinstance(value, Minutes):
            return format_minutes(value.minutes, code)
        if isinstance(value, OpeningHours):
            hours = self.hours
            return format_service_hours(tuple(sorted(hours.weekdays)), hours.opens, hours.closes, hours.timezone, code)
        return str(value)

    def _fragment(self, fragment: Fragment, locale: Locale) -> str:
        """The entry in the customer's language; else that table's generic entry; else the default
        locale's; a value no table knows never shows as a raw code like "in_transit"."""
        default = self.catalog.locale(self.catalog.default)
        for source, name in ((locale, fragment.name), (locale, "other"), (default, fragment.name), (default, "other")):
            text = source.fragments.get(fragment.table, {}).get(name)
            if text:
                return text
        return self._generic(locale)

    def _generic(self, locale: Locale) -> str:
        default = self.catalog.locale(self.catalog.default)
        for source in (locale, default):
            text = source.fragments.get("generic", {}).get("unknown")
            if text:
                return text
        return _LAST_RESORT


@lru_cache(maxsize=1024)
def _names(template: str) -> tuple[str, ...]:
    return tuple({name for _, name, _, _ in string.Formatter().parse(template) if name})


def needs_order(catalog: Catalog, language: str, key: str, order_facts: frozenset[str]) -> bool:
    """Whether the text of `key` in this language says something only a verified order knows."""
    locale = catalog.locale(language)
    template = locale.messages.get(key) or catalog.locale(catalog.default).messages.get(key, "")
    return bool(set(_names(template)) & order_facts)

"""Values turned into the customer's words: money, dates, durations and service hours (Babel).

The renderer (`bot.render`) is the only user; catalogs hold words only, never formatted values.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_time, format_timedelta, get_day_names
from babel.numbers import format_currency

_BABEL_LOCALES = {"zh": "zh_Hans_CN", "pt": "pt_BR"}


def babel_locale(code: str) -> str:
    return _BABEL_LOCALES.get(code, code)


@lru_cache(maxsize=4096)  # Babel takes ~0.3 ms a call; the same order's values come back every turn
def format_money(amount: float | Decimal | int, currency: str, code: str) -> str:
    return format_currency(Decimal(str(amount)), currency, locale=babel_locale(code))


@lru_cache(maxsize=4096)
def format_day(day: date, code: str) -> str:
    return format_date(day, format="long", locale=babel_locale(code))


def format_moment(moment: datetime, zone: ZoneInfo, code: str) -> str:
    text = format_datetime(moment.astimezone(zone), format="medium", tzinfo=zone, locale=babel_locale(code))
    return f"{text} ({zone.key})"


@lru_cache(maxsize=256)
def format_minutes(minutes: int, code: str) -> str:
    return format_timedelta(timedelta(minutes=minutes), locale=babel_locale(code), threshold=2)


@lru_cache(maxsize=256)
def format_service_hours(weekdays: tuple[int, ...], opens: time, closes: time, zone: ZoneInfo, code: str) -> str:
    """E.g. "Mon–Fri 09:00–18:00 (Asia/Shanghai)", in the customer's language."""
    locale = babel_locale(code)
    names = get_day_names("abbreviated", locale=locale)
    span = f"{names[weekdays[0]]}–{names[weekdays[-1]]}" if len(weekdays) > 1 else names[weekdays[0]]
    hours = f"{format_time(opens, format='short', locale=locale)}–{format_time(closes, format='short', locale=locale)}"
    return f"{span} {hours} ({zone.key})"


def language_names(codes: list[str] | tuple[str, ...]) -> str:
    """Each language in its own words ("English, Deutsch, Español, 日本語"): what the bot speaks."""
    names = (Locale.parse(code).get_language_name(code) or code for code in codes)
    return ", ".join(name[:1].upper() + name[1:] for name in names)

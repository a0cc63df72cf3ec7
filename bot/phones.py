"""Phone numbers a platform vouches for, compared exactly (E.164) with the order's.

A customer who types a phone number proves ownership by its last digits (`bot.order.phones_match`,
DESIGN's rule). A WhatsApp sender is different: nobody is asked anything, so the match must be
exact. The order's phone is read in its market's numbering plan ("090-1234-5678" on a JP order is
+81 90 1234 5678), so a UK number can never vouch for a Japanese order that shares its last digits.
"""

from __future__ import annotations

import re

import phonenumbers

from bot.order import fold

_INTERNATIONAL = re.compile(r"\+?[0-9][0-9\s().-]*")


def e164(number: str, market: str = "") -> str | None:
    """The number in E.164 ("+819012345678"), read in `market`'s plan when it has no country code;
    None when it is not a possible phone number there."""
    text = fold(number or "").strip()
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, market.upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def sender_e164(number: str) -> str | None:
    """A platform's sender number in E.164: WhatsApp gives the digits with their country code and
    no '+' ("447700900123")."""
    text = fold(number or "").strip()
    if not _INTERNATIONAL.fullmatch(text):
        return None
    return e164(text if text.startswith("+") else "+" + text)


def vouches_for(sender: str | None, order_phone: str, market: str) -> bool:
    """Whether a sender number the platform vouches for is exactly the order's phone."""
    if not sender or not order_phone:
        return False
    mine = sender_e164(sender)
    return mine is not None and mine == e164(order_phone, market)


def country_of(number: str) -> str:
    """The main country of a number's country code ("+81 90..." -> "JP", "+1..." -> "US"); "" if none."""
    vouched = sender_e164(number)
    if vouched is None:
        return ""
    code = phonenumbers.parse(vouched).country_code
    region = phonenumbers.region_code_for_country_code(code) if code else phonenumbers.UNKNOWN_REGION
    return "" if region == phonenumbers.UNKNOWN_REGION else region

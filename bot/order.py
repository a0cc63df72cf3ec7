"""Orders as the dialogue sees them: how order numbers look, and what the bot knows about an order.

Pure data and text matching; fetching orders is `bot.order_sources`.

Customers type numbers and proofs the way their keyboard gives them: full-width ("ＳＯ－１００２３"
from a Japanese or Chinese input method), with a typographic dash, in Arabic-Indic or Thai digits,
without the dash ("so10023"). `fold` brings all of that to plain ASCII before anything is matched,
and order numbers are compared by their canonical form (letters and digits only, upper case).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

# Case-insensitive; the first that matches wins. Shops add their own in dialogues/policy.yml.
DEFAULT_PATTERNS = (
    r"(?<![A-Za-z0-9-])\d{3}-\d{7}-\d{7}(?![A-Za-z0-9-])",  # 114-1234567-1234567
    r"(?<![A-Za-z0-9#])#\d{5,12}(?![A-Za-z0-9])",  # #100234
    r"(?<![A-Za-z0-9-])[a-z]{1,4}-?\d{4,12}(?![A-Za-z0-9])",  # SO-10023, so10023 (also inside Japanese text)
)


# "sato10023@mail.jp" holds no order number. A match starts only where a word does: linear on long words.
_NOT_ORDERS = re.compile(r"(?<!\S)(?:\S*@|https?://)\S*")


# Dashes NFKC leaves alone (hyphen, non-breaking hyphen, figure dash, en and em dash, horizontal bar,
# minus sign, hyphen bullet), and the katakana prolonged sound mark a Japanese keyboard gives for "-"
# (only between a letter or digit and a digit: elsewhere it is part of a word, as in メール).
_DASHES = re.compile(r"[\u2010-\u2015\u2212\u2043]|(?<=[A-Za-z0-9])\u30fc(?=[0-9])")
_NOT_CANONICAL = re.compile(r"[^A-Z0-9]")
# Between a short run of letters and a run of digits, when the bot has asked for a number: "SO 10023".
_LOOSE_SEPARATOR = re.compile(r"(?<![A-Za-z])([A-Za-z]{1,4})[\s_./]+(?=\d{4})")


def fold(text: str) -> str:
    """NFKC (full-width letters, digits and signs become ASCII), every decimal digit as 0-9, every
    dash as '-'. What customers type is matched and compared only in this form."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = re.sub(r"\d", lambda m: str(unicodedata.decimal(m.group(0), 0)), text)
        text = _DASHES.sub("-", text)
    return text


class OrderNumbers:
    """Finds an order number anywhere in a message and normalises it."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_PATTERNS) -> None:
        self._patterns = [re.compile(p, re.IGNORECASE) for p in patterns]

    def find(self, text: str) -> str | None:
        folded = _NOT_ORDERS.sub(" ", fold(text))
        for pattern in self._patterns:
            if match := pattern.search(folded):
                return normalise_order_number(match.group(0))
        return None

    def find_loose(self, text: str) -> str | None:
        """Like `find`, and also reads "SO 10023" or "SO_10023" as SO-10023: only for a message
        answering the question for a number (in any other, "tel 0901234567" is no order)."""
        text = fold(text)
        joined = (_LOOSE_SEPARATOR.sub(r"\1-", text), _LOOSE_SEPARATOR.sub(r"\1", text))
        return self.find(text) or self.find(joined[0]) or self.find(joined[1])

    def without(self, text: str, number: str) -> str:
        """The folded text with every mention of this order number blanked out: what is left
        beside the number is what the customer offers as proof."""
        text, wanted = fold(text), canonical_order_number(number)
        for pattern in self._patterns:
            text = pattern.sub(lambda m: " " if canonical_order_number(m.group(0)) == wanted else m.group(0), text)
        return text


def normalise_order_number(raw: str) -> str:
    """Folded, upper case, without a leading '#': "ＳＯ－１００２３" is 'SO-10023'; 'so10023' stays
    'SO10023' (shops' numbers differ: compare them with `same_order_number`)."""
    return fold(raw).strip().lstrip("#").upper()


def canonical_order_number(raw: str) -> str:
    """Letters and digits only, upper case: 'SO-10023', 'so10023' and 'ＳＯ－１００２３' are all
    'SO10023'. Lookups and failure counters are keyed by it."""
    return _NOT_CANONICAL.sub("", fold(raw).upper())


def same_order_number(a: str | None, b: str | None) -> bool:
    """Whether two written numbers name the same order (compared in canonical form)."""
    return bool(a and b) and canonical_order_number(a or "") == canonical_order_number(b or "")


@dataclass(frozen=True)
class Refund:
    state: str = "none"  # none | pending | issued
    amount: float | None = None
    issued_at: date | None = None
    method: str | None = None


@dataclass(frozen=True)
class Order:
    number: str
    email: str = ""
    phone: str = ""
    postcode: str = ""
    market: str = ""
    currency: str = "USD"
    total: float = 0.0
    placed_at: date | None = None
    shipped_at: date | None = None
    delivered_at: date | None = None
    status: str = "placed"
    carrier: str = ""
    tracking: str = ""
    incoterm: str = "DAP"
    payment_method: str = "card"
    refund: Refund = field(default_factory=Refund)
    items: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Order:
        """Build from a fixture, a file or an API answer; unknown fields are ignored."""

        def day(value: Any) -> date | None:
            if value in (None, ""):
                return None
            return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])

        refund = data.get("refund") or {}
        return cls(
            number=normalise_order_number(str(data["number"])),
            email=str(data.get("email") or ""),
            phone=str(data.get("phone") or ""),
            postcode=str(data.get("postcode") or ""),
            market=str(data.get("market") or "").upper(),
            currency=str(data.get("currency") or "USD").upper(),
            total=float(data.get("total") or 0),
            placed_at=day(data.get("placed_at")),
            shipped_at=day(data.get("shipped_at")),
            delivered_at=day(data.get("delivered_at")),
            status=str(data.get("status") or "placed"),
            carrier=str(data.get("carrier") or ""),
            tracking=str(data.get("tracking") or ""),
            incoterm=str(data.get("incoterm") or "DAP").upper(),
            payment_method=str(data.get("payment_method") or "card"),
            refund=Refund(
                state=str(refund.get("state") or "none"),
                amount=float(refund["amount"]) if refund.get("amount") is not None else None,
                issued_at=day(refund.get("issued_at")),
                method=refund.get("method"),
            ),
            items=tuple(data.get("items") or ()),
        )

    @property
    def canonical_number(self) -> str:
        return canonical_order_number(self.number)

    def proves_ownership(self, proof: str) -> bool:
        """One proof: email (case ignored), phone (last 8+ digits), or postcode (spaces, dashes
        and case ignored), each folded first (full-width, other digits and dashes)."""
        proof = fold(proof).strip()
        if not proof:
            return False
        if self.email and proof.casefold() == fold(self.email).strip().casefold():
            return True
        if self.phone and phones_match(proof, self.phone):
            return True
        return bool(self.postcode) and _squeezed(proof) == _squeezed(self.postcode)


def _squeezed(postcode: str) -> str:
    return re.sub(r"[\s-]", "", fold(postcode)).casefold()


MAX_PHONE_DIGITS = 15


def phones_match(given: str, known: str) -> bool:
    """Same phone if the digits agree on at least the last 8: one number may carry the country
    code ("+81 90...") where the other has the national trunk zero ("090..."). For numbers a
    customer types; a number a platform vouches for must match exactly (`bot.phones`)."""
    a, b = (re.sub(r"[^0-9]", "", fold(n)).lstrip("0") for n in (given, known))
    shorter, longer = sorted((a, b), key=len)
    # No phone number has more than 15 digits (E.164): a longer string is a list, not one number.
    return 8 <= len(shorter) and len(longer) <= MAX_PHONE_DIGITS and longer.endswith(shorter)

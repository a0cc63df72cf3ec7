"""What a message offers as proof of owning an order, and the one-time code typed to unlock one.

At most one proof counts per message. A message holding several (two emails, a phone and a
postcode, 180 postcodes) is one failed attempt and never a success: otherwise one message could
try a whole list. Everything is read folded (`bot.order.fold`): full-width, other digits, dashes.

A proof is an email, or a "run": digits, possibly with letters (UK, Canadian, Dutch postcodes),
joined by spaces, dashes, dots, slashes or brackets ("+81 (90) 1234-5678", "SW1A 1AA",
"150-0001"). A run needs at least two digits and three characters, so "2 minutes" or "3pm"
offers nothing and is not an attempt at all.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from bot.order import Order, OrderNumbers, fold

# Each starts only where a word does, so a long word costs linear time, not quadratic.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_TOKEN = r"[A-Za-z]*[0-9][A-Za-z0-9]*"
# Tokens holding a digit, joined by short separators; a Dutch postcode's letters ("1012 AB") may follow.
_RUN = re.compile(rf"(?<![A-Za-z0-9+(])\+?\(?{_TOKEN}(?:[\s().\-/]{{1,3}}{_TOKEN})*(?P<letters>\s[A-Z]{{2}}\b)?")
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9](?:[\s-]?[0-9])*")
CODE_DIGITS = 6
# The longest one proof can be: an international number written in full, "0044 (0) 7700 900123".
LONGEST_PROOF = 18


@dataclass(frozen=True, slots=True)
class Proof:
    """One thing offered as proof; `forms` are the ways to read it (a run with or without the
    two capital letters that followed it)."""

    forms: tuple[str, ...]

    def proves(self, order: Order) -> bool:
        return any(order.proves_ownership(form) for form in self.forms)


@dataclass(frozen=True, slots=True)
class Offered:
    """What one message offers."""

    proofs: tuple[Proof, ...]
    too_long: bool = False  # a run longer than any proof: a list written without commas

    @property
    def nothing(self) -> bool:
        return not self.proofs

    @property
    def several(self) -> bool:
        return len(self.proofs) > 1 or self.too_long

    def proves(self, order: Order | None) -> bool:
        """True only for exactly one proof, and one that matches the order."""
        return order is not None and not self.several and bool(self.proofs) and self.proofs[0].proves(order)


def offered(text: str, numbers: OrderNumbers, order_number: str | None) -> Offered:
    """The proofs in a message, beside the order number it may repeat (that is no proof)."""
    rest = numbers.without(text, order_number) if order_number else fold(text)
    proofs: dict[str, Proof] = {}
    too_long = False
    for match in _EMAIL.finditer(rest):
        email = match.group(0).strip(".'-")
        proofs.setdefault(email.casefold(), Proof((email,)))
    rest = _EMAIL.sub(" ", rest)
    for match in _RUN.finditer(rest):
        run = match.group(0).strip()
        alnum = re.sub(r"[^A-Za-z0-9]", "", run)
        if sum(c.isdigit() for c in alnum) < 2 or len(alnum) < 3:
            continue
        too_long = too_long or len(alnum) > LONGEST_PROOF
        forms = (run,) if not match.group("letters") else (run, run[: match.start("letters") - match.start()].strip())
        proofs.setdefault(alnum.casefold(), Proof(forms))
    return Offered(tuple(proofs.values()), too_long)


def typed_code(text: str) -> str | None:
    """The one-time code in a message: exactly one group of six digits ("123456", "123 456").
    None when there is none, or more digits than one code."""
    runs = [re.sub(r"[^0-9]", "", m.group(0)) for m in _DIGIT_RUN.finditer(_EMAIL.sub(" ", fold(text)))]
    return runs[0] if len(runs) == 1 and len(runs[0]) == CODE_DIGITS else None


def has_digits(text: str) -> bool:
    """Whether a message holds digits outside any email address (while a code is awaited, such a
    message is an attempt at it)."""
    return any(c.isdigit() for c in _EMAIL.sub(" ", fold(text)))


def sender_of(channel: str, user_id: str) -> str:
    """Who failed, for the per-sender limit: a user id is only unique within its channel."""
    return f"{channel}:{user_id}"


def code_digest(code: str, salt: str) -> str:
    """How a one-time code is kept: salted (per code) and hashed, never in clear."""
    return hmac.new(salt.encode(), code.encode(), hashlib.sha256).hexdigest()


def code_matches(code: str | None, salt: str, digest: str) -> bool:
    """Compared in constant time, so timing tells nothing about how close a guess was."""
    return code is not None and hmac.compare_digest(code_digest(code, salt), digest)

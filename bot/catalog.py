"""Message catalogs: one folder per language, `locales/<code>/`, holding `texts.yml` (what the bot
says: messages and fragment tables) and `recognition.yml` (intent examples and keyword lists).

Texts are rendered with `str.format` placeholders; amounts and dates arrive already formatted
for the locale by `format_money` / `format_day` (Babel), so catalogs hold words only.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Keys the design fixes: every locale must define them.
REQUIRED_KEYS = (
    "greeting", "fallback", "ask_order_number", "order_number_invalid", "ask_verification",
    "verification_failed", "verification_locked", "order_status", "ask_photos", "photo_received",
    "photo_rejected", "ask_resolution", "ticket_created", "return_window_expired", "refund_status",
    "customs_info", "handoff_queued", "handoff_outside_hours", "agent_joined", "handoff_ended",
    "csat_ask", "csat_thanks", "language_switched", "input_rejected", "order_lookup_unavailable",
    "internal_error", "macro_refund_approved", "macro_replacement_sent", "macro_need_more_photos",
)  # fmt: skip
# Fragment tables placed into messages (order statuses, customs terms, ...).
FRAGMENT_TABLES = (
    "buttons", "statuses", "refunds", "customs", "next_steps", "shipping_payer", "photo_reasons",
    "payment_methods", "generic",
)  # fmt: skip


class CatalogError(ValueError):
    """A catalog was built without its default locale (files are checked by bot.validation)."""


@dataclass(frozen=True)
class Locale:
    code: str
    name: str
    messages: dict[str, str]
    fragments: dict[str, dict[str, str]]
    intents: dict[str, list[str]] = field(default_factory=dict)
    keywords: dict[str, Any] = field(default_factory=dict)

    def fragment(self, table: str, name: str, **values: Any) -> str:
        text = self.fragments.get(table, {}).get(name)
        return "" if text is None else _fill(text, values)


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:  # a fragment without its value reads cleanly
        return ""


def _fill(text: str, values: dict[str, Any]) -> str:
    return text.format_map(_Blank(values))


def placeholders(text: str) -> set[str]:
    """The `{names}` a text uses."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class Catalog:
    """All locales of the bot, keyed by ISO 639-1 code."""

    def __init__(self, locales: dict[str, Locale], default: str) -> None:
        if default not in locales:
            raise CatalogError(f"default locale {default!r} has no catalog")
        self.locales = locales
        self.default = default

    @classmethod
    def load(cls, folder: Path, default: str = "en", overlay: Path | None = None) -> Catalog:
        """Read and check `folder/<code>/`, with `overlay` (a folder of the same layout holding only
        the texts a shop changes) laid over it; raise ConfigError listing every problem."""
        from bot.validation import load_catalog  # bot.validation builds catalogs: imported when used

        return load_catalog(folder, default, overlay)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.locales)

    def has_key(self, key: str) -> bool:
        return key in self.locales[self.default].messages

    def locale(self, code: str | None) -> Locale:
        return self.locales.get(code or self.default) or self.locales[self.default]

    def render(self, code: str, key: str, values: dict[str, Any] | None = None) -> str:
        """The text of `key` in `code` (falling back to the default locale), placeholders filled."""
        locale = self.locale(code)
        text = locale.messages.get(key) or self.locales[self.default].messages[key]
        return _fill(text, values or {})

    def button_label(self, code: str, payload: str) -> str:
        label = self.locale(code).fragments.get("buttons", {}).get(payload)
        return label or self.locales[self.default].fragments.get("buttons", {}).get(payload) or payload

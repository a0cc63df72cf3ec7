"""Which catalog keys the dialogue says, and which placeholder values it gives each one.

The step kinds declare theirs (`Step.provides`); the rest are said by routing, the handoff and
the CSAT question, listed here. `aftersales check` holds every locale against this: a key the
code says that a locale lacks, or a placeholder nothing provides, is a problem at start-up,
never a blank in a customer's message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from bot.catalog import Locale, placeholders
from bot.dialogue.steps import Step
from bot.validation import Problem
from bot.values import ORDER_FACTS

_ORDER = ORDER_FACTS | {"refund_days"}
_NONE: frozenset[str] = frozenset()

# Keys said outside any flow step, with the values they are given.
CODE_KEYS: dict[str, frozenset[str]] = {
    "input_rejected": frozenset({"max_chars"}),
    "language_switched": _NONE,
    "language_unsupported": frozenset({"languages"}),
    "button_expired": _NONE,
    "how_can_i_help": _NONE,
    "photo_not_expected": _NONE,
    "attachment_unsupported": _NONE,
    "fallback": _NONE,
    "handoff_queued": frozenset({"wait"}),
    "handoff_outside_hours": frozenset({"hours", "opens_at"}),
    "handoff_waiting": _NONE,
    "agent_joined": frozenset({"agent"}),
    "handoff_ended": _NONE,
    "csat_ask": _NONE,
    "csat_thanks": _NONE,
    "refund_fx_note": _ORDER,
    "order_lookup_unavailable": _NONE,
    # The unlock-code e-mail (bot.lockouts), in the customer's language; the verify step's own
    # texts (one_proof, code_sent, code_wrong, code_ask) are its catalog fields.
    "unlock_code_mail_subject": _NONE,
    "unlock_code_mail_body": frozenset({"code", "minutes"}),
    "internal_error": _NONE,
}
MACRO_VALUES = _ORDER  # macros are said with the verified order's facts (refused without one)

# Fragment tables and the values they may use (a fragment is filled like the text it sits in).
FRAGMENT_VALUES: dict[str, frozenset[str]] = {
    "statuses": _ORDER,
    "refunds": _ORDER,
    "customs": _ORDER,
    "payment_methods": _NONE,
    "next_steps": _NONE,
    "shipping_payer": _NONE,
    "photo_reasons": frozenset({"max_mb"}),
    "buttons": _NONE,
    "generic": _NONE,
}


def spoken_keys(flows: dict[str, tuple[Step, ...]], macros: Iterable[str]) -> dict[str, frozenset[str]]:
    """Every key the dialogue may say with these flows, and the placeholder names it fills."""
    spoken = dict(CODE_KEYS)
    for steps in flows.values():
        for step in steps:
            for field in step.catalog_fields:
                value = getattr(step, field)
                for key in value if isinstance(value, list) else [value]:
                    given = step.provides.get(field, _NONE)
                    spoken[key] = spoken.get(key, _NONE) | given
    for key in macros:
        spoken[key] = MACRO_VALUES
    return spoken


def check_texts(
    locales: dict[str, Locale], spoken: dict[str, frozenset[str]], texts_file: Callable[[str], Path]
) -> list[Problem]:
    """Each locale against what the dialogue says: missing keys, placeholders nothing fills."""
    problems: list[Problem] = []
    for code, locale in locales.items():
        path = texts_file(code)
        for key, given in sorted(spoken.items()):
            text = locale.messages.get(key)
            if text is None:
                problems.append(Problem(path, None, f"messages.{key}: missing (the dialogue says it)"))
                continue
            for name in sorted(placeholders(text) - given):
                problems.append(Problem(path, None, f"messages.{key}: placeholder {{{name}}} is never given a value"))
        for table, allowed in FRAGMENT_VALUES.items():
            for name, text in locale.fragments.get(table, {}).items():
                for unknown in sorted(placeholders(text) - allowed):
                    problems.append(
                        Problem(path, None, f"{table}.{name}: placeholder {{{unknown}}} is never given a value")
                    )
    return problems

"""The shop's after-sales policy (dialogues/policy.yml) and the calendar arithmetic it needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from bot.yamlfile import read_yaml

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PolicyError(ValueError):
    """policy.yml is malformed."""


@dataclass(frozen=True)
class ServiceHours:
    timezone: ZoneInfo
    weekdays: frozenset[int]
    opens: time
    closes: time

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(self.timezone)
        return local.weekday() in self.weekdays and self.opens <= local.time() < self.closes

    def next_opening(self, moment: datetime) -> datetime:
        """The next moment people answer (`moment` itself when open now)."""
        if self.is_open(moment):
            return moment
        local = moment.astimezone(self.timezone)
        day = local.date()
        for _ in range(8):
            start = datetime.combine(day, self.opens, self.timezone)
            if day.weekday() in self.weekdays and start > local:
                return start
            day += timedelta(days=1)
        raise PolicyError("service hours have no open day")

    def add_service_minutes(self, moment: datetime, minutes: float) -> datetime:
        """`moment` plus `minutes` counted only while the service is open."""
        current = self.next_opening(moment)
        remaining = timedelta(minutes=minutes)
        while True:
            local = current.astimezone(self.timezone)
            closing = datetime.combine(local.date(), self.closes, self.timezone)
            available = closing - local
            if remaining <= available:
                return current + remaining
            remaining -= available
            current = self.next_opening(closing)


@dataclass(frozen=True)
class Policy:
    raw: dict[str, Any]
    service_hours: ServiceHours

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            raw = read_yaml(path) or {}
            hours = raw["service_hours"]
            service = ServiceHours(
                timezone=ZoneInfo(hours["timezone"]),
                weekdays=frozenset(_DAYS.index(d.lower()[:3]) for d in hours["days"]),
                opens=time.fromisoformat(hours["open"]),
                closes=time.fromisoformat(hours["close"]),
            )
        except (OSError, yaml.YAMLError, KeyError, ValueError, TypeError) as error:
            raise PolicyError(f"{path}: {error}") from None
        for group, countries in (raw.get("markets") or {}).items():
            for country in countries:
                if not isinstance(country, str):
                    raise PolicyError(
                        f"{path}: markets.{group}: {country!r} is not a country code (quote it: YAML reads NO as false)"
                    )
        return cls(raw, service)

    # -- markets -------------------------------------------------------------------------

    def groups_of(self, market: str) -> list[str]:
        return [name for name, countries in self.raw.get("markets", {}).items() if market.upper() in countries]

    def _by_market(self, table: dict[str, Any], market: str) -> Any:
        if market.upper() in table:
            return table[market.upper()]
        for group in self.groups_of(market):
            if group in table:
                return table[group]
        return table.get("default")

    # -- windows, photos, money -----------------------------------------------------------

    def window_days(self, kind: str, market: str) -> int | None:
        table = self.raw.get("windows", {}).get(kind)
        return None if table is None else int(self._by_market(table, market))

    def window_closes(self, kind: str, market: str, delivered: date) -> date | None:
        days = self.window_days(kind, market)
        return None if days is None else delivered + timedelta(days=days)

    def photo_limits(self, intent: str) -> tuple[int, int]:
        limits = self.raw.get("photos", {}).get(intent, {})
        return int(limits.get("min", 1)), int(limits.get("max", 5))

    def resolutions(self, intent: str) -> list[str]:
        return list(self.raw.get("resolutions", {}).get(intent, ["refund"]))

    def return_shipping_payer(self, intent: str) -> str:
        return str(self.raw.get("return_shipping", {}).get(intent, "customer"))

    def return_address(self, market: str) -> str:
        return str(self._by_market(self.raw.get("return_address", {}), market) or "")

    @property
    def refund_days(self) -> int:
        return int(self.raw.get("refund_days", 7))

    def is_high_value(self, total: float, currency: str) -> bool:
        table = self.raw.get("high_value", {})
        if currency in table:
            return total > float(table[currency])
        rate = self.raw.get("fx_to_usd", {}).get(currency)
        return rate is not None and total * float(rate) > float(table.get("default_usd", 500))

    # -- people ---------------------------------------------------------------------------

    def sla_minutes(self, channel: str, market: str) -> int:
        groups = set(self.groups_of(market)) if market else set()
        for rule in self.raw.get("sla_minutes", []):
            if "channels" in rule and channel not in rule["channels"]:
                continue
            if "regions" in rule and not groups.intersection(rule["regions"]):
                continue
            return int(rule["minutes"])
        return 60

    @property
    def ticket_response_hours(self) -> int:
        return int(self.raw.get("ticket_response_hours", 24))

    @property
    def order_number_patterns(self) -> list[str]:
        return list(self.raw.get("order_number_patterns") or [])

    @property
    def max_verification_failures(self) -> int:
        return int(self.raw.get("verification", {}).get("max_failures", 3))

    @property
    def verification_lock_seconds(self) -> int:
        return int(self.raw.get("verification", {}).get("lock_hours", 24)) * 3600

    @property
    def evidence_limits(self) -> tuple[int, int]:
        evidence = self.raw.get("evidence", {})
        return int(evidence.get("max_bytes", 10 * 1024 * 1024)), int(evidence.get("max_pixels", 40_000_000))

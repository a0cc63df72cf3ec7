"""The shop's after-sales policy (dialogues/policy.yml) and the calendar arithmetic it needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from bot.contracts import Intent, Resolution
from bot.schema import PhotoLimits, PolicyModel

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
T = TypeVar("T")


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
        raise RuntimeError("service hours have no open day")  # bot.schema requires at least one

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
    """The validated policy (`bot.schema.PolicyModel`) and the answers the dialogue asks of it."""

    model: PolicyModel
    service_hours: ServiceHours

    @classmethod
    def from_model(cls, model: PolicyModel) -> Policy:
        hours = model.service_hours
        service = ServiceHours(
            timezone=ZoneInfo(hours.timezone),
            weekdays=frozenset(_DAYS.index(day) for day in hours.days),
            opens=time.fromisoformat(hours.open),
            closes=time.fromisoformat(hours.close),
        )
        return cls(model, service)

    @classmethod
    def load(cls, path: Path, overlay: Path | None = None) -> Policy:
        """Read and check policy.yml, with an overlay's values merged over it; raise ConfigError
        listing every problem."""
        from bot.validation import load_policy  # bot.validation reads every file: imported when used

        return load_policy(path, overlay)

    # -- markets -------------------------------------------------------------------------

    def groups_of(self, market: str) -> list[str]:
        return [name for name, countries in self.model.markets.items() if market.upper() in countries]

    def _by_market(self, table: Mapping[str, Any], market: str) -> Any:
        if market.upper() in table:
            return table[market.upper()]
        for group in self.groups_of(market):
            if group in table:
                return table[group]
        return table.get("default")

    # -- windows, photos, money -----------------------------------------------------------

    def window_days(self, kind: str, market: str) -> int | None:
        table = getattr(self.model.windows, kind, None)
        return None if table is None else int(self._by_market(table, market))

    def window_closes(self, kind: str, market: str, delivered: date) -> date | None:
        days = self.window_days(kind, market)
        return None if days is None else delivered + timedelta(days=days)

    def photo_limits(self, intent: str) -> tuple[int, int]:
        limits = _by_intent(self.model.photos, intent) or PhotoLimits()
        return limits.min, limits.max

    def most_photos(self) -> int:
        """The largest number of photos any request asks for: the cap on photos kept before one does."""
        return max((limits.max for limits in self.model.photos.values()), default=PhotoLimits().max)

    def resolutions(self, intent: str) -> list[str]:
        return [str(r) for r in _by_intent(self.model.resolutions, intent) or [Resolution.REFUND]]

    def return_shipping_payer(self, intent: str) -> str:
        return _by_intent(self.model.return_shipping, intent) or "customer"

    def return_address(self, market: str) -> str:
        return str(self._by_market(self.model.return_address, market) or "")

    @property
    def refund_days(self) -> int:
        return self.model.refund_days

    def is_high_value(self, total: float, currency: str) -> bool:
        table = self.model.high_value
        if currency in table:
            return total > table[currency]
        rate = self.model.fx_to_usd.get(currency)
        return rate is not None and total * rate > table.get("default_usd", 500)

    # -- people ---------------------------------------------------------------------------

    def sla_minutes(self, channel: str, market: str) -> int:
        groups = set(self.groups_of(market)) if market else set()
        for rule in self.model.sla_minutes:
            if rule.channels is not None and channel not in rule.channels:
                continue
            if rule.regions is not None and not groups.intersection(rule.regions):
                continue
            return rule.minutes
        return 60

    @property
    def ticket_response_hours(self) -> int:
        return self.model.ticket_response_hours

    @property
    def order_number_patterns(self) -> list[str]:
        return list(self.model.order_number_patterns)

    @property
    def max_verification_failures(self) -> int:
        return self.model.verification.max_failures

    @property
    def verification_lock_seconds(self) -> int:
        return self.model.verification.lock_hours * 3600

    @property
    def max_sender_failures(self) -> int:
        return self.model.verification.max_sender_failures

    @property
    def unlock_code_minutes(self) -> int:
        return self.model.verification.unlock_code_minutes

    @property
    def unlock_code_attempts(self) -> int:
        return self.model.verification.unlock_code_attempts

    @property
    def unlock_codes(self) -> int:
        return self.model.verification.unlock_codes

    @property
    def evidence_limits(self) -> tuple[int, int]:
        return self.model.evidence.max_bytes, self.model.evidence.max_pixels


def _by_intent(table: Mapping[Intent, T], intent: str) -> T | None:
    """The entry for `intent`, given by its plain name (StrEnum keys hash and compare as strings)."""
    return cast("Mapping[str, T]", table).get(intent)

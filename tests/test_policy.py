"""The shipped policy: windows per market, thresholds per currency, service-hour arithmetic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bot.config import shipped_folder
from bot.policy import Policy


@pytest.fixture(scope="module")
def policy():
    return Policy.load(shipped_folder("dialogues") / "policy.yml")


@pytest.mark.parametrize(
    ("kind", "market", "days"),
    [("return_item", "DE", 14), ("return_item", "GB", 14), ("return_item", "NO", 14), ("return_item", "US", 7),
     ("return_item", "JP", 7), ("exchange_item", "FR", 15), ("damaged_item", "US", 30), ("repair", "CN", 30)],
)  # fmt: skip
def test_windows_follow_the_market(policy, kind, market, days):
    assert policy.window_days(kind, market) == days
    assert policy.window_closes(kind, market, date(2026, 11, 1)) == date(2026, 11, 1) + timedelta(days=days)


@pytest.mark.parametrize(
    ("total", "currency", "high"),
    [(500, "USD", False), (500.01, "USD", True), (75000, "JPY", False), (75001, "JPY", True),
     (3600, "CNY", True), (700001, "KRW", True), (2400, "BRL", False), (5000, "HKD", True), (100, "HKD", False)],
)  # fmt: skip
def test_high_value_thresholds_per_currency(policy, total, currency, high):
    assert policy.is_high_value(total, currency) is high


def test_sla_minutes_by_channel_and_region(policy):
    assert policy.sla_minutes("whatsapp", "DE") == 30
    assert policy.sla_minutes("telegram", "BR") == 30
    assert policy.sla_minutes("telegram", "JP") == 60
    assert policy.sla_minutes("console", "DE") == 60


def test_service_minutes_skip_nights_and_weekends(policy):
    hours = policy.service_hours
    friday_late = datetime(2026, 11, 20, 17, 50, tzinfo=hours.timezone)
    deadline = hours.add_service_minutes(friday_late, 30)
    assert deadline == datetime(2026, 11, 23, 9, 20, tzinfo=hours.timezone)  # Monday morning
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert not hours.is_open(saturday)
    assert hours.next_opening(saturday) == datetime(2026, 11, 23, 9, 0, tzinfo=hours.timezone)

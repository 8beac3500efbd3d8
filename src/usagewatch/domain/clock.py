"""Clocks. Every instant in usagewatch is an aware UTC datetime that comes from a Clock."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to: the test clock and the tests' fake clock."""

    def __init__(self, start: datetime) -> None:
        _require_utc(start)
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        _require_utc(instant)
        with self._lock:
            if instant < self._now:
                raise ValueError("the clock never moves backwards")
            self._now = instant

    def advance(self, seconds: float | int) -> datetime:
        with self._lock:
            self._now = self._now + timedelta(seconds=seconds)
            return self._now


def _require_utc(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() != timedelta(0):
        raise ValueError("instants are aware UTC datetimes")


def to_micros(instant: datetime) -> int:
    """UTC instant -> integer microseconds since the Unix epoch (the storage form)."""
    _require_utc(instant)
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def local_date(instant: datetime, timezone: str) -> date:
    """The account-local calendar date of an instant."""
    return instant.astimezone(ZoneInfo(timezone)).date()


def format_instant(instant: datetime) -> str:
    """RFC 3339 UTC with a Z; microseconds only when there are any."""
    text = instant.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def month_key(instant: datetime, timezone: str) -> str:
    """The account-local calendar month of an instant, 'YYYY-MM'."""
    return local_date(instant, timezone).isoformat()[:7]


def next_month_start(instant: datetime, timezone: str) -> datetime:
    """The UTC instant at which the account-local month after `instant`'s begins."""
    zone = ZoneInfo(timezone)
    local = instant.astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=zone).astimezone(UTC)


def week_start(day: date) -> date:
    """The Monday that begins `day`'s week (ISO 8601 weeks: Monday to Sunday)."""
    return day - timedelta(days=day.weekday())


def next_week_start(instant: datetime, timezone: str) -> datetime:
    """The UTC instant at which the account-local week after `instant`'s begins (Monday
    00:00 local)."""
    zone = ZoneInfo(timezone)
    monday = week_start(instant.astimezone(zone).date()) + timedelta(days=7)
    return datetime(monday.year, monday.month, monday.day, tzinfo=zone).astimezone(UTC)


def next_day_start(instant: datetime, timezone: str) -> datetime:
    """The UTC instant at which the account-local day after `instant`'s begins."""
    zone = ZoneInfo(timezone)
    following = instant.astimezone(zone).date() + timedelta(days=1)
    return datetime(following.year, following.month, following.day, tzinfo=zone).astimezone(UTC)

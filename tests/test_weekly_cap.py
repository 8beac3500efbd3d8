"""The weekly spending cap's pieces below HTTP (tests/test_limits.py drives it end to end):
account-local ISO weeks, the dry run's week carried in from before its first day, and
migration 0008 on both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from usagewatch.adapters.db import limits_store, migrate
from usagewatch.adapters.db.engine import Database
from usagewatch.domain.clock import ManualClock, next_week_start, week_start
from usagewatch.domain.limits import WEEKLY_CAP, Limits
from usagewatch.domain.money import Money
from usagewatch.domain.simulation import PastUsage, simulate
from usagewatch.service.accounts import AccountService


@pytest.mark.parametrize(
    ("day", "monday"),
    [
        (date(2026, 11, 30), date(2026, 11, 30)),  # a Monday is its own week's start
        (date(2026, 12, 6), date(2026, 11, 30)),  # Sunday: the last day of that week
        (date(2026, 12, 1), date(2026, 11, 30)),  # the week spans two months
        (date(2027, 1, 1), date(2026, 12, 28)),  # and two years
    ],
)
def test_weeks_begin_on_monday(day: date, monday: date) -> None:
    assert week_start(day) == monday


def test_the_next_week_begins_at_local_midnight_on_monday() -> None:
    sunday_late = datetime(2026, 12, 6, 18, 29, tzinfo=UTC)  # 23:59 IST on Sunday
    assert next_week_start(sunday_late, "Asia/Kolkata") == datetime(2026, 12, 6, 18, 30, tzinfo=UTC)
    # 00:30 IST on Monday is already in the new week: the next one is 7 days on
    monday = datetime(2026, 12, 6, 19, 0, tzinfo=UTC)
    assert next_week_start(monday, "Asia/Kolkata") == datetime(2026, 12, 13, 18, 30, tzinfo=UTC)
    # a time zone west of UTC: Monday 00:00 in New York is 05:00 UTC in winter
    assert next_week_start(datetime(2026, 12, 7, 3, 0, tzinfo=UTC), "America/New_York") == (
        datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    )


def _sms(day: int, hour: int) -> PastUsage:
    at = datetime(2026, 12, day, hour, tzinfo=UTC)
    return PastUsage(at, "sms", True, 200_000, 0, 0)


def test_the_dry_run_starts_a_week_from_what_it_had_spent_before_the_first_day() -> None:
    """Dates from Wednesday 2026-12-02: the week began on Monday, whose spend is given."""
    dates = ["2026-12-02", "2026-12-03", "2026-12-07"]
    usage = [_sms(2, 9), _sms(2, 10), _sms(3, 9), _sms(7, 9)]
    result = simulate(
        usage,
        Limits(enabled=True, weekly_cap=Money.parse("1.00")),
        60,
        {"2026-12": 600_000},
        dates,
        {"2026-11-30": 600_000},  # 0.60 spent on Monday and Tuesday
    )
    wednesday, thursday, monday = (result.days[d] for d in dates)
    # 0.60 + 0.20 + 0.20 = 1.00: the second SMS uses the week's room up and pauses it
    assert (wednesday.simulated_micros, wednesday.pause_reason) == (400_000, WEEKLY_CAP)
    assert (thursday.simulated_micros, thursday.blocked_messages) == (0, 1)
    assert (monday.simulated_micros, monday.pause_reason) == (200_000, None)  # a new week


def test_migration_0008_keeps_the_limits_and_adds_an_empty_weekly_cap(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        accounts = AccountService(db, ManualClock(datetime(2026, 11, 28, tzinfo=UTC)), "x" * 32)
        accounts.create_account("Sandbox", "sandbox", sandbox=True)
        migrate.downgrade(db, "0007")
        with db.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("spending_limits")}
        assert "weekly_cap_micros" not in columns
        migrate.upgrade(db)
        with db.engine.begin() as conn:
            row = limits_store.read_limits(conn, "sandbox")
        assert row is not None
        assert row.limits == Limits.sandbox()  # weekly_cap None, the rest as it was
        assert row.weekly_paused_until_us is None
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE spending_limits SET weekly_cap_micros = -1 WHERE account_id = 'sandbox'"
            )
    finally:
        db.dispose()

"""Reports over the monthly and per-day-and-service rollups give exactly what a recomputation
from the usage records gives, for periods of whole and partial months, in several time zones;
verify catches a tampered row of each rollup table; migration 0007 backfills them; the
migrated schema is the one schema.py declares."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from usagewatch.adapters.db import migrate
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import (
    metadata,
    usage_records,
    usage_rollups_day_service,
    usage_rollups_monthly,
)
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.accounts import AccountService
from usagewatch.service.reports import Period
from usagewatch.service.verify import verify

ZONES = {"kol": "Asia/Kolkata", "la": "America/Los_Angeles", "kir": "Pacific/Kiritimati"}
CONSUMERS = ["app-a", "app-b", "crm", None]
CAMPAIGNS = ["diwali", None, None]


@pytest.mark.parametrize(
    ("first", "last", "months", "days"),
    [
        ("2026-03-01", "2026-03-31", ("2026-03", "2026-03"), []),
        ("2026-03-01", "2026-03-30", None, [("2026-03-01", "2026-03-30")]),
        ("2026-03-02", "2026-03-31", None, [("2026-03-02", "2026-03-31")]),
        ("2026-03-31", "2026-04-01", None, [("2026-03-31", "2026-03-31"),
                                            ("2026-04-01", "2026-04-01")]),
        ("2026-03-02", "2026-04-29", None, [("2026-03-02", "2026-03-31"),
                                            ("2026-04-01", "2026-04-29")]),
        ("2026-03-02", "2026-04-30", ("2026-04", "2026-04"), [("2026-03-02", "2026-03-31")]),
        ("2026-03-15", "2026-05-15", ("2026-04", "2026-04"),
         [("2026-03-15", "2026-03-31"), ("2026-05-01", "2026-05-15")]),
        ("2025-11-28", "2026-11-28", ("2025-12", "2026-10"),
         [("2025-11-28", "2025-11-30"), ("2026-11-01", "2026-11-28")]),
        ("2024-02-01", "2024-02-29", ("2024-02", "2024-02"), []),
        ("2025-12-01", "2026-01-31", ("2025-12", "2026-01"), []),
        ("2025-12-31", "2026-12-01", ("2026-01", "2026-11"),
         [("2025-12-31", "2025-12-31"), ("2026-12-01", "2026-12-01")]),
    ],
)  # fmt: skip
def test_a_period_splits_into_whole_months_and_the_days_outside_them(
    first: str, last: str, months: tuple[str, str] | None, days: list[tuple[str, str]]
) -> None:
    period = Period(date.fromisoformat(first), date.fromisoformat(last))
    got_months, got_days = period.split()
    assert got_months == months
    assert [(p.first.isoformat(), p.last.isoformat()) for p in got_days] == days


def _usage(container: Container, clock: ManualClock, seed: int) -> None:
    """Three accounts in three time zones, 14 months of usage through every rollup writer:
    batches (many instants around local midnights), single SMS and WhatsApp charges,
    delivery reports, and calls that end."""
    rng = random.Random(seed)
    for account_id, zone in ZONES.items():
        container.accounts.create_account(account_id, account_id, timezone=zone)
        container.ledger.add_credit(account_id, LotKind.PAID, Money.parse("1000000.00"))
    n = 0
    for _ in range(14):
        clock.advance(rng.randint(27, 33) * 86_400 + rng.randint(0, 86_399))
        now = clock.now()
        for account_id in ZONES:
            events: list[dict[str, Any]] = []
            for _ in range(40):
                n += 1
                # a random instant of the last 35 days, often within an hour of 00:00 UTC
                at = now - timedelta(days=rng.randint(0, 35), seconds=rng.randint(0, 3600))
                if rng.random() < 0.5:
                    at = at.replace(hour=rng.choice([0, 23, 10, 13]))
                at = min(at, now)
                common: dict[str, Any] = {"occurred_at": at.isoformat().replace("+00:00", "Z")}
                if consumer := rng.choice(CONSUMERS):
                    common["consumer"] = consumer
                if campaign := rng.choice(CAMPAIGNS):
                    common["campaign_id"] = campaign
                kind = rng.choice(["call", "sms", "whatsapp"])
                if kind == "call":
                    events.append({"kind": "call", "call_sid": f"B{n}", "status": "completed",
                                   "direction": rng.choice(["outbound", "inbound"]),
                                   "duration_seconds": rng.randint(0, 900), **common})  # fmt: skip
                elif kind == "sms":
                    events.append({"kind": "sms", "sms_sid": f"B{n}", "to": "+919800000001",
                                   "type": rng.choice(["transactional", "promotional"]),
                                   "units": rng.randint(1, 3), **common})  # fmt: skip
                else:
                    events.append({"kind": "whatsapp", "conversation_id": f"B{n}",
                                   "category": rng.choice(["marketing", "utility"]),
                                   **common})  # fmt: skip
            results = container.batch.ingest(account_id, events)
            assert all(r.status == "applied" for r in results), results
            for i in range(3):  # charged now, one record at a time
                consumer, campaign = rng.choice(CONSUMERS), rng.choice(CAMPAIGNS)
                sid = f"S{n}-{i}"
                container.usage.charge_sms(
                    account_id, sid, "transactional", to="+919800000002", units=1,
                    consumer=consumer, campaign_id=campaign,
                )  # fmt: skip
                if i:
                    container.usage.sms_status(account_id, sid, "delivered")
                container.usage.charge_whatsapp(
                    account_id, f"W{n}-{i}", "utility", consumer=consumer, campaign_id=campaign
                )
                call = f"C{n}-{i}"
                container.calls.authorize(account_id, call, "outbound", to="+919800000003",
                                          consumer=consumer, campaign_id=campaign)  # fmt: skip
                if i != 2:  # one stays in progress: not in any rollup
                    container.calls.end(account_id, call, "completed", rng.randint(1, 300))


def _expected(conn: sa.Connection, account_id: str, period: Period) -> dict[str, Any]:
    """Every report's figures recomputed from the usage records."""
    u = usage_records.c
    rows = conn.execute(
        sa.select(u.local_date, u.service, u.sub_type, u.consumer, u.quantity,
                  u.duration_seconds, u.price_micros, u.status)
        .where(u.account_id == account_id, u.status != "in-progress",
               u.local_date >= period.first.isoformat(), u.local_date <= period.last.isoformat())
    ).all()  # fmt: skip
    daily: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    by_sub_type: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    consumers: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for day, service, sub_type, consumer, quantity, seconds, price, status in rows:
        for sums, values in (
            (daily[(day, service)], (1, quantity, price)),
            (by_sub_type[(service, sub_type)],
             (1, quantity, seconds or 0, price, int(status == "delivered"))),
        ):  # fmt: skip
            for i, value in enumerate(values):
                sums[i] += value
        if consumer:
            consumers[consumer][0] += 1
            consumers[consumer][1] += price
    return {
        "daily": sorted((day, svc, *sums) for (day, svc), sums in daily.items()),
        "by_sub_type": dict(by_sub_type),
        "top": sorted(((c, *s) for c, s in consumers.items()), key=lambda t: (-t[2], t[0])),
    }


def _periods(today: date) -> list[Period]:
    start = today.replace(day=1) - timedelta(days=400)
    rng = random.Random(7)
    periods = [
        Period(today - timedelta(days=365), today),  # a year to today
        Period(today.replace(day=1), today),  # this month so far
        Period(date(today.year - 1, today.month, 1), today.replace(day=1) - timedelta(days=1)),
        Period(today - timedelta(days=45), today - timedelta(days=44)),  # two days
    ]
    for _ in range(8):
        first = start + timedelta(days=rng.randint(0, 380))
        periods.append(Period(first, first + timedelta(days=rng.randint(0, 365))))
    return periods


def test_reports_equal_a_recomputation_from_the_records(
    container: Container, clock: ManualClock
) -> None:
    _usage(container, clock, seed=6)
    reports = container.reports
    assert verify(container.db) == []
    for account_id, zone in ZONES.items():
        today = clock.now().astimezone(ZoneInfo(zone)).date()
        for period in _periods(today):
            with container.db.read() as conn:
                expected = _expected(conn, account_id, period)
            daily = reports.daily(account_id, period, None)
            assert [(r.date, r.service, r.records, r.quantity, r.cost_micros) for r in daily] == (
                expected["daily"]
            ), (account_id, period)
            sms_only = reports.daily(account_id, period, "sms")
            assert [(r.date, r.records) for r in sms_only] == [
                (row[0], row[2]) for row in expected["daily"] if row[1] == "sms"
            ]
            top = reports.top_consumers(account_id, period, 100)
            assert [(c.consumer, c.records, c.cost_micros) for c in top] == expected["top"]
            assert [c.consumer for c in reports.top_consumers(account_id, period, 2)] == [
                row[0] for row in expected["top"][:2]
            ]
            got = reports.services(account_id, period)
            want = expected["by_sub_type"]

            def total(service: str, index: int, sub_types: tuple[str, ...] | None = None) -> int:
                return sum(
                    sums[index]
                    for (svc, sub_type), sums in want.items()  # noqa: B023
                    if svc == service and (sub_types is None or sub_type in sub_types)
                )

            assert (got.voice_calls, got.voice_pulses, got.voice_duration_seconds) == (
                total("voice", 0), total("voice", 1), total("voice", 2)
            )  # fmt: skip
            assert got.voice_cost_micros == total("voice", 3)
            assert got.voice_by_direction["inbound"].cost_micros == total("voice", 3, ("inbound",))
            assert (got.sms_messages, got.sms_units, got.sms_delivered, got.sms_cost_micros) == (
                total("sms", 0), total("sms", 1), total("sms", 4), total("sms", 3)
            )  # fmt: skip
            assert got.sms_by_type["promotional"].records == total("sms", 0, ("promotional",))
            assert got.whatsapp_by_category["utility"].cost_micros == total(
                "whatsapp", 3, ("utility",)
            )
            assert got.total_cost_micros == sum(sums[3] for sums in want.values())
        trend = reports.trend(account_id, 12)
        with container.db.read() as conn:
            u = usage_records.c
            month = sa.func.substr(u.local_date, 1, 7)  # one object: PostgreSQL matches it
            by_month = dict(
                conn.execute(
                    sa.select(month, sa.func.sum(u.price_micros))
                    .where(u.account_id == account_id, u.status != "in-progress")
                    .group_by(month)
                ).all()
            )
        assert [(t.month, t.cost_micros) for t in trend] == [
            (t.month, int(by_month.get(t.month, 0))) for t in trend
        ]
        assert sum(t.cost_micros for t in trend) > 0


@pytest.mark.parametrize(
    ("table", "label"),
    [(usage_rollups_monthly, "monthly rollup"), (usage_rollups_day_service, "day-and-service")],
)
def test_verify_catches_a_tampered_or_missing_coarse_rollup(
    container: Container, clock: ManualClock, table: sa.Table, label: str
) -> None:
    container.accounts.create_account("acme", "acme")
    container.ledger.add_credit("acme", LotKind.PAID, Money.parse("100.00"))
    container.usage.charge_sms(
        "acme", "S1", "transactional", to="+919800000001", units=1, consumer="crm"
    )
    container.usage.sms_status("acme", "S1", "delivered")
    assert verify(container.db) == []
    with container.db.engine.begin() as conn:
        conn.execute(sa.update(table).values(delivered=0))
    (problem,) = verify(container.db)
    assert label in problem and "acme" in problem
    with container.db.engine.begin() as conn:
        conn.execute(sa.delete(table))
    (problem,) = verify(container.db)
    assert label in problem and "(0, 0, 0, 0, 0) but usage records say (1, 1, 0," in problem


def test_migration_0007_backfills_from_the_daily_rollups(database_url: str) -> None:
    """Back to 0004, daily rollups written as they were then, up again: 0007 derives the
    monthly and per-day-and-service rows from them."""
    db = Database(database_url)
    try:
        AccountService(
            db, ManualClock(datetime(2026, 11, 28, tzinfo=UTC)), "x" * 32
        ).create_account("Acme", "acme")
        migrate.downgrade(db, "0004")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO usage_rollups (account_id, local_date, service, sub_type, consumer,"
                " campaign_id, records, quantity, duration_seconds, cost_micros, delivered)"
                " VALUES ('acme', '2026-10-31', 'sms', 'transactional', 'crm', '', 2, 3, 0,"
                " 400000, 1), ('acme', '2026-11-01', 'sms', 'transactional', 'crm', '', 1, 1,"
                " 0, 200000, 1), ('acme', '2026-11-02', 'sms', 'transactional', 'crm', '', 4,"
                " 4, 0, 800000, 0), ('acme', '2026-11-02', 'sms', 'promotional', '', 'x', 1,"
                " 1, 0, 250000, 0)"
            )
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            monthly = sorted(conn.execute(sa.select(usage_rollups_monthly)).all())
            by_day = sorted(conn.execute(sa.select(usage_rollups_day_service)).all())
        assert [tuple(row) for row in monthly] == [
            ("acme", "2026-10", "sms", "transactional", "crm", "", 2, 3, 0, 400000, 1),
            ("acme", "2026-11", "sms", "promotional", "", "x", 1, 1, 0, 250000, 0),
            ("acme", "2026-11", "sms", "transactional", "crm", "", 5, 5, 0, 1000000, 1),
        ]
        assert [tuple(row) for row in by_day] == [
            ("acme", "2026-10-31", "sms", 2, 3, 0, 400000, 1),
            ("acme", "2026-11-01", "sms", 1, 1, 0, 200000, 1),
            ("acme", "2026-11-02", "sms", 5, 5, 0, 1050000, 0),
        ]
    finally:
        db.dispose()


def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        db.dispose()

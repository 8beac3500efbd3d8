"""Usage reports, read from the rollups (never the raw records), in the account's time zone
and currency: daily usage per service, the per-service breakdown of the brief's "Usage by
Service Type" table, top consumers and the month-over-month trend.

Which rollups: the daily chart, the trend and export row counts read the per-day-and-service
rollups (a row per day and service); the breakdown and top consumers compose the period from
whole months (monthly rollups) and the days of its partial first and last months (daily
rollups), so a year reads about 13 months' rows instead of 365 days'.

Periods are account-local calendar dates, both inclusive. Ratios (average duration, delivery
rate, change in percent) are exact decimals rounded half-even to 2 places; money stays in
integer micro-units until the API formats it.
"""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import (
    SERVICES,
    accounts,
    subscriptions,
    usage_rollups,
    usage_rollups_day_service,
    usage_rollups_monthly,
)
from usagewatch.domain.clock import Clock, local_date, to_micros
from usagewatch.domain.errors import Invalid, NotFound

RANGE_DAYS_MAX = 366  # one period may span at most this many days (a leap year)
TREND_MONTHS_MAX = 24
TOP_CONSUMERS_MAX = 100
SMS_TYPES = ("transactional", "promotional", "service")
WHATSAPP_CATEGORIES = ("marketing", "utility", "authentication", "service")
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Period:
    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[str]:
        return [(self.first + timedelta(days=i)).isoformat() for i in range(self.days)]

    def split(self) -> tuple[tuple[str, str] | None, list[Period]]:
        """The period as its whole calendar months ('YYYY-MM' first and last, or None) and
        the rest as at most two periods, each inside one month (the partial first and last
        months)."""
        start = self.first if self.first.day == 1 else _next_month(self.first)
        after = self.last + timedelta(days=1)
        end = after if after.day == 1 else after.replace(day=1)  # exclusive
        if start >= end:  # no whole month: part of one month, or the ends of two
            if self.first.replace(day=1) == self.last.replace(day=1):
                return None, [self]
            last_month = self.last.replace(day=1)
            return None, [
                Period(self.first, last_month - timedelta(days=1)),
                Period(last_month, self.last),
            ]
        days = []
        if self.first < start:
            days.append(Period(self.first, start - timedelta(days=1)))
        if end <= self.last:
            days.append(Period(end, self.last))
        return (start.isoformat()[:7], (end - timedelta(days=1)).isoformat()[:7]), days


def parse_date(value: str | None, field_name: str) -> date:
    if value is None:
        raise Invalid("missing_field", f"{field_name} is required (YYYY-MM-DD)", field_name)
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(
            "invalid_date", f"{field_name} is a date like 2026-11-28", field_name
        ) from None


def parse_period(first: str | None, last: str | None) -> Period:
    """`from` and `to`, both inclusive; from <= to; at most RANGE_DAYS_MAX days."""
    period = Period(parse_date(first, "from"), parse_date(last, "to"))
    if period.first > period.last:
        raise Invalid("invalid_date_range", "from is after to", "from")
    if period.days > RANGE_DAYS_MAX:
        raise Invalid("date_range_too_long", f"a period spans at most {RANGE_DAYS_MAX} days", "to")
    return period


def parse_service(value: str | None) -> str | None:
    if value is None or value in ("", "all"):
        return None
    if value not in SERVICES:
        raise Invalid("invalid_service", f"service is one of {', '.join(SERVICES)}", "service")
    return value


def ratio(numerator: int, denominator: int, scale: int = 1) -> str | None:
    """numerator * scale / denominator as an exact decimal rounded half-even to 2 places."""
    if denominator == 0:
        return None
    value = Decimal(numerator * scale) / Decimal(denominator)
    return str(value.quantize(_CENT, rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True, slots=True)
class DailyRow:
    date: str
    service: str
    records: int
    quantity: int
    cost_micros: int


@dataclass(frozen=True, slots=True)
class Counted:
    records: int = 0
    quantity: int = 0
    cost_micros: int = 0


@dataclass(frozen=True, slots=True)
class ServiceBreakdown:
    """The brief's "Usage by Service Type", one group of metrics per service."""

    voice_calls: int
    voice_pulses: int
    voice_cost_micros: int
    voice_duration_seconds: int
    voice_by_direction: dict[str, Counted]
    sms_messages: int
    sms_units: int
    sms_cost_micros: int
    sms_delivered: int
    sms_by_type: dict[str, Counted]
    numbers_active: int
    numbers_rental_cost_micros: int
    whatsapp_conversations: int
    whatsapp_cost_micros: int
    whatsapp_by_category: dict[str, Counted]
    agents_active: int
    agent_seconds: int
    seat_cost_micros: int

    @property
    def voice_average_duration_seconds(self) -> str | None:
        return ratio(self.voice_duration_seconds, self.voice_calls)

    @property
    def sms_delivery_rate_percent(self) -> str | None:
        return ratio(self.sms_delivered, self.sms_messages, 100)

    @property
    def agent_hours(self) -> str:
        return ratio(self.agent_seconds, 3600) or "0.00"

    @property
    def total_cost_micros(self) -> int:
        return (
            self.voice_cost_micros
            + self.sms_cost_micros
            + self.numbers_rental_cost_micros
            + self.whatsapp_cost_micros
            + self.seat_cost_micros
        )


@dataclass(frozen=True, slots=True)
class ConsumerRow:
    consumer: str
    records: int
    cost_micros: int
    services: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TrendRow:
    month: str
    cost_micros: int
    change_percent: str | None  # against the month before; None when that month cost 0
    through: str  # the last local date counted: the month's last day, or today
    month_to_date: bool = False  # the current month, so far
    # The month to date against the same days of the month before (1 to `through`'s day,
    # or to that month's end when it is shorter); None for whole months, or when those
    # days cost nothing.
    change_percent_same_days: str | None = None


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: str
    name: str
    currency: str
    timezone: str


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


d, mo, ds = usage_rollups.c, usage_rollups_monthly.c, usage_rollups_day_service.c
_daily = (
    sa.select(ds.local_date, ds.service, ds.records, ds.quantity, ds.cost_micros)
    .where(
        ds.account_id == sa.bindparam("account"),
        ds.local_date >= sa.bindparam("first"),
        ds.local_date <= sa.bindparam("last"),
    )
    .order_by(ds.local_date, ds.service)
)
_monthly = (
    sa.select(sa.func.substr(ds.local_date, 1, 7).label("month"), sa.func.sum(ds.cost_micros))
    .where(
        ds.account_id == sa.bindparam("account"),
        ds.local_date >= sa.bindparam("first"),
        ds.local_date <= sa.bindparam("last"),
    )
    .group_by("month")
)
_period_cost = sa.select(sa.func.coalesce(sa.func.sum(ds.cost_micros), 0)).where(
    ds.account_id == sa.bindparam("account"),
    ds.local_date >= sa.bindparam("first"),
    ds.local_date <= sa.bindparam("last"),
)
_SUM_NAMES = ("records", "quantity", "duration_seconds", "cost_micros", "delivered")


def _rollup_rows(account_id: str, period: Period, *names: str) -> sa.Subquery:
    """Rollup rows (columns `names` and the five sums, some negated) whose sums over any of
    `names` equal the sums of the period's daily rollup rows: monthly rows for its whole
    months; for a partial month, its daily rows, or when it covers more than half the month,
    the month's monthly rows less the daily rows of the days it leaves out. So a period
    reads at most about a month's daily rows in all, and a year to today a few days'.
    A group of the result with records 0 had no usage in the period."""
    months, partial = period.split()
    parts: list[sa.Select] = []  # type: ignore[type-arg]

    def days(first: date, last: date, sign: int) -> None:
        if first <= last:
            sums = (d[n] if sign > 0 else (-d[n]).label(n) for n in _SUM_NAMES)
            parts.append(
                sa.select(*(d[n] for n in names), *sums).where(
                    d.account_id == account_id,
                    d.local_date >= first.isoformat(),
                    d.local_date <= last.isoformat(),
                )
            )

    def whole(first_month: str, last_month: str) -> None:
        parts.append(
            sa.select(*(mo[n] for n in names + _SUM_NAMES)).where(
                mo.account_id == account_id, mo.month >= first_month, mo.month <= last_month
            )
        )

    if months is not None:
        whole(*months)
    for piece in partial:
        month_first = piece.first.replace(day=1)
        month_last = _next_month(month_first) - timedelta(days=1)
        if 2 * piece.days <= month_last.day:
            days(piece.first, piece.last, +1)
        else:
            month = month_first.isoformat()[:7]
            whole(month, month)
            days(month_first, piece.first - timedelta(days=1), -1)
            days(piece.last + timedelta(days=1), month_last, -1)
    return (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("rollups")


class ReportService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def account(self, conn: Connection, account_id: str) -> AccountInfo:
        return account_info(conn, account_id)

    # -- daily ------------------------------------------------------------------------
    def daily(self, account_id: str, period: Period, service: str | None) -> list[DailyRow]:
        with self.db.read() as conn:
            self.account(conn, account_id)
            return daily_rows(conn, account_id, period, service)

    # -- per service ------------------------------------------------------------------
    def services(self, account_id: str, period: Period) -> ServiceBreakdown:
        with self.db.read() as conn:
            info = self.account(conn, account_id)
            return breakdown(conn, info, period)

    # -- top consumers ----------------------------------------------------------------
    def top_consumers(self, account_id: str, period: Period, limit: int) -> list[ConsumerRow]:
        if not 1 <= limit <= TOP_CONSUMERS_MAX:
            raise Invalid("invalid_limit", f"limit is 1 to {TOP_CONSUMERS_MAX}", "limit")
        with self.db.read() as conn:
            self.account(conn, account_id)
            return top_consumers(conn, account_id, period, limit)

    # -- trend ------------------------------------------------------------------------
    def trend(self, account_id: str, months: int) -> list[TrendRow]:
        """The last `months` account-local calendar months, the current one included (so
        far), oldest first, each with its change against the month before."""
        if not 1 <= months <= TREND_MONTHS_MAX:
            raise Invalid("invalid_months", f"months is 1 to {TREND_MONTHS_MAX}", "months")
        with self.db.read() as conn:
            info = self.account(conn, account_id)
            today = local_date(self.clock.now(), info.timezone)
            keys = _months_back(today, months + 1)  # one more, for the first change
            first = date.fromisoformat(keys[0] + "-01")
            totals = {
                month: int(cost)
                for month, cost in conn.execute(
                    _monthly,
                    {"account": account_id, "first": first.isoformat(), "last": today.isoformat()},
                )
            }
            # the same days of the month before the current one, for a like-for-like change
            before = date.fromisoformat(keys[-2] + "-01")
            same_days_end = before.replace(day=min(today.day, _month_days(before)))
            same_days = int(
                conn.execute(
                    _period_cost,
                    {
                        "account": account_id,
                        "first": before.isoformat(),
                        "last": same_days_end.isoformat(),
                    },
                ).scalar_one()
            )
        rows: list[TrendRow] = []
        for before_key, month in itertools.pairwise(keys):
            cost, prior = totals.get(month, 0), totals.get(before_key, 0)
            if month == keys[-1]:
                rows.append(
                    TrendRow(
                        month,
                        cost,
                        ratio(cost - prior, prior, 100),
                        today.isoformat(),
                        month_to_date=True,
                        change_percent_same_days=ratio(cost - same_days, same_days, 100),
                    )
                )
            else:
                first_day = date.fromisoformat(month + "-01")
                last_day = first_day.replace(day=_month_days(first_day))
                rows.append(
                    TrendRow(month, cost, ratio(cost - prior, prior, 100), last_day.isoformat())
                )
        return rows


def account_info(conn: Connection, account_id: str) -> AccountInfo:
    a = accounts.c
    row = conn.execute(
        sa.select(a.name, a.currency, a.timezone).where(a.id == account_id)
    ).one_or_none()
    if row is None:
        raise NotFound("account_not_found", f"no account {account_id!r}")
    return AccountInfo(account_id, row.name, row.currency, row.timezone)


def daily_rows(
    conn: Connection, account_id: str, period: Period, service: str | None
) -> list[DailyRow]:
    query = _daily if service is None else _daily.where(ds.service == service)
    params = {
        "account": account_id,
        "first": period.first.isoformat(),
        "last": period.last.isoformat(),
    }
    return [
        DailyRow(day, svc, int(records), int(quantity), int(cost))
        for day, svc, records, quantity, cost in conn.execute(query, params)
    ]


def top_consumers(
    conn: Connection, account_id: str, period: Period, limit: int
) -> list[ConsumerRow]:
    rows = _rollup_rows(account_id, period, "consumer").c
    query = (
        sa.select(
            rows.consumer, sa.func.sum(rows.records), sa.func.sum(rows.cost_micros).label("cost")
        )
        .where(rows.consumer != "")
        .group_by(rows.consumer)
        .having(sa.func.sum(rows.records) > 0)
        .order_by(sa.desc("cost"), rows.consumer)
        .limit(limit)
    )
    return [
        ConsumerRow(consumer, int(records), int(cost))
        for consumer, records, cost in conn.execute(query)
    ]


def breakdown(conn: Connection, info: AccountInfo, period: Period) -> ServiceBreakdown:
    rows = _rollup_rows(info.id, period, "service", "sub_type").c
    by_sub_type = (
        sa.select(rows.service, rows.sub_type, *(sa.func.sum(rows[n]) for n in _SUM_NAMES))
        .group_by(rows.service, rows.sub_type)
        .having(sa.func.sum(rows.records) > 0)
    )
    # (records, quantity, duration_seconds, cost_micros, delivered) per (service, sub_type)
    sums: dict[tuple[str, str], tuple[int, ...]] = {
        (service, sub_type): tuple(int(v) for v in values)
        for service, sub_type, *values in conn.execute(by_sub_type)
    }

    def of(service: str, sub_types: tuple[str, ...] | None = None) -> tuple[int, ...]:
        """(records, quantity, seconds, cost, delivered) over the service's sub-types."""
        total = [0, 0, 0, 0, 0]
        for (svc, sub_type), values in sums.items():
            if svc == service and (sub_types is None or sub_type in sub_types):
                total = [a + b for a, b in zip(total, values, strict=True)]
        return tuple(total)

    def counted(service: str, sub_types: tuple[str, ...]) -> dict[str, Counted]:
        out = {}
        for sub_type in sub_types:
            records, quantity, _, cost, _ = of(service, (sub_type,))
            out[sub_type] = Counted(records, quantity, cost)
        return out

    voice, sms, whatsapp = of("voice"), of("sms"), of("whatsapp")
    numbers, seats, sessions = (
        of("number"),
        of("agent_seat", ("monthly",)),
        of("agent_seat", ("session",)),
    )
    return ServiceBreakdown(
        voice_calls=voice[0],
        voice_pulses=voice[1],
        voice_cost_micros=voice[3],
        voice_duration_seconds=voice[2],
        voice_by_direction=counted("voice", ("outbound", "inbound")),
        sms_messages=sms[0],
        sms_units=sms[1],
        sms_cost_micros=sms[3],
        sms_delivered=sms[4],
        sms_by_type=counted("sms", SMS_TYPES),
        numbers_active=_active(conn, info, period, "number"),
        numbers_rental_cost_micros=numbers[3],
        whatsapp_conversations=whatsapp[0],
        whatsapp_cost_micros=whatsapp[3],
        whatsapp_by_category=counted("whatsapp", WHATSAPP_CATEGORIES),
        agents_active=_active(conn, info, period, "agent_seat"),
        agent_seconds=sessions[2],
        seat_cost_micros=seats[3],
    )


def period_bounds_us(period: Period, timezone: str) -> tuple[int, int]:
    """The period as UTC instants [start, end) in microseconds."""
    zone = ZoneInfo(timezone)
    start = datetime(period.first.year, period.first.month, period.first.day, tzinfo=zone)
    after = period.last + timedelta(days=1)
    end = datetime(after.year, after.month, after.day, tzinfo=zone)
    return to_micros(start.astimezone(UTC)), to_micros(end.astimezone(UTC))


def _active(conn: Connection, info: AccountInfo, period: Period, kind: str) -> int:
    """Subscriptions (numbers or seats) active at any moment of the period."""
    start_us, end_us = period_bounds_us(period, info.timezone)
    s = subscriptions.c
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                s.account_id == info.id,
                s.kind == kind,
                s.started_at_us < end_us,
                sa.or_(s.ended_at_us.is_(None), s.ended_at_us > start_us),
            )
        ).scalar_one()
    )


def _month_days(first: date) -> int:
    return calendar.monthrange(first.year, first.month)[1]


def _months_back(today: date, count: int) -> list[str]:
    """`count` month keys ending with today's month, oldest first."""
    year, month = today.year, today.month
    keys: list[str] = []
    for _ in range(count):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return keys[::-1]

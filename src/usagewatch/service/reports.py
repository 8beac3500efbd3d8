"""Usage reports, read from the daily rollups (never the raw records), in the account's time
zone and currency: daily usage per service, the per-service breakdown of the brief's "Usage
by Service Type" table, top consumers and the month-over-month trend.

Periods are account-local calendar dates, both inclusive. Ratios (average duration, delivery
rate, change in percent) are exact decimals rounded half-even to 2 places; money stays in
integer micro-units until the API formats it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import SERVICES, accounts, subscriptions, usage_rollups
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


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: str
    name: str
    currency: str
    timezone: str


r = usage_rollups.c
_in_period = sa.and_(
    r.account_id == sa.bindparam("account"),
    r.local_date >= sa.bindparam("first"),
    r.local_date <= sa.bindparam("last"),
)
_daily = (
    sa.select(
        r.local_date,
        r.service,
        sa.func.sum(r.records),
        sa.func.sum(r.quantity),
        sa.func.sum(r.cost_micros),
    )
    .where(_in_period)
    .group_by(r.local_date, r.service)
    .order_by(r.local_date, r.service)
)
_by_sub_type = (
    sa.select(
        r.service,
        r.sub_type,
        sa.func.sum(r.records),
        sa.func.sum(r.quantity),
        sa.func.sum(r.duration_seconds),
        sa.func.sum(r.cost_micros),
        sa.func.sum(r.delivered),
    )
    .where(_in_period)
    .group_by(r.service, r.sub_type)
)
_top = (
    sa.select(r.consumer, sa.func.sum(r.records), sa.func.sum(r.cost_micros).label("cost"))
    .where(_in_period, r.consumer != "")
    .group_by(r.consumer)
    .order_by(sa.desc("cost"), r.consumer)
    .limit(sa.bindparam("limit"))
)
_monthly = (
    sa.select(sa.func.substr(r.local_date, 1, 7).label("month"), sa.func.sum(r.cost_micros))
    .where(_in_period)
    .group_by("month")
)


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
        rows: list[TrendRow] = []
        for before, month in itertools.pairwise(keys):
            cost, prior = totals.get(month, 0), totals.get(before, 0)
            rows.append(TrendRow(month, cost, ratio(cost - prior, prior, 100)))
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
    query = _daily if service is None else _daily.where(r.service == service)
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
    params = {
        "account": account_id,
        "first": period.first.isoformat(),
        "last": period.last.isoformat(),
        "limit": limit,
    }
    return [
        ConsumerRow(consumer, int(records), int(cost))
        for consumer, records, cost in conn.execute(_top, params)
    ]


def breakdown(conn: Connection, info: AccountInfo, period: Period) -> ServiceBreakdown:
    params = {
        "account": info.id,
        "first": period.first.isoformat(),
        "last": period.last.isoformat(),
    }
    sums: dict[tuple[str, str], tuple[int, ...]] = {
        (service, sub_type): tuple(int(v) for v in values)
        for service, sub_type, *values in conn.execute(_by_sub_type, params)
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


def _months_back(today: date, count: int) -> list[str]:
    """`count` month keys ending with today's month, oldest first."""
    year, month = today.year, today.month
    keys: list[str] = []
    for _ in range(count):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return keys[::-1]


def totals_by_service(rows: list[DailyRow]) -> dict[str, Counted]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        sums = out[row.service]
        sums[0] += row.records
        sums[1] += row.quantity
        sums[2] += row.cost_micros
    return {svc: Counted(*out[svc]) for svc in SERVICES if svc in out}

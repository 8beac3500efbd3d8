"""Storage of spending limits, campaign budgets and notification events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db import store
from usagewatch.adapters.db.config_cache import cache_for
from usagewatch.adapters.db.prepared import Prepared
from usagewatch.adapters.db.schema import (
    accounts,
    campaigns,
    daily_charges,
    holds,
    notifications,
    spending_limits,
    usage_records,
)
from usagewatch.domain.limits import CampaignFacts, Limits
from usagewatch.domain.money import Money


# -- spending limits ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LimitsRow:
    limits: Limits
    daily_paused_until_us: int | None
    weekly_paused_until_us: int | None
    monthly_paused_until_us: int | None
    updated_at_us: int

    def paused_until(self) -> tuple[tuple[str, int | None], ...]:
        """(column, paused until) of each cap's pause."""
        return (
            ("daily_paused_until_us", self.daily_paused_until_us),
            ("weekly_paused_until_us", self.weekly_paused_until_us),
            ("monthly_paused_until_us", self.monthly_paused_until_us),
        )


def _money(micros: int | None) -> Money | None:
    return Money(micros) if micros is not None else None


def _micros(amount: Money | None) -> int | None:
    return amount.micros if amount is not None else None


_read_limits = sa.select(
    spending_limits.c.enabled,
    spending_limits.c.daily_cap_micros,
    spending_limits.c.monthly_cap_micros,
    spending_limits.c.per_call_max_duration_seconds,
    spending_limits.c.per_call_max_cost_micros,
    spending_limits.c.daily_paused_until_us,
    spending_limits.c.monthly_paused_until_us,
    spending_limits.c.updated_at_us,
    spending_limits.c.weekly_cap_micros,
    spending_limits.c.weekly_paused_until_us,
).where(spending_limits.c.account_id == sa.bindparam("account"))
_LIMITS_WIDTH = len(_read_limits.selected_columns)


def _limits_row(row: Sequence[Any]) -> LimitsRow:
    """A LimitsRow from the values of `_read_limits`'s columns, in order."""
    return LimitsRow(
        limits=Limits(
            enabled=bool(row[0]),
            daily_cap=_money(row[1]),
            monthly_cap=_money(row[2]),
            weekly_cap=_money(row[8]),
            per_call_max_duration_seconds=row[3],
            per_call_max_cost=_money(row[4]),
        ),
        daily_paused_until_us=row[5],
        monthly_paused_until_us=row[6],
        updated_at_us=row[7],
        weekly_paused_until_us=row[9],
    )


def read_limits(conn: Connection, account_id: str) -> LimitsRow | None:
    row = conn.execute(_read_limits, {"account": account_id}).first()
    return _limits_row(row) if row is not None else None


def write_limits(conn: Connection, account_id: str, limits: Limits, now_us: int) -> None:
    """Replace the account's limits; every pause they caused ends."""
    values: dict[str, Any] = {
        "enabled": limits.enabled,
        "daily_cap_micros": _micros(limits.daily_cap),
        "weekly_cap_micros": _micros(limits.weekly_cap),
        "monthly_cap_micros": _micros(limits.monthly_cap),
        "per_call_max_duration_seconds": limits.per_call_max_duration_seconds,
        "per_call_max_cost_micros": _micros(limits.per_call_max_cost),
        "daily_paused_until_us": None,
        "weekly_paused_until_us": None,
        "monthly_paused_until_us": None,
        "updated_at_us": now_us,
    }
    updated = conn.execute(
        spending_limits.update().where(spending_limits.c.account_id == account_id).values(**values)
    )
    if updated.rowcount == 0:
        conn.execute(spending_limits.insert().values(account_id=account_id, **values))
    store.bump_config(conn, account_id)  # cached limits of the account go stale


def set_paused_until(conn: Connection, account_id: str, column: str, until_us: int | None) -> None:
    conn.execute(
        spending_limits.update()
        .where(spending_limits.c.account_id == account_id)
        .values({column: until_us})
    )
    store.bump_config(conn, account_id)


def cached_limits(conn: Connection, account_id: str, config_version: int) -> LimitsRow | None:
    """`read_limits` through the per-process cache, while `config_version` holds (every
    write of the limits bumps it)."""
    return cache_for(conn).get(
        "limits", account_id, config_version, lambda: read_limits(conn, account_id)
    )


_charged_since = sa.select(daily_charges.c.local_date, daily_charges.c.charged_micros).where(
    daily_charges.c.account_id == sa.bindparam("account"),
    daily_charges.c.local_date >= sa.bindparam("since"),
)


def charged_by_day(conn: Connection, account_id: str, since: str) -> dict[str, int]:
    """Charged usage per account-local day since a date (at most 37 rows: a month and the
    days of its first week that fall in the month before)."""
    return dict(conn.execute(_charged_since, {"account": account_id, "since": since}).all())


def paused_accounts_due(conn: Connection, now_us: int, limit: int) -> list[str]:
    query = (
        sa.select(spending_limits.c.account_id)
        .where(
            sa.or_(
                spending_limits.c.daily_paused_until_us <= now_us,
                spending_limits.c.weekly_paused_until_us <= now_us,
                spending_limits.c.monthly_paused_until_us <= now_us,
            )
        )
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def next_pause_end(conn: Connection) -> int | None:
    row = conn.execute(
        sa.select(
            *(
                sa.select(sa.func.min(column)).scalar_subquery()
                for column in (
                    spending_limits.c.daily_paused_until_us,
                    spending_limits.c.weekly_paused_until_us,
                    spending_limits.c.monthly_paused_until_us,
                )
            )
        )
    ).one()
    dues = [v for v in row if v is not None]
    return min(dues) if dues else None


# -- campaigns -----------------------------------------------------------------------------
@dataclass(slots=True)
class CampaignRow:
    account_id: str
    campaign_id: str
    name: str
    budget_micros: int
    spent_micros: int
    status: str
    paused_reason: str | None
    created_at_us: int
    updated_at_us: int


_CAMPAIGN_COLUMNS = [c for c in campaigns.c]

# What the campaign's calls in progress hold: open holds whose call carries the campaign.
# Driven from the account's open holds (few) with the call's record looked up by its unique
# key: as a join, SQLite's planner started from the account's voice records instead and
# read all of them (400 µs at 1,000 calls, growing with the account's history).
_u = usage_records.c
_campaign_held = (
    sa.select(sa.func.coalesce(sa.func.sum(holds.c.amount_micros), 0))
    .where(
        holds.c.account_id == sa.bindparam("account"),
        holds.c.status == "open",
        sa.exists().where(
            _u.account_id == holds.c.account_id,
            _u.service == "voice",
            _u.natural_id == holds.c.reference,
            _u.campaign_id == sa.bindparam("campaign"),
        ),
    )
    .scalar_subquery()
)
_campaign_with_held = sa.select(*_CAMPAIGN_COLUMNS, _campaign_held).where(
    campaigns.c.account_id == sa.bindparam("account"),
    campaigns.c.campaign_id == sa.bindparam("campaign"),
)


def campaign_facts(
    conn: Connection, account_id: str, campaign_id: str
) -> tuple[CampaignRow, CampaignFacts] | None:
    row = conn.execute(
        _campaign_with_held, {"account": account_id, "campaign": campaign_id}
    ).first()
    if row is None:
        return None
    campaign = CampaignRow(*row[:-1])
    return campaign, _facts(campaign, int(row[-1]))


def held_by_campaign(conn: Connection, account_id: str) -> dict[str, int]:
    """What each campaign's calls in progress hold, for all the account's campaigns at once:
    the account's open holds (few), then their calls' records by unique key."""
    open_holds = conn.execute(
        sa.select(holds.c.reference, holds.c.amount_micros).where(
            holds.c.account_id == account_id, holds.c.status == "open"
        )
    ).all()
    held: dict[str, int] = {}
    for start in range(0, len(open_holds), 500):
        chunk = dict(open_holds[start : start + 500])
        calls = conn.execute(
            sa.select(_u.natural_id, _u.campaign_id).where(
                _u.account_id == account_id,
                _u.service == "voice",
                _u.natural_id.in_(sorted(chunk)),
                _u.campaign_id.is_not(None),
            )
        )
        for reference, campaign_id in calls:
            held[campaign_id] = held.get(campaign_id, 0) + int(chunk[reference])
    return held


def _facts(campaign: CampaignRow, held_micros: int) -> CampaignFacts:
    return CampaignFacts(
        campaign_id=campaign.campaign_id,
        budget=Money(campaign.budget_micros),
        spent=Money(campaign.spent_micros),
        held=Money(held_micros),
        status=campaign.status,
        paused_reason=campaign.paused_reason,
    )


def find_campaign(conn: Connection, account_id: str, campaign_id: str) -> CampaignRow | None:
    row = conn.execute(
        sa.select(*_CAMPAIGN_COLUMNS).where(
            campaigns.c.account_id == account_id, campaigns.c.campaign_id == campaign_id
        )
    ).first()
    return CampaignRow(*row) if row is not None else None


def list_campaigns(
    conn: Connection, account_id: str, limit: int, after: str | None
) -> list[CampaignRow]:
    query = (
        sa.select(*_CAMPAIGN_COLUMNS)
        .where(campaigns.c.account_id == account_id)
        .order_by(campaigns.c.campaign_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(campaigns.c.campaign_id > after)
    return [CampaignRow(*row) for row in conn.execute(query)]


def insert_campaign(conn: Connection, campaign: CampaignRow) -> None:
    conn.execute(campaigns.insert().values(**_campaign_values(campaign)))


def update_campaign(conn: Connection, campaign: CampaignRow) -> None:
    conn.execute(
        campaigns.update()
        .where(
            campaigns.c.account_id == campaign.account_id,
            campaigns.c.campaign_id == campaign.campaign_id,
        )
        .values(**_campaign_values(campaign))
    )


def set_campaign_status(
    conn: Connection,
    account_id: str,
    campaign_id: str,
    status: str,
    reason: str | None,
    now_us: int,
) -> None:
    conn.execute(
        campaigns.update()
        .where(campaigns.c.account_id == account_id, campaigns.c.campaign_id == campaign_id)
        .values(status=status, paused_reason=reason, updated_at_us=now_us)
    )


def _campaign_values(campaign: CampaignRow) -> dict[str, Any]:
    return {c.name: getattr(campaign, c.name) for c in _CAMPAIGN_COLUMNS}


_add_spend = Prepared(
    campaigns.update()
    .where(
        campaigns.c.account_id == sa.bindparam("account"),
        campaigns.c.campaign_id == sa.bindparam("campaign"),
    )
    .values(spent_micros=campaigns.c.spent_micros + sa.bindparam("micros"))
)


def spend_write(account_id: str, campaign_id: str, micros: int) -> store.Write:
    """A charge's spend added to its campaign (no-op without a budget), as a write beside
    the charge's posting."""
    params = {"spend_account": account_id, "spend_campaign": campaign_id, "spend_micros": micros}
    spend = {"account": account_id, "campaign": campaign_id, "micros": micros}

    def run(conn: Connection) -> None:
        _add_spend.run(conn, spend)

    return store.Write("campaign_spend", _SPEND_CTE_PG, params, run)


_SPEND_CTE_PG = (
    "spent AS (UPDATE campaigns SET spent_micros = campaigns.spent_micros + :spend_micros"
    " WHERE campaigns.account_id = :spend_account AND campaigns.campaign_id = :spend_campaign"
    " AND EXISTS (SELECT 1 FROM balance))"  # after the balance row's lock (store.apply_posting)
)


def add_campaign_spend(conn: Connection, spends: list[dict[str, Any]]) -> None:
    """Add charged usage to campaigns' spent (no-op for campaigns without a budget).
    Each item: {"account", "campaign", "micros"}."""
    if len(spends) == 1:
        _add_spend.run(conn, spends[0])
    elif spends:
        _add_spend.executemany(conn, spends)


# -- notifications ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NotificationRow:
    id: int
    account_id: str
    event: str
    title: str
    message: str
    data: dict[str, Any]
    created_at_us: int
    alert_id: str | None = None


def insert_notification(
    conn: Connection,
    account_id: str,
    event: str,
    title: str,
    message: str,
    data: dict[str, Any],
    now_us: int,
    dedupe_key: str | None = None,
    alert_id: str | None = None,
) -> int | None:
    """The new notification's id; None when `dedupe_key` was already used (it happened)."""
    if dedupe_key is not None:
        seen = conn.execute(
            sa.select(notifications.c.id).where(
                notifications.c.account_id == account_id,
                notifications.c.dedupe_key == dedupe_key,
            )
        ).first()
        if seen is not None:
            return None
    result = conn.execute(
        notifications.insert()
        .values(
            account_id=account_id,
            event=event,
            title=title,
            message=message,
            data_json=json.dumps(data, sort_keys=True, separators=(",", ":")),
            created_at_us=now_us,
            dedupe_key=dedupe_key,
            alert_id=alert_id,
        )
        .returning(notifications.c.id)
    )
    return int(result.scalar_one())


def list_notifications(
    conn: Connection, account_id: str, limit: int, before_id: int | None
) -> list[NotificationRow]:
    query = (
        sa.select(*notifications.c)
        .where(notifications.c.account_id == account_id)
        .order_by(notifications.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(notifications.c.id < before_id)
    return [
        NotificationRow(
            alert_id=row.alert_id,
            id=row.id,
            account_id=row.account_id,
            event=row.event,
            title=row.title,
            message=row.message,
            data=json.loads(row.data_json),
            created_at_us=row.created_at_us,
        )
        for row in conn.execute(query)
    ]


def priced_usage_since(conn: Connection, account_id: str, since_us: int) -> Any:
    """Priced usage records since an instant, oldest first (a server-side cursor): the
    real usage a spending-limits dry run replays."""
    r = usage_records.c
    query = (
        sa.select(r.occurred_at_us, r.service, r.sub_type, r.price_micros, r.quantity)
        .add_columns(sa.func.coalesce(r.duration_seconds, 0))
        .where(
            r.account_id == account_id,
            r.occurred_at_us >= since_us,
            r.price_micros > 0,
            r.status != "in-progress",
        )
        .order_by(r.occurred_at_us, r.id)
    )
    return conn.execution_options(yield_per=5000).execute(query)


# Everything the gate reads, in one round trip: the limits (if any), this month's and
# today's charges, and the campaign (if the usage carries one that has a budget) with what
# its calls in progress hold.
_dc = daily_charges.c
_gate_query = Prepared(
    sa.select(
        *_read_limits.selected_columns,
        sa.select(sa.func.coalesce(sa.func.sum(_dc.charged_micros), 0))
        .where(_dc.account_id == accounts.c.id, _dc.local_date >= sa.bindparam("month_start"))
        .scalar_subquery(),
        sa.select(_dc.charged_micros)
        .where(_dc.account_id == accounts.c.id, _dc.local_date == sa.bindparam("today"))
        .scalar_subquery(),
        sa.select(sa.func.coalesce(sa.func.sum(_dc.charged_micros), 0))
        .where(_dc.account_id == accounts.c.id, _dc.local_date >= sa.bindparam("week_start"))
        .scalar_subquery(),
        *_CAMPAIGN_COLUMNS,
        sa.case((campaigns.c.campaign_id.is_(None), 0), else_=_campaign_held),
    )
    .select_from(
        accounts.outerjoin(
            spending_limits, spending_limits.c.account_id == accounts.c.id
        ).outerjoin(
            campaigns,
            sa.and_(
                campaigns.c.account_id == accounts.c.id,
                campaigns.c.campaign_id == sa.bindparam("campaign"),
            ),
        )
    )
    .where(accounts.c.id == sa.bindparam("account"))
)


@dataclass(frozen=True, slots=True)
class GateRow:
    limits: LimitsRow | None
    charged_this_month: int
    charged_today: int
    charged_this_week: int
    campaign: CampaignRow | None
    campaign_facts: CampaignFacts | None


def read_gate(
    conn: Connection,
    account_id: str,
    campaign_id: str | None,
    month_start: str,
    today: str,
    week_start: str,
) -> GateRow:
    row = _gate_query.first(
        conn,
        {
            "account": account_id,
            "campaign": campaign_id,
            "month_start": month_start,
            "today": today,
            "week_start": week_start,
        },
    )
    assert row is not None, "the account is locked, so it exists"
    limits = _limits_row(row) if row[0] is not None else None
    month, day, week = row[_LIMITS_WIDTH : _LIMITS_WIDTH + 3]
    campaign = facts = None
    values = row[_LIMITS_WIDTH + 3 : _LIMITS_WIDTH + 3 + len(_CAMPAIGN_COLUMNS)]
    if values[1] is not None:
        campaign = CampaignRow(*values)
        facts = _facts(campaign, int(row[-1]))
    return GateRow(limits, int(month), int(day or 0), int(week), campaign, facts)

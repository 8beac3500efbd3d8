"""Storage of alerts, notification settings, and the delivery outbox."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db import store
from usagewatch.adapters.db.config_cache import cache_for
from usagewatch.adapters.db.schema import (
    alerts,
    daily_charges,
    deliveries,
    delivery_attempts,
    notification_settings,
    notifications,
    usage_rollups,
)


# -- alerts ----------------------------------------------------------------------------------
@dataclass(slots=True)
class AlertRow:
    id: str
    account_id: str
    name: str
    type: str
    threshold_micros: int | None
    threshold_percent_bp: int | None
    period: str | None
    service: str | None
    channels_json: str
    recipients_json: str
    webhook_url: str | None
    frequency: str
    action: str | None
    state: str
    last_triggered_at_us: int | None
    next_check_at_us: int | None
    created_at_us: int
    updated_at_us: int

    @property
    def channels(self) -> list[str]:
        return list(json.loads(self.channels_json))

    @property
    def recipients(self) -> dict[str, list[str]]:
        return dict(json.loads(self.recipients_json))

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_ALERT_COLUMNS = [alerts.c[f.name] for f in fields(AlertRow)]


def insert_alert(conn: Connection, alert: AlertRow) -> None:
    conn.execute(alerts.insert().values(**alert.values()))
    store.bump_config(conn, alert.account_id)


def update_alert(conn: Connection, alert: AlertRow) -> None:
    conn.execute(alerts.update().where(alerts.c.id == alert.id).values(**alert.values()))
    store.bump_config(conn, alert.account_id)


def delete_alert(conn: Connection, account_id: str, alert_id: str) -> bool:
    done = conn.execute(
        alerts.delete().where(alerts.c.account_id == account_id, alerts.c.id == alert_id)
    )
    store.bump_config(conn, account_id)
    return done.rowcount > 0


def cached_alerts(conn: Connection, account_id: str, config_version: int) -> list[AlertRow]:
    """The account's alerts, from the per-process cache while `config_version` holds. Shared
    objects: copy one (`copy.copy`) before changing it."""
    return cache_for(conn).get(
        "alerts", account_id, config_version, lambda: account_alerts(conn, account_id)
    )


def find_alert(conn: Connection, account_id: str, alert_id: str) -> AlertRow | None:
    row = conn.execute(
        sa.select(*_ALERT_COLUMNS).where(alerts.c.account_id == account_id, alerts.c.id == alert_id)
    ).first()
    return AlertRow(*row) if row is not None else None


_account_alerts = (
    sa.select(*_ALERT_COLUMNS)
    .where(alerts.c.account_id == sa.bindparam("account"))
    .order_by(alerts.c.created_at_us, alerts.c.id)
)


def account_alerts(conn: Connection, account_id: str) -> list[AlertRow]:
    return [AlertRow(*row) for row in conn.execute(_account_alerts, {"account": account_id})]


def list_alerts(
    conn: Connection, account_id: str, limit: int, after: tuple[int, str] | None
) -> list[AlertRow]:
    """A page of an account's alerts, oldest first (keyset by (created_at_us, id))."""
    query = (
        sa.select(*_ALERT_COLUMNS)
        .where(alerts.c.account_id == account_id)
        .order_by(alerts.c.created_at_us, alerts.c.id)
        .limit(limit)
    )
    if after is not None:
        created_at_us, alert_id = after
        query = query.where(
            sa.or_(
                alerts.c.created_at_us > created_at_us,
                sa.and_(alerts.c.created_at_us == created_at_us, alerts.c.id > alert_id),
            )
        )
    return [AlertRow(*row) for row in conn.execute(query)]


def alerts_due(conn: Connection, now_us: int, limit: int) -> list[tuple[str, str]]:
    query = (
        sa.select(alerts.c.account_id, alerts.c.id)
        .where(alerts.c.next_check_at_us <= now_us)
        .order_by(alerts.c.next_check_at_us)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in conn.execute(query)]


def next_alert_check(conn: Connection) -> int | None:
    value = conn.execute(sa.select(sa.func.min(alerts.c.next_check_at_us))).scalar()
    return int(value) if value is not None else None


# -- usage figures the alerts need -----------------------------------------------------------
_d, _r = daily_charges.c, usage_rollups.c
_usage_figures = sa.union_all(
    sa.select(sa.literal("d"), _d.local_date, _d.charged_micros, sa.literal(0)).where(
        _d.account_id == sa.bindparam("account"),
        _d.local_date >= sa.bindparam("first"),
        _d.local_date <= sa.bindparam("today"),
    ),
    sa.select(
        sa.literal("s"),
        _r.service,
        sa.func.sum(sa.case((_r.local_date == sa.bindparam("today"), _r.cost_micros), else_=0)),
        sa.func.sum(_r.cost_micros),
    )
    .where(
        _r.account_id == sa.bindparam("account"),
        _r.local_date >= sa.bindparam("month_first"),
        _r.local_date <= sa.bindparam("today"),
    )
    .group_by(_r.service),
)


def usage_figures(
    conn: Connection, account_id: str, first: str, month_first: str, today: str
) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """In one round trip (a statement built once): charged usage per day in [first, today],
    and per service {service: (cost today, cost since month_first)}."""
    params = {"account": account_id, "first": first, "month_first": month_first, "today": today}
    by_day: dict[str, int] = {}
    by_service: dict[str, tuple[int, int]] = {}
    for kind, key, a, b in conn.execute(_usage_figures, params):
        if kind == "d":
            by_day[key] = int(a)
        else:
            by_service[key] = (int(a), int(b))
    return by_day, by_service


# -- notification settings -------------------------------------------------------------------
@dataclass(slots=True)
class SettingsRow:
    account_id: str
    emails: list[str]
    phones: list[str]
    webhook_url: str | None
    webhook_secret: str
    updated_at_us: int


def read_settings(conn: Connection, account_id: str) -> SettingsRow | None:
    row = conn.execute(
        sa.select(*notification_settings.c).where(notification_settings.c.account_id == account_id)
    ).first()
    if row is None:
        return None
    return SettingsRow(
        account_id=row.account_id,
        emails=json.loads(row.emails_json),
        phones=json.loads(row.phones_json),
        webhook_url=row.webhook_url,
        webhook_secret=row.webhook_secret,
        updated_at_us=row.updated_at_us,
    )


def write_settings(conn: Connection, settings: SettingsRow) -> None:
    values = {
        "emails_json": json.dumps(settings.emails),
        "phones_json": json.dumps(settings.phones),
        "webhook_url": settings.webhook_url,
        "webhook_secret": settings.webhook_secret,
        "updated_at_us": settings.updated_at_us,
    }
    done = conn.execute(
        notification_settings.update()
        .where(notification_settings.c.account_id == settings.account_id)
        .values(**values)
    )
    if done.rowcount == 0:
        conn.execute(
            notification_settings.insert().values(account_id=settings.account_id, **values)
        )


# -- deliveries ------------------------------------------------------------------------------
def insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(deliveries.insert(), rows)


def insert_attempt(
    conn: Connection, delivery_id: int, attempt: int, outcome: str, detail: str, at_us: int
) -> None:
    conn.execute(
        delivery_attempts.insert().values(
            delivery_id=delivery_id,
            attempt=attempt,
            outcome=outcome,
            detail=detail[:500],
            at_us=at_us,
        )
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    account_id: str
    notification_id: int
    channel: str
    target: str
    attempts: int


def claim_due(conn: Connection, now_us: int, lease_us: int, limit: int) -> list[Claimed]:
    """Take up to `limit` due deliveries for this worker: their next attempt moves to the end
    of a lease (so a worker that dies mid-send leaves them to be retried), and their attempt
    count goes up. PostgreSQL skips rows another worker holds (SKIP LOCKED); SQLite
    serialises writers anyway."""
    d = deliveries.c
    due = (
        sa.select(d.id)
        .where(d.status == "pending", d.next_attempt_at_us <= now_us)
        .order_by(d.next_attempt_at_us)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = conn.execute(
        deliveries.update()
        .where(d.id.in_(due.scalar_subquery()))
        .values(next_attempt_at_us=now_us + lease_us, attempts=d.attempts + 1, updated_at_us=now_us)
        .returning(d.id, d.account_id, d.notification_id, d.channel, d.target, d.attempts)
    ).all()
    return [Claimed(*row) for row in rows]


def finish_delivery(
    conn: Connection,
    delivery_id: int,
    status: str,
    next_at_us: int | None,
    error: str | None,
    now_us: int,
) -> None:
    conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id)
        .values(
            status=status, next_attempt_at_us=next_at_us, last_error=error, updated_at_us=now_us
        )
    )


def next_delivery_due(conn: Connection) -> int | None:
    value = conn.execute(
        sa.select(sa.func.min(deliveries.c.next_attempt_at_us)).where(
            deliveries.c.status == "pending"
        )
    ).scalar()
    return int(value) if value is not None else None


def notification_of(conn: Connection, notification_id: int) -> Any:
    return conn.execute(
        sa.select(*notifications.c).where(notifications.c.id == notification_id)
    ).one()


def deliveries_of(conn: Connection, notification_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each notification's deliveries, with every attempt, for the inbox."""
    if not notification_ids:
        return {}
    d, a = deliveries.c, delivery_attempts.c
    rows = conn.execute(
        sa.select(d.id, d.notification_id, d.channel, d.target, d.status, d.attempts, d.last_error)
        .where(d.notification_id.in_(notification_ids))
        .order_by(d.id)
    ).all()
    attempts: dict[int, list[dict[str, Any]]] = {}
    if rows:
        for att in conn.execute(
            sa.select(a.delivery_id, a.attempt, a.outcome, a.detail, a.at_us)
            .where(a.delivery_id.in_([r.id for r in rows]))
            .order_by(a.id)
        ):
            attempts.setdefault(att.delivery_id, []).append(
                {
                    "attempt": att.attempt,
                    "outcome": att.outcome,
                    "detail": att.detail,
                    "at_us": att.at_us,
                }
            )
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r.notification_id, []).append(
            {
                "channel": r.channel,
                "target": r.target,
                "status": r.status,
                "attempts": attempts.get(r.id, []),
                "last_error": r.last_error,
            }
        )
    return out

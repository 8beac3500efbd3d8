"""Storage of payments and auto-recharge rules. Every function takes the caller's connection."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db import store
from usagewatch.adapters.db.config_cache import cache_for
from usagewatch.adapters.db.schema import auto_recharge, payments
from usagewatch.domain.money import Money
from usagewatch.domain.payments import AutoRechargeRule


# -- auto-recharge rules -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RuleRow:
    rule: AutoRechargeRule
    paused_until_us: int | None
    updated_at_us: int


_read_rule = sa.select(
    auto_recharge.c.enabled,
    auto_recharge.c.threshold_micros,
    auto_recharge.c.amount_micros,
    auto_recharge.c.max_recharges_per_day,
    auto_recharge.c.paused_until_us,
    auto_recharge.c.updated_at_us,
).where(auto_recharge.c.account_id == sa.bindparam("account"))


def read_rule(conn: Connection, account_id: str) -> RuleRow | None:
    row = conn.execute(_read_rule, {"account": account_id}).first()
    if row is None:
        return None
    rule = AutoRechargeRule(bool(row[0]), Money(row[1]), Money(row[2]), row[3])
    return RuleRow(rule, row[4], row[5])


def write_rule(conn: Connection, account_id: str, rule: AutoRechargeRule, now_us: int) -> None:
    """Replace the rule; a back-off it was under ends (the owner has acted)."""
    values: dict[str, Any] = {
        "enabled": rule.enabled,
        "threshold_micros": rule.threshold.micros,
        "amount_micros": rule.amount.micros,
        "max_recharges_per_day": rule.max_recharges_per_day,
        "paused_until_us": None,
        "updated_at_us": now_us,
    }
    updated = conn.execute(
        auto_recharge.update().where(auto_recharge.c.account_id == account_id).values(**values)
    )
    if updated.rowcount == 0:
        conn.execute(auto_recharge.insert().values(account_id=account_id, **values))
    store.bump_config(conn, account_id)


def set_paused_until(conn: Connection, account_id: str, until_us: int | None) -> None:
    conn.execute(
        auto_recharge.update()
        .where(auto_recharge.c.account_id == account_id)
        .values(paused_until_us=until_us)
    )
    store.bump_config(conn, account_id)


def cached_rule(conn: Connection, account_id: str, config_version: int) -> RuleRow | None:
    """`read_rule` through the per-process cache, while `config_version` holds."""
    return cache_for(conn).get(
        "auto_recharge", account_id, config_version, lambda: read_rule(conn, account_id)
    )


def rules_due(conn: Connection, now_us: int, limit: int) -> list[str]:
    query = (
        sa.select(auto_recharge.c.account_id)
        .where(auto_recharge.c.paused_until_us <= now_us)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def next_rule_due(conn: Connection) -> int | None:
    value = conn.execute(sa.select(sa.func.min(auto_recharge.c.paused_until_us))).scalar()
    return int(value) if value is not None else None


# -- payments ------------------------------------------------------------------------------
@dataclass(slots=True)
class PaymentRow:
    id: int
    account_id: str
    kind: str
    amount_micros: int
    status: str
    attempts: int
    request_key: str | None
    request_fingerprint: str | None
    gateway_key: str
    gateway_reference: str | None
    credit_lot_id: str | None
    error: str | None
    local_date: str
    created_at_us: int
    updated_at_us: int
    next_attempt_at_us: int | None


_COLUMNS = [payments.c[f.name] for f in fields(PaymentRow)]


def insert_payment(conn: Connection, row: dict[str, Any]) -> PaymentRow:
    payment_id = conn.execute(payments.insert().values(**row).returning(payments.c.id)).scalar_one()
    found = find_payment(conn, row["account_id"], int(payment_id))
    assert found is not None
    return found


def find_payment(conn: Connection, account_id: str, payment_id: int) -> PaymentRow | None:
    row = conn.execute(
        sa.select(*_COLUMNS).where(payments.c.account_id == account_id, payments.c.id == payment_id)
    ).first()
    return PaymentRow(*row) if row is not None else None


def find_by_request_key(conn: Connection, account_id: str, key: str) -> PaymentRow | None:
    row = conn.execute(
        sa.select(*_COLUMNS).where(
            payments.c.account_id == account_id, payments.c.request_key == key
        )
    ).first()
    return PaymentRow(*row) if row is not None else None


def list_payments(
    conn: Connection, account_id: str, limit: int, before_id: int | None
) -> list[PaymentRow]:
    query = (
        sa.select(*_COLUMNS)
        .where(payments.c.account_id == account_id)
        .order_by(payments.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(payments.c.id < before_id)
    return [PaymentRow(*row) for row in conn.execute(query)]


_recharge_facts = sa.select(
    sa.select(payments.c.id)
    .where(
        payments.c.account_id == sa.bindparam("account"),
        payments.c.kind == "auto",
        payments.c.status == "pending",
    )
    .scalar_subquery(),
    sa.select(sa.func.count())
    .select_from(payments)
    .where(
        payments.c.account_id == sa.bindparam("account"),
        payments.c.kind == "auto",
        payments.c.local_date == sa.bindparam("day"),
        payments.c.status != "declined",
    )
    .scalar_subquery(),
)


def recharge_facts(conn: Connection, account_id: str, day: str) -> tuple[int | None, int]:
    """(the pending auto payment's id or None, auto payments started on `day` that were not
    declined), in one round trip."""
    row = conn.execute(_recharge_facts, {"account": account_id, "day": day}).one()
    return row[0], int(row[1])


def claim(conn: Connection, payment_id: int, now_us: int, next_attempt_at_us: int) -> bool:
    """Take a due pending payment for one gateway call (compare-and-set, so one worker of
    many gets it): count the attempt and move its next attempt on."""
    claimed = conn.execute(
        payments.update()
        .where(
            payments.c.id == payment_id,
            payments.c.status == "pending",
            payments.c.next_attempt_at_us <= now_us,
        )
        .values(
            attempts=payments.c.attempts + 1,
            next_attempt_at_us=next_attempt_at_us,
            updated_at_us=now_us,
        )
    ).rowcount
    return bool(claimed == 1)


def settle(conn: Connection, payment_id: int, values: dict[str, Any]) -> bool:
    """Give a pending payment its outcome (only once: a settled payment stays as it is)."""
    updated = conn.execute(
        payments.update()
        .where(payments.c.id == payment_id, payments.c.status == "pending")
        .values(**values)
    ).rowcount
    return bool(updated == 1)


def due_payments(conn: Connection, now_us: int, limit: int) -> list[tuple[str, int]]:
    query = (
        sa.select(payments.c.account_id, payments.c.id)
        .where(payments.c.next_attempt_at_us <= now_us)
        .order_by(payments.c.next_attempt_at_us)
        .limit(limit)
    )
    return [(row[0], int(row[1])) for row in conn.execute(query)]


def next_payment_due(conn: Connection) -> int | None:
    value = conn.execute(sa.select(sa.func.min(payments.c.next_attempt_at_us))).scalar()
    return int(value) if value is not None else None

"""`usagewatch verify`: recompute every cached figure from the journal (balances, lots, day
totals) and every usage rollup (daily, monthly, per day and service) from the usage records,
and list the differences."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import (
    balances,
    campaigns,
    credit_lots,
    daily_charges,
    holds,
    journal_entries,
    journal_movements,
    payments,
    usage_records,
    usage_rollups,
    usage_rollups_day_service,
    usage_rollups_monthly,
)
from usagewatch.domain.ledger import USAGE_KINDS


def verify(db: Database, account_id: str | None = None) -> list[str]:
    """Every difference between the cached projections and the journal, as readable lines.
    An empty list means the books agree."""
    problems: list[str] = []
    e, m, b, lots, h = journal_entries, journal_movements, balances, credit_lots, holds

    def scoped(query: sa.Select, column: sa.ColumnElement) -> sa.Select:  # type: ignore[type-arg]
        return query.where(column == account_id) if account_id is not None else query

    with db.read() as conn:
        sums = {
            row[0]: row[1:]
            for row in conn.execute(
                scoped(
                    sa.select(
                        e.c.account_id,
                        sa.func.sum(e.c.amount_micros),
                        sa.func.sum(e.c.reserved_delta_micros),
                        sa.func.sum(e.c.overdraft_delta_micros),
                        sa.func.max(e.c.version),
                        sa.func.count(),
                    ).group_by(e.c.account_id),
                    e.c.account_id,
                )
            )
        }
        newest = sa.select(sa.func.max(e.c.id)).group_by(e.c.account_id)
        last_available = dict(
            conn.execute(
                scoped(
                    sa.select(e.c.account_id, e.c.available_after_micros).where(e.c.id.in_(newest)),
                    e.c.account_id,
                )
            ).all()
        )
        lot_sums: dict[str, dict[str, int]] = defaultdict(
            lambda: {"paid": 0, "promotional": 0, "held": 0}
        )
        for row in conn.execute(
            scoped(
                sa.select(
                    lots.c.account_id,
                    lots.c.kind,
                    sa.func.sum(lots.c.remaining_micros),
                    sa.func.sum(lots.c.held_micros),
                ).group_by(lots.c.account_id, lots.c.kind),
                lots.c.account_id,
            )
        ):
            lot_sums[row[0]][row[1]] = int(row[2])
            lot_sums[row[0]]["held"] += int(row[3])
        open_holds = dict(
            conn.execute(
                scoped(
                    sa.select(h.c.account_id, sa.func.sum(h.c.amount_micros))
                    .where(h.c.status == "open")
                    .group_by(h.c.account_id),
                    h.c.account_id,
                )
            ).all()
        )
        for row in conn.execute(scoped(sa.select(*b.c), b.c.account_id)):
            acct = row.account_id
            amount, reserved, overdraft, version, _count = (
                (int(v) for v in sums[acct]) if acct in sums else (0, 0, 0, 0, 0)
            )
            checks = [
                ("paid + promotional", row.paid_micros + row.promotional_micros, amount),
                ("reserved", row.reserved_micros, reserved),
                ("overdraft", row.overdraft_micros, overdraft),
                ("version", row.version, version),
                (
                    "paid (from lots)",
                    row.paid_micros,
                    lot_sums[acct]["paid"] - row.overdraft_micros,
                ),
                ("promotional (from lots)", row.promotional_micros, lot_sums[acct]["promotional"]),
                ("reserved (held on lots)", row.reserved_micros, lot_sums[acct]["held"]),
                ("reserved (open holds)", row.reserved_micros, int(open_holds.get(acct, 0))),
            ]
            if acct in last_available:
                available = row.paid_micros + row.promotional_micros - row.reserved_micros
                checks.append(("available (last entry)", available, int(last_available[acct])))
            problems += [
                f"account {acct}: {name} cached {cached} but journal says {expected}"
                for name, cached, expected in checks
                if cached != expected
            ]
        # every lot equals the sum of its movements
        moved = (
            sa.select(
                m.c.lot_id,
                sa.func.sum(m.c.remaining_delta_micros).label("remaining"),
                sa.func.sum(m.c.held_delta_micros).label("held"),
            )
            .group_by(m.c.lot_id)
            .subquery()
        )
        for row in conn.execute(
            scoped(
                sa.select(
                    lots.c.account_id,
                    lots.c.id,
                    lots.c.remaining_micros,
                    lots.c.held_micros,
                    moved.c.remaining,
                    moved.c.held,
                ).join(moved, moved.c.lot_id == lots.c.id, isouter=True),
                lots.c.account_id,
            )
        ):
            if (row[2], row[3]) != (int(row[4] or 0), int(row[5] or 0)):
                problems.append(
                    f"account {row[0]}: lot {row[1]} cached remaining/held "
                    f"{row[2]}/{row[3]} but movements say {row[4]}/{row[5]}"
                )
        # every entry's amount equals its movements less the overdraft change
        entry_moves = (
            sa.select(m.c.entry_id, sa.func.sum(m.c.remaining_delta_micros).label("moved"))
            .group_by(m.c.entry_id)
            .subquery()
        )
        for row in conn.execute(
            scoped(
                sa.select(
                    e.c.account_id,
                    e.c.id,
                    e.c.amount_micros,
                    e.c.overdraft_delta_micros,
                    entry_moves.c.moved,
                )
                .join(entry_moves, entry_moves.c.entry_id == e.c.id, isouter=True)
                .where(
                    e.c.amount_micros
                    != sa.func.coalesce(entry_moves.c.moved, 0) - e.c.overdraft_delta_micros
                ),
                e.c.account_id,
            )
        ):
            problems.append(
                f"account {row[0]}: entry {row[1]} amount {row[2]} does not match "
                f"its movements ({row[4]}) less overdraft change ({row[3]})"
            )
        # per-day charge totals equal the day's charges in the journal
        usage = dict(
            ((r[0], r[1]), -int(r[2]))
            for r in conn.execute(
                scoped(
                    sa.select(e.c.account_id, e.c.local_date, sa.func.sum(e.c.amount_micros))
                    .where(e.c.kind.in_([k.value for k in USAGE_KINDS]), e.c.amount_micros < 0)
                    .group_by(e.c.account_id, e.c.local_date),
                    e.c.account_id,
                )
            )
        )
        cached = dict(
            ((r[0], r[1]), int(r[2]))
            for r in conn.execute(
                scoped(
                    sa.select(
                        daily_charges.c.account_id,
                        daily_charges.c.local_date,
                        daily_charges.c.charged_micros,
                    ),
                    daily_charges.c.account_id,
                )
            )
        )
        for key in sorted(set(usage) | set(cached)):
            if usage.get(key, 0) != cached.get(key, 0):
                problems.append(
                    f"account {key[0]}: usage on {key[1]} cached "
                    f"{cached.get(key, 0)} but journal says {usage.get(key, 0)}"
                )
        problems += _rollup_problems(conn, account_id)
        problems += _campaign_problems(conn, account_id)
        problems += _payment_problems(conn, account_id)
    return problems


def _payment_problems(conn: sa.Connection, account_id: str | None) -> list[str]:
    """Every succeeded payment bought one paid credit lot of its own account and amount."""
    p, lots = payments, credit_lots
    query = (
        sa.select(p.c.account_id, p.c.id, p.c.amount_micros, lots.c.account_id, lots.c.kind)
        .select_from(p.outerjoin(lots, lots.c.id == p.c.credit_lot_id))
        .where(
            p.c.status == "succeeded",
            sa.or_(
                lots.c.id.is_(None),
                lots.c.account_id != p.c.account_id,
                lots.c.kind != "paid",
                lots.c.amount_micros != p.c.amount_micros,
            ),
        )
    )
    if account_id is not None:
        query = query.where(p.c.account_id == account_id)
    return [
        f"account {row[0]}: payment pay_{row[1]} succeeded but its credit lot does not match"
        for row in conn.execute(query)
    ]


def _campaign_problems(conn: sa.Connection, account_id: str | None) -> list[str]:
    """Every campaign's spent equals its rollups' cost."""
    c, r = campaigns, usage_rollups
    spent = (
        sa.select(sa.func.coalesce(sa.func.sum(r.c.cost_micros), 0))
        .where(r.c.account_id == c.c.account_id, r.c.campaign_id == c.c.campaign_id)
        .scalar_subquery()
    )
    query = sa.select(c.c.account_id, c.c.campaign_id, c.c.spent_micros, spent)
    if account_id is not None:
        query = query.where(c.c.account_id == account_id)
    return [
        f"account {row[0]}: campaign {row[1]} spent cached {row[2]} but its usage says {row[3]}"
        for row in conn.execute(query)
        if int(row[2]) != int(row[3])
    ]


def _rollup_problems(conn: sa.Connection, account_id: str | None) -> list[str]:
    """Every rollup, at each of its three grains, equals a recomputation from the usage
    records."""
    u = usage_records.c
    month = sa.func.substr(u.local_date, 1, 7)
    consumer, campaign = sa.func.coalesce(u.consumer, ""), sa.func.coalesce(u.campaign_id, "")
    return [
        *_grain_problems(
            conn,
            account_id,
            "rollup",
            usage_rollups,
            (u.local_date, u.service, u.sub_type, consumer, campaign),
        ),
        *_grain_problems(
            conn,
            account_id,
            "monthly rollup",
            usage_rollups_monthly,
            (month, u.service, u.sub_type, consumer, campaign),
        ),
        *_grain_problems(
            conn,
            account_id,
            "day-and-service rollup",
            usage_rollups_day_service,
            (u.local_date, u.service),
        ),
    ]


def _grain_problems(
    conn: sa.Connection,
    account_id: str | None,
    label: str,
    table: sa.Table,
    group: tuple[sa.ColumnElement[str], ...],
) -> list[str]:
    """The rows of one rollup table against the usage records grouped by `group` (the
    expressions on the records for the table's key after the account)."""
    u, r = usage_records.c, table.c
    keys = list(table.primary_key.columns)  # account_id first, then `group`'s columns
    query = (
        sa.select(
            u.account_id,
            *group,
            sa.func.count(),
            sa.func.sum(u.quantity),
            sa.func.sum(sa.func.coalesce(u.duration_seconds, 0)),
            sa.func.sum(u.price_micros),
            sa.func.sum(sa.case((u.status == "delivered", 1), else_=0)),
        )
        .where(u.status != "in-progress")  # calls roll up when they end
        .group_by(u.account_id, *group)
    )
    rollup_query = sa.select(
        *keys, r.records, r.quantity, r.duration_seconds, r.cost_micros, r.delivered
    )
    if account_id is not None:
        query = query.where(u.account_id == account_id)
        rollup_query = rollup_query.where(r.account_id == account_id)
    width = len(keys)
    expected = {
        tuple(row[:width]): tuple(int(v) for v in row[width:]) for row in conn.execute(query)
    }
    cached = {
        tuple(row[:width]): tuple(int(v) for v in row[width:]) for row in conn.execute(rollup_query)
    }
    zero = (0, 0, 0, 0, 0)
    return [
        f"account {key[0]}: {label} {'/'.join(str(k) for k in key[1:] if k)} cached "
        f"(records, quantity, seconds, cost, delivered) {cached.get(key, zero)} "
        f"but usage records say {expected.get(key, zero)}"
        for key in sorted(set(expected) | set(cached))
        if expected.get(key, zero) != cached.get(key, zero)
    ]

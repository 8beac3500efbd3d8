"""SQL for rate cards, usage records and rollups. Functions take the transaction's
connection; the usage service runs them inside the ledger command that charges the usage.

Rollups come in three grains, always written together, in the same transaction: daily
(`usage_rollups`, every dimension), monthly (`usage_rollups_monthly`, every dimension but
the day) and per day and service (`usage_rollups_day_service`). Every write to the daily
rollups goes through this module so the other two follow it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from usagewatch.adapters.db import store
from usagewatch.adapters.db.prepared import Prepared, copy_rows
from usagewatch.adapters.db.schema import (
    rate_cards,
    usage_records,
    usage_rollups,
    usage_rollups_day_service,
    usage_rollups_monthly,
)

# -- rate cards ---------------------------------------------------------------------------
_read_overrides = Prepared(
    sa.select(rate_cards.c.overrides_json).where(rate_cards.c.account_id == sa.bindparam("account"))
)


def read_rate_overrides(conn: Connection, account_id: str) -> str | None:
    value: str | None = _read_overrides.scalar(conn, {"account": account_id})
    return value


def write_rate_overrides(
    conn: Connection, account_id: str, overrides_json: str, now_us: int
) -> None:
    insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(rate_cards).values(
        account_id=account_id, overrides_json=overrides_json, updated_at_us=now_us
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[rate_cards.c.account_id],
            set_={
                "overrides_json": stmt.excluded.overrides_json,
                "updated_at_us": stmt.excluded.updated_at_us,
            },
        )
    )
    store.bump_config(conn, account_id)  # cached cards of the account go stale


# -- usage records ------------------------------------------------------------------------
@dataclass(slots=True)
class UsageRecord:
    id: int | None
    account_id: str
    service: str
    sub_type: str
    natural_id: str
    status: str
    consumer: str | None
    campaign_id: str | None
    from_number: str | None
    to_number: str | None
    quantity: int
    duration_seconds: int | None
    price_micros: int
    local_date: str
    occurred_at_us: int
    updated_at_us: int
    request_fingerprint: str
    start_result_json: str | None = None
    end_result_json: str | None = None
    end_fingerprint: str | None = None


_find_record = store.FIND_USAGE_RECORD


def find_record(
    conn: Connection, account_id: str, service: str, natural_id: str
) -> UsageRecord | None:
    row = _find_record.first(
        conn, {"account": account_id, "service": service, "natural_id": natural_id}
    )
    return UsageRecord(*row) if row is not None else None


def list_records(
    conn: Connection, account_id: str, service: str, limit: int, before_id: int | None
) -> list[UsageRecord]:
    """An account's records of one service, newest first (keyset by id)."""
    query = (
        sa.select(*usage_records.c)
        .where(usage_records.c.account_id == account_id, usage_records.c.service == service)
        .order_by(usage_records.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(usage_records.c.id < before_id)
    return [UsageRecord(*row) for row in conn.execute(query)]


def insert_record(conn: Connection, record: UsageRecord) -> None:
    """Insert a usage record without rolling it up (a call in progress: rolled up when it
    ends). Its natural id must be new."""
    _insert_record.run(conn, {name: getattr(record, name) for name in RECORD_NAMES})


def record_write(record: UsageRecord) -> store.Write:
    """A new usage record (its natural id looked up first, under the account lock) and its
    rollups, as a write beside the charge's posting: on PostgreSQL one part of the posting's
    statement."""
    params = _record_params_pg(record)

    def run(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            _insert_record_rolled_up_pg.run(conn, params)
        else:
            _insert_record.run(conn, {name: getattr(record, name) for name in RECORD_NAMES})
            _add_rollup_sqlite(conn, record, 1, record.quantity, record.duration_seconds or 0)

    return store.Write("usage_record", _RECORD_CTES_PG, params, run)


def insert_record_once(conn: Connection, record: UsageRecord) -> bool:
    """Insert a usage record and roll it up unless the account has its natural id already
    (False: nothing written). For a charge that moves no money: with no journal entry, a
    PostgreSQL command that waited for the account lock cannot tell from the balance row
    that a record of the id was committed meanwhile (store.lock_and_load), but the unique
    index waits for it and skips."""
    if conn.dialect.name == "postgresql":
        return _insert_record_once_pg.first(conn, _record_params_pg(record)) is not None
    values = {name: getattr(record, name) for name in RECORD_NAMES}
    if _insert_record_once_sqlite.run(conn, values) == 0:
        return False
    _add_rollup_sqlite(conn, record, 1, record.quantity, record.duration_seconds or 0)
    return True


def _record_params_pg(record: UsageRecord) -> dict[str, Any]:
    """The binds of `_record_ctes_pg`: the record's columns (rec_*) and its rollup (r_*)."""
    params = {f"rec_{name}": getattr(record, name) for name in RECORD_NAMES}
    params.update(_rollup_values(record, 1, record.quantity, record.duration_seconds or 0))
    return params


def _rollup_values(
    record: UsageRecord, records: int, quantity: int, duration_seconds: int, cost: int | None = None
) -> dict[str, Any]:
    return {
        "r_account": record.account_id,
        "r_date": record.local_date,
        "r_month": record.local_date[:7],
        "r_service": record.service,
        "r_sub_type": record.sub_type,
        "r_consumer": record.consumer or "",
        "r_campaign": record.campaign_id or "",
        "r_records": records,
        "r_quantity": quantity,
        "r_duration": duration_seconds,
        "r_cost": record.price_micros if cost is None else cost,
    }


def _add_rollup_sqlite(
    conn: Connection,
    record: UsageRecord,
    records: int,
    quantity: int,
    duration_seconds: int,
    cost: int | None = None,
) -> None:
    daily = {
        "account_id": record.account_id,
        "local_date": record.local_date,
        "service": record.service,
        "sub_type": record.sub_type,
        "consumer": record.consumer or "",
        "campaign_id": record.campaign_id or "",
        "records": records,
        "quantity": quantity,
        "duration_seconds": duration_seconds,
        "cost_micros": record.price_micros if cost is None else cost,
        "delivered": 0,
    }
    upsert_daily, upsert_monthly, upsert_day_service = _UPSERTS["sqlite"]
    upsert_daily.run(conn, daily)
    monthly = dict(daily, month=record.local_date[:7])
    del monthly["local_date"]
    upsert_monthly.run(conn, monthly)
    day_service = dict(daily)
    del day_service["sub_type"], day_service["consumer"], day_service["campaign_id"]
    upsert_day_service.run(conn, day_service)


_update_record = Prepared(
    usage_records.update()
    .where(usage_records.c.id == sa.bindparam("record"))
    .values({c: sa.bindparam(f"new_{c.name}") for c in usage_records.c if c.name != "id"})
)


def update_record(conn: Connection, record: UsageRecord) -> None:
    values = {f"new_{name}": getattr(record, name) for name in RECORD_NAMES}
    _update_record.run(conn, {"record": record.id, **values})


def add_to_rollup(
    conn: Connection,
    record: UsageRecord,
    *,
    records: int,
    quantity: int,
    duration_seconds: int,
    cost_micros: int,
) -> None:
    """Add to the record's day/service/sub-type/consumer/campaign rollup rows (the three
    grains; one queued statement on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        _add_rollup_pg.run(
            conn, _rollup_values(record, records, quantity, duration_seconds, cost_micros)
        )
    else:
        _add_rollup_sqlite(conn, record, records, quantity, duration_seconds, cost_micros)


def add_delivered(conn: Connection, record: UsageRecord, delta: int) -> None:
    """Move the rollups' delivered count (the rows exist: the record was rolled up)."""
    params = {
        "k_account_id": record.account_id,
        "k_local_date": record.local_date,
        "k_month": record.local_date[:7],
        "k_service": record.service,
        "k_sub_type": record.sub_type,
        "k_consumer": record.consumer or "",
        "k_campaign_id": record.campaign_id or "",
        "delta": delta,
    }
    if conn.dialect.name == "postgresql":  # one round trip
        counts = tuple(conn.execute(_delivered_updates_pg, params).one())
    else:
        counts = tuple(conn.execute(update, params).rowcount for update in _DELIVERED_UPDATES)
    assert counts == (1, 1, 1), "a usage record without its rollup rows"


def add_rollups(
    conn: Connection, account_id: str, groups: dict[tuple[str, ...], list[int]]
) -> None:
    """Add to rollup rows: {(date, service, sub_type, consumer, campaign): [records,
    quantity, duration_seconds, cost_micros, delivered]}, at the three grains (one prebuilt upsert
    per grain, executemany; the coarser grains summed here first)."""
    daily: list[dict[str, Any]] = []
    monthly: dict[tuple[str, ...], list[int]] = {}
    day_service: dict[tuple[str, ...], list[int]] = {}
    for (day, service, sub_type, consumer, campaign), sums in groups.items():
        daily.append(
            {
                "account_id": account_id,
                "local_date": day,
                "service": service,
                "sub_type": sub_type,
                "consumer": consumer,
                "campaign_id": campaign,
                "records": sums[0],
                "quantity": sums[1],
                "duration_seconds": sums[2],
                "cost_micros": sums[3],
                "delivered": sums[4],
            }
        )
        for coarse, key in (
            (monthly, (day[:7], service, sub_type, consumer, campaign)),
            (day_service, (day, service)),
        ):
            total = coarse.setdefault(key, [0, 0, 0, 0, 0])
            for i in range(5):
                total[i] += sums[i]
    if not daily:
        return
    upsert_daily, upsert_monthly, upsert_day_service = _UPSERTS[conn.dialect.name]
    upsert_daily.executemany(conn, daily)
    upsert_monthly.executemany(
        conn,
        [
            {
                "account_id": account_id,
                "month": month,
                "service": service,
                "sub_type": sub_type,
                "consumer": consumer,
                "campaign_id": campaign,
                **_sums(sums),
            }
            for (month, service, sub_type, consumer, campaign), sums in monthly.items()
        ],
    )
    upsert_day_service.executemany(
        conn,
        [
            {"account_id": account_id, "local_date": day, "service": service, **_sums(sums)}
            for (day, service), sums in day_service.items()
        ],
    )


def _sums(sums: list[int]) -> dict[str, int]:
    return {
        "records": sums[0],
        "quantity": sums[1],
        "duration_seconds": sums[2],
        "cost_micros": sums[3],
        "delivered": sums[4],
    }


def _rollup_upsert(insert: Any, table: sa.Table) -> Prepared:
    """INSERT … ON CONFLICT (the primary key) DO UPDATE adding the sums (delivered too: a
    batch's SMS may come with their delivery reports)."""
    stmt = insert(table)
    c = table.c
    upsert = stmt.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={
            "records": c.records + stmt.excluded.records,
            "quantity": c.quantity + stmt.excluded.quantity,
            "duration_seconds": c.duration_seconds + stmt.excluded.duration_seconds,
            "cost_micros": c.cost_micros + stmt.excluded.cost_micros,
            "delivered": c.delivered + stmt.excluded.delivered,
        },
    )
    return Prepared(upsert, [col.name for col in table.c])


_ROLLUP_TABLES = (usage_rollups, usage_rollups_monthly, usage_rollups_day_service)
# Built once: a statement built per call costs more Python time than running it.
# Per dialect: the (daily, monthly, day-and-service) upserts.
_UPSERTS = {
    "postgresql": tuple(_rollup_upsert(pg_insert, t) for t in _ROLLUP_TABLES),
    "sqlite": tuple(_rollup_upsert(sqlite_insert, t) for t in _ROLLUP_TABLES),
}


def _delivered_update(table: sa.Table) -> Any:
    c = table.c
    return (
        table.update()
        .where(*(col == sa.bindparam(f"k_{col.name}") for col in table.primary_key.columns))
        .values(delivered=c.delivered + sa.bindparam("delta"))
    )


_DELIVERED_UPDATES = tuple(_delivered_update(t) for t in _ROLLUP_TABLES)


def _delivered_update_pg_part(table: sa.Table) -> str:
    keys = " AND ".join(f"{c.name} = :k_{c.name}" for c in table.primary_key.columns)
    return (
        f"{table.name}_done AS (UPDATE {table.name} SET delivered = delivered + :delta"
        f" WHERE {keys} RETURNING 1)"
    )


# PostgreSQL: the three delivered updates in one statement; answers the rows each changed.
_delivered_updates_pg = sa.text(
    "WITH {parts} SELECT {counts}".format(
        parts=", ".join(_delivered_update_pg_part(t) for t in _ROLLUP_TABLES),
        counts=", ".join(f"(SELECT count(*) FROM {t.name}_done)" for t in _ROLLUP_TABLES),
    )
)


def insert_new_records(conn: Connection, rows: list[tuple[Any, ...]]) -> set[tuple[str, str]]:
    """Insert usage records (each its values in RECORD_NAMES order), skipping natural ids
    the account already has; returns the (service, natural_id) of those skipped (usually
    none). PostgreSQL gets one statement over column arrays (unnest) when some ids are
    known; SQLite an executemany of the ids not found."""
    if not rows:
        return set()
    if conn.dialect.name == "postgresql":
        # The common case, all ids new: COPY, under a savepoint. A known id fails it on the
        # unique index; then the insert that skips known ids runs instead.
        try:
            with conn.begin_nested():
                copy_rows(conn, usage_records.name, RECORD_NAMES, rows)
            return set()
        except sa.exc.IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
        columns = zip(*rows, strict=True)
        arrays = dict(zip(RECORD_NAMES, map(list, columns), strict=True))
        inserted = conn.execute(_insert_unnest_pg, arrays).all()
        if len(inserted) == len(rows):
            return set()
        return {(row[_AT_SERVICE], row[_AT_NATURAL_ID]) for row in rows} - {
            (service, natural_id) for service, natural_id in inserted
        }
    # SQLite (in-process, so lookups are cheap): find the ids already there, then a plain
    # executemany of the rest through the driver (the transaction holds the write lock).
    existing: set[tuple[str, str]] = set()
    by_service: dict[str, list[str]] = {}
    for row in rows:
        by_service.setdefault(row[_AT_SERVICE], []).append(row[_AT_NATURAL_ID])
    account_id = rows[0][_AT_ACCOUNT]
    for service, ids in by_service.items():
        # One indexed lookup per service over a JSON array of the ids (no statement to
        # build per chunk of ids).
        found = conn.exec_driver_sql(_EXISTING_IDS_SQLITE, (account_id, service, json.dumps(ids)))
        existing.update((service, natural_id) for (natural_id,) in found)
    fresh = (
        [row for row in rows if (row[_AT_SERVICE], row[_AT_NATURAL_ID]) not in existing]
        if existing
        else rows
    )
    if fresh:
        conn.exec_driver_sql(_INSERT_SQLITE, fresh)
    return existing


_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
_RECORD_COLUMNS = [c for c in usage_records.c if c.name != "id"]
RECORD_NAMES = [c.name for c in _RECORD_COLUMNS]  # a record's columns, in insert order
_AT_ACCOUNT, _AT_SERVICE, _AT_NATURAL_ID = map(
    RECORD_NAMES.index, ("account_id", "service", "natural_id")
)
_EXISTING_IDS_SQLITE = (
    "SELECT natural_id FROM usage_records WHERE account_id = ? AND service = ?"
    " AND natural_id IN (SELECT value FROM json_each(?))"
)
_INSERT_SQLITE = "INSERT INTO usage_records ({}) VALUES ({})".format(
    ", ".join(c.name for c in _RECORD_COLUMNS), ", ".join("?" for _ in _RECORD_COLUMNS)
)


def _pg_array_type(column: sa.Column[Any]) -> str:
    if isinstance(column.type, sa.BigInteger):
        return "bigint[]"
    return "text[]" if isinstance(column.type, sa.Text) else "varchar[]"


_insert_unnest_pg = sa.text(
    "INSERT INTO usage_records ({names}) SELECT * FROM unnest({arrays}) "
    "ON CONFLICT (account_id, service, natural_id) DO NOTHING "
    "RETURNING service, natural_id".format(
        names=", ".join(c.name for c in _RECORD_COLUMNS),
        arrays=", ".join(f"CAST(:{c.name} AS {_pg_array_type(c)})" for c in _RECORD_COLUMNS),
    )
)


_insert_record = Prepared(usage_records.insert(), RECORD_NAMES)


def _rollup_parts_pg(source: str) -> str:
    """PostgreSQL: the three rollup upserts as CTEs, adding `:r_records` records with their
    sums; each adds only if `source` (a FROM clause, or '') yields a row."""
    columns = "records, quantity, duration_seconds, cost_micros, delivered"
    sums = ":r_records, :r_quantity, :r_duration, :r_cost, 0"
    parts = []
    for name, table, keys, key_values in (
        (
            "rolled",
            "usage_rollups",
            "account_id, local_date, service, sub_type, consumer, campaign_id",
            ":r_account, :r_date, :r_service, :r_sub_type, :r_consumer, :r_campaign",
        ),
        (
            "monthly",
            "usage_rollups_monthly",
            "account_id, month, service, sub_type, consumer, campaign_id",
            ":r_account, :r_month, :r_service, :r_sub_type, :r_consumer, :r_campaign",
        ),
        (
            "day_service",
            "usage_rollups_day_service",
            "account_id, local_date, service",
            ":r_account, :r_date, :r_service",
        ),
    ):
        added = ", ".join(
            f"{c} = {table}.{c} + EXCLUDED.{c}"
            for c in ("records", "quantity", "duration_seconds", "cost_micros")
        )
        parts.append(
            f"{name} AS (INSERT INTO {table} ({keys}, {columns})"
            f" SELECT {key_values}, {sums} {source}"
            f" ON CONFLICT ({keys}) DO UPDATE SET {added})"
        )
    return ", ".join(parts)


def _record_ctes_pg(on_conflict: str = "", in_posting: bool = False) -> str:
    """PostgreSQL: a record (binds named rec_<column>) and its three rollup upserts, as
    CTEs; the rollups only add when the record was inserted. `in_posting`: a part of the
    posting's statement (store.apply_posting), written only once its balance row is
    updated, so the row lock comes first (and nothing is written when it is not)."""
    values = ", ".join(f":rec_{name}" for name in RECORD_NAMES)
    rows = f"SELECT {values} FROM balance" if in_posting else f"VALUES ({values})"
    return (
        "record AS (INSERT INTO usage_records ({names}) {rows}{on_conflict}"
        " RETURNING id), {rollups}".format(
            names=", ".join(RECORD_NAMES),
            rows=rows,
            on_conflict=on_conflict,
            rollups=_rollup_parts_pg("FROM record"),
        )
    )


_RECORD_CTES_PG = _record_ctes_pg(in_posting=True)
_insert_record_rolled_up_pg = Prepared(sa.text(f"WITH {_record_ctes_pg()} SELECT 1"))
_insert_record_once_pg = Prepared(
    sa.text(
        "WITH {ctes} SELECT id FROM record".format(
            ctes=_record_ctes_pg(" ON CONFLICT (account_id, service, natural_id) DO NOTHING")
        )
    )
)
_insert_record_once_sqlite = Prepared(
    sqlite_insert(usage_records).on_conflict_do_nothing(
        index_elements=[
            usage_records.c.account_id,
            usage_records.c.service,
            usage_records.c.natural_id,
        ]
    ),
    RECORD_NAMES,
)
# PostgreSQL: the three rollup upserts of one group in one statement.
_add_rollup_pg = Prepared(sa.text(f"WITH {_rollup_parts_pg('')} SELECT 1"))

"""SQL for the ledger: the only module that reads and writes the ledger tables.

Every function takes the transaction's connection; the service layer owns the transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from usagewatch.adapters.db.prepared import Prepared
from usagewatch.adapters.db.schema import (
    accounts,
    balances,
    credit_lots,
    daily_charges,
    holds,
    journal_entries,
    journal_movements,
    usage_records,
)
from usagewatch.domain.clock import from_micros, to_micros
from usagewatch.domain.ledger import USAGE_KINDS, Lot, LotKind, Posting
from usagewatch.domain.money import Money

BALANCE_CHANNEL = "usagewatch_balance"


@dataclass(slots=True)
class AccountState:
    """An account's balance row (and the account facts commands need), held under lock."""

    account_id: str
    currency: str
    timezone: str
    status: str
    paid_micros: int
    promotional_micros: int
    reserved_micros: int
    overdraft_micros: int
    next_expiry_at_us: int | None
    version: int
    updated_at_us: int
    inbound_at_zero: str
    account_created_at_us: int
    config_version: int

    @property
    def available_micros(self) -> int:
        return self.paid_micros + self.promotional_micros - self.reserved_micros


_STATE_COLUMNS = (
    accounts.c.id.label("account_id"),
    accounts.c.currency,
    accounts.c.timezone,
    accounts.c.status,
    balances.c.paid_micros,
    balances.c.promotional_micros,
    balances.c.reserved_micros,
    balances.c.overdraft_micros,
    balances.c.next_expiry_at_us,
    balances.c.version,
    balances.c.updated_at_us,
    accounts.c.inbound_at_zero,
    accounts.c.created_at_us.label("account_created_at_us"),
    accounts.c.config_version,
)
_STATE_FROM = balances.join(accounts, accounts.c.id == balances.c.account_id)

# The statements of the hot paths (every command, every balance read) are built once, here,
# and run through the driver (`Prepared`): building and executing a statement through
# SQLAlchemy costs more Python time than running it. Values travel as bind parameters.
_read_state_query = (
    sa.select(*_STATE_COLUMNS)
    .select_from(_STATE_FROM)
    .where(balances.c.account_id == sa.bindparam("account"))
)
_read_state = Prepared(_read_state_query)


def read_account_state(conn: Connection, account_id: str) -> AccountState | None:
    row = _read_state.first(conn, {"account": account_id})
    return AccountState(*row) if row is not None else None


_LOT_COLUMNS = (
    credit_lots.c.id,
    credit_lots.c.kind,
    credit_lots.c.amount_micros,
    credit_lots.c.remaining_micros,
    credit_lots.c.held_micros,
    credit_lots.c.expires_at_us,
    credit_lots.c.created_seq,
)
_OPEN_LOT = (
    credit_lots.c.account_id == sa.bindparam("account"),
    credit_lots.c.remaining_micros > 0,
)


def _lot(
    lot_id: str, kind: str, amount: int, remaining: int, held: int, expires: int | None, seq: int
) -> Lot:
    return Lot(
        id=lot_id,
        kind=LotKind(kind),
        amount=Money(amount),
        remaining=Money(remaining),
        held=Money(held),
        expires_at=from_micros(expires) if expires is not None else None,
        created_seq=seq,
    )


def insert_lot(
    conn: Connection, account_id: str, lot: Lot, description: str | None, now: datetime
) -> None:
    conn.execute(
        credit_lots.insert().values(
            id=lot.id,
            account_id=account_id,
            kind=lot.kind.value,
            amount_micros=lot.amount.micros,
            remaining_micros=0,  # the posting's movement brings it to its amount
            held_micros=0,
            expires_at_us=to_micros(lot.expires_at) if lot.expires_at else None,
            description=description,
            created_at_us=to_micros(now),
            created_seq=lot.created_seq,
        )
    )


@dataclass(frozen=True, slots=True)
class PriorEntry:
    fingerprint: str | None
    result_json: str | None


_PRIOR_COLUMNS = (journal_entries.c.request_fingerprint, journal_entries.c.result_json)


def _nulls(columns: Iterable[sa.Column[Any]]) -> list[Any]:
    return [sa.cast(sa.null(), c.type) for c in columns]


# The entry written with this key (part 0, at most one row), then the open lots (part 1).
_prior_and_open_lots = Prepared(
    sa.union_all(
        sa.select(sa.literal_column("0"), *_PRIOR_COLUMNS, *_nulls(_LOT_COLUMNS)).where(
            journal_entries.c.account_id == sa.bindparam("account"),
            journal_entries.c.idempotency_key == sa.bindparam("key"),
        ),
        sa.select(sa.literal_column("1"), *_nulls(_PRIOR_COLUMNS), *_LOT_COLUMNS).where(*_OPEN_LOT),
    )
)


def load_book(
    conn: Connection, account_id: str, key: str | None
) -> tuple[PriorEntry | None, list[Lot]]:
    """Under the account lock: the entry a command with this idempotency key already wrote
    (if any) and the account's open lots, in one round trip."""
    prior = None
    lots = []
    for row in _prior_and_open_lots.all(conn, {"account": account_id, "key": key or ""}):
        if row[0] == 0:
            prior = PriorEntry(row[1], row[2])
        else:
            lots.append(_lot(*row[3:]))
    return prior, lots


@dataclass(frozen=True, slots=True)
class Locked:
    """What a command starts from, read under its account lock: the account's state, the
    entry a command with its idempotency key already wrote (if any), the open lots, and
    (when asked for) the row of the usage record it charges, if that exists already."""

    state: AccountState
    prior: PriorEntry | None
    lots: list[Lot]
    usage_row: Sequence[Any] | None


def _lock_and_load_query(usage: bool, lock: bool) -> Prepared:
    """The balance row (locked), the journal's last version, the entry of the key, the open
    lots (one row each; the rest repeats) and optionally the usage record of a natural id."""
    prior = journal_entries.alias("prior")
    last_version = (
        sa.select(sa.func.coalesce(sa.func.max(journal_entries.c.version), 0))
        .where(journal_entries.c.account_id == balances.c.account_id)
        .scalar_subquery()
    )
    source = _STATE_FROM.outerjoin(
        prior,
        sa.and_(
            prior.c.account_id == balances.c.account_id,
            prior.c.idempotency_key == sa.bindparam("key"),
        ),
    ).outerjoin(
        credit_lots,
        sa.and_(
            credit_lots.c.account_id == balances.c.account_id, credit_lots.c.remaining_micros > 0
        ),
    )
    columns: list[Any] = [
        *_STATE_COLUMNS,
        last_version,
        prior.c.id,
        prior.c.request_fingerprint,
        prior.c.result_json,
        *_LOT_COLUMNS,
    ]
    if usage:
        source = source.outerjoin(
            usage_records,
            sa.and_(
                usage_records.c.account_id == balances.c.account_id,
                usage_records.c.service == sa.bindparam("service"),
                usage_records.c.natural_id == sa.bindparam("natural_id"),
            ),
        )
        columns += list(usage_records.c)
    query = (
        sa.select(*columns)
        .select_from(source)
        .where(balances.c.account_id == sa.bindparam("account"))
    )
    return Prepared(query.with_for_update(of=balances) if lock else query)


# (usage record wanted, PostgreSQL row lock) -> the statement
_LOCK_AND_LOAD = {
    (usage, lock): _lock_and_load_query(usage, lock)
    for usage in (False, True)
    for lock in (False, True)
}
# A usage record by its natural id (usage_store.find_record runs it too).
FIND_USAGE_RECORD = Prepared(
    sa.select(*usage_records.c).where(
        usage_records.c.account_id == sa.bindparam("account"),
        usage_records.c.service == sa.bindparam("service"),
        usage_records.c.natural_id == sa.bindparam("natural_id"),
    )
)


def lock_and_load(
    conn: Connection, account_id: str, key: str | None, usage: tuple[str, str] | None = None
) -> Locked | None:
    """Lock the account's balance row until the transaction ends (PostgreSQL row lock; on
    SQLite the transaction already holds the database's write lock) and read what a command
    starts from (`Locked`), in one statement; None: no such account. `usage`: (service,
    natural id) of a usage record to read too.

    On PostgreSQL a statement that waited for the lock saw the rest of the database as it
    was when the statement began, before the transaction it waited for committed: then the
    journal's last version is behind the locked row's, and the book (and the usage record)
    is read again, now that the lock is held."""
    is_pg = conn.dialect.name == "postgresql"
    params = {"account": account_id, "key": key or ""}
    if usage is not None:
        params["service"], params["natural_id"] = usage
    rows = _LOCK_AND_LOAD[(usage is not None, is_pg)].all(conn, params)
    if not rows:
        return None
    width = len(_STATE_COLUMNS)
    state = AccountState(*rows[0][:width])
    last_version, prior_id, fingerprint, result_json = rows[0][width : width + 4]
    lots_at = width + 4
    usage_at = lots_at + len(_LOT_COLUMNS)
    if last_version != state.version:  # read before the lock was granted: read again
        prior, lots = load_book(conn, account_id, key)
        usage_row = None
        if usage is not None:
            usage_row = FIND_USAGE_RECORD.first(
                conn, {"account": account_id, "service": usage[0], "natural_id": usage[1]}
            )
        return Locked(state, prior, lots, usage_row)
    prior = PriorEntry(fingerprint, result_json) if prior_id is not None else None
    lots = [_lot(*row[lots_at:usage_at]) for row in rows if row[lots_at] is not None]
    usage_row = None
    if usage is not None and rows[0][usage_at] is not None:
        usage_row = rows[0][usage_at:]
    return Locked(state, prior, lots, usage_row)


class StaleState(Exception):
    """A posting from a state read without the account lock found the balance row or the
    account's configuration changed since (`apply_posting(unlocked=True)`)."""


@dataclass(frozen=True, slots=True)
class Write:
    """A write a command makes beside a posting (a usage record and its rollups, a
    campaign's spend). On PostgreSQL it goes into the posting's statement as data-modifying
    CTEs (`ctes`, whose bind names are its own), so a charge is one statement; alone, or on
    SQLite, `run` makes it."""

    name: str  # names the shape of `ctes`: the composed statements are built once per shape
    ctes: str
    params: dict[str, Any]
    run: Callable[[Connection], None]


def run_writes(conn: Connection, writes: Sequence[Write]) -> None:
    """Writes without a posting to ride with."""
    for write in writes:
        write.run(conn)


@dataclass(frozen=True, slots=True)
class EntryMeta:
    idempotency_key: str
    local_date: str
    hold_id: str | None = None
    lot_id: str | None = None
    reference: str | None = None
    description: str | None = None
    fingerprint: str | None = None
    result_json: str | None = None
    # when the entry took effect, if before the command that writes it (a forfeit noticed
    # after its lot's expiry); None: now
    created_at_us: int | None = None


def apply_posting(
    conn: Connection,
    state: AccountState,
    posting: Posting,
    lot_kinds: dict[str, LotKind],
    next_expiry_at_us: int | None,
    meta: EntryMeta,
    now_us: int,
    also: Sequence[Write] = (),
    unlocked: bool = False,
) -> None:
    """Write one posting: lot updates, the balance row, the journal entry and its movements,
    and today's charge total, and the writes `also`. Updates `state` in place.

    `unlocked` (PostgreSQL only): `state` was not read under the account lock but is what
    this process last saw committed (`LedgerService.run_command(unlocked_ok=True)`); the
    balance row is updated only if its version and the account's config_version are still
    those of `state` -- that update takes the lock -- else the statement writes nothing and
    `StaleState` is raised. The statement is held back (`Prepared.first_deferred`): when
    nothing else runs in the transaction, it runs at commit as the whole transaction."""
    paid_delta = promotional_delta = 0
    for m in posting.movements:
        if lot_kinds[m.lot_id] is LotKind.PAID:
            paid_delta += m.remaining_delta.micros
        else:
            promotional_delta += m.remaining_delta.micros
    old_version = state.version
    state.paid_micros += paid_delta - posting.overdraft_delta.micros
    state.promotional_micros += promotional_delta
    state.reserved_micros += posting.reserved_delta.micros
    state.overdraft_micros += posting.overdraft_delta.micros
    state.next_expiry_at_us = next_expiry_at_us
    state.version += 1
    state.updated_at_us = now_us
    balance = {
        "account": state.account_id,
        "old_version": old_version,
        "version": state.version,
        "paid": state.paid_micros,
        "promotional": state.promotional_micros,
        "reserved": state.reserved_micros,
        "overdraft": state.overdraft_micros,
        "next_expiry": state.next_expiry_at_us,
        "now": now_us,
    }
    entry = {
        "account_id": state.account_id,
        "version": state.version,
        "kind": posting.kind.value,
        "amount_micros": posting.amount.micros,
        "reserved_delta_micros": posting.reserved_delta.micros,
        "overdraft_delta_micros": posting.overdraft_delta.micros,
        "available_after_micros": state.available_micros,
        "hold_id": meta.hold_id,
        "lot_id": meta.lot_id,
        "reference": meta.reference,
        "description": meta.description,
        "idempotency_key": meta.idempotency_key,
        "request_fingerprint": meta.fingerprint,
        "result_json": meta.result_json,
        "local_date": meta.local_date,
        "created_at_us": meta.created_at_us if meta.created_at_us is not None else now_us,
    }
    charge = (
        -posting.amount.micros
        if posting.kind in USAGE_KINDS and posting.amount.is_negative()
        else 0
    )
    if conn.dialect.name == "postgresql":
        # One statement for the whole posting and the writes beside it, and the NOTIFY that
        # tells every process's balance listeners (delivered when the transaction commits,
        # once per transaction).
        extra: dict[str, Any] = {}
        for write in also:
            extra.update(write.params)
        statement = _posting_pg(tuple(w.name for w in also), tuple(w.ctes for w in also))
        params = {
            **extra,
            **balance,
            **entry,
            "lot_ids": [m.lot_id for m in posting.movements],
            "remaining_deltas": [m.remaining_delta.micros for m in posting.movements],
            "held_deltas": [m.held_delta.micros for m in posting.movements],
            "channel": BALANCE_CHANNEL,
            "charge": charge,
            "expect_config": state.config_version if unlocked else None,
        }
        if unlocked:  # alone in its transaction, it is the transaction (one round trip)
            statement.first_deferred(conn, params, lambda row: _check_unlocked(row, state))
        elif statement.first(conn, params) is None:
            raise AssertionError("the balance row changed under our lock")
        return
    assert not unlocked, "only PostgreSQL commands run from a state read without the lock"
    run_writes(conn, also)
    if posting.movements:
        _update_lot.executemany(
            conn,
            [
                {
                    "lot": m.lot_id,
                    "remaining_delta": m.remaining_delta.micros,
                    "held_delta": m.held_delta.micros,
                }
                for m in posting.movements
            ],
        )
    updated = _update_balance.run(conn, balance)
    assert updated == 1, "the balance row changed under our lock"
    entry_id = _insert_entry.scalar(conn, entry)
    if posting.movements:
        _insert_movements.executemany(
            conn,
            [
                {
                    "entry_id": entry_id,
                    "lot_id": m.lot_id,
                    "remaining_delta_micros": m.remaining_delta.micros,
                    "held_delta_micros": m.held_delta.micros,
                    "account_id": state.account_id,
                }
                for m in posting.movements
            ],
        )
    if charge:
        _upsert_daily_charge_sqlite.run(
            conn, {"account": state.account_id, "date": meta.local_date, "micros": charge}
        )


def _check_unlocked(row: Sequence[Any] | None, state: AccountState) -> None:
    if row is None:  # the statement wrote nothing: every part of it reads `balance`
        raise StaleState(state.account_id)


_update_lot = Prepared(
    credit_lots.update()
    .where(credit_lots.c.id == sa.bindparam("lot"))
    .values(
        remaining_micros=credit_lots.c.remaining_micros + sa.bindparam("remaining_delta"),
        held_micros=credit_lots.c.held_micros + sa.bindparam("held_delta"),
    )
)

_update_balance = Prepared(
    balances.update()
    .where(
        balances.c.account_id == sa.bindparam("account"),
        balances.c.version == sa.bindparam("old_version"),
    )
    .values(
        paid_micros=sa.bindparam("paid"),
        promotional_micros=sa.bindparam("promotional"),
        reserved_micros=sa.bindparam("reserved"),
        overdraft_micros=sa.bindparam("overdraft"),
        next_expiry_at_us=sa.bindparam("next_expiry"),
        version=sa.bindparam("version"),
        updated_at_us=sa.bindparam("now"),
    )
)

_ENTRY_NAMES = [c.name for c in journal_entries.c if c.name != "id"]
_insert_entry = Prepared(journal_entries.insert().returning(journal_entries.c.id), _ENTRY_NAMES)
_insert_movements = Prepared(
    journal_movements.insert(),
    ["entry_id", "lot_id", "remaining_delta_micros", "held_delta_micros", "account_id"],
)

_ENTRY_COLUMNS = (
    "account_id, version, kind, amount_micros, reserved_delta_micros, overdraft_delta_micros,"
    " available_after_micros, hold_id, lot_id, reference, description, idempotency_key,"
    " request_fingerprint, result_json, local_date, created_at_us"
)

# PostgreSQL: _update_balance, _update_lot, _insert_entry and _insert_movements in one
# statement (data-modifying CTEs; each runs exactly once, constraints and foreign keys are
# checked as usual), the day's charge total and the balance NOTIFY. The order in which a
# statement's CTEs run is not defined, so every other write reads `balance`: it waits for
# the balance row's update, which takes (or, under the lock, keeps) the row lock first --
# the lock order of every command -- and writes nothing when that update matched no row.
# Returns the entry id; no row when the balance row was not updated.
_POSTING_PG = f"""
    WITH balance AS (
        UPDATE balances
        SET paid_micros = :paid, promotional_micros = :promotional,
            reserved_micros = :reserved, overdraft_micros = :overdraft,
            next_expiry_at_us = :next_expiry, version = :version, updated_at_us = :now
        WHERE account_id = :account AND version = :old_version
            AND (CAST(:expect_config AS bigint) IS NULL OR EXISTS (
                SELECT 1 FROM accounts
                WHERE id = :account AND config_version = CAST(:expect_config AS bigint)))
        RETURNING 1
    ), {{extra}} moves AS (
        SELECT m.lot_id, m.remaining_delta, m.held_delta
        FROM unnest(
            CAST(:lot_ids AS varchar[]),
            CAST(:remaining_deltas AS bigint[]),
            CAST(:held_deltas AS bigint[])
        ) AS m (lot_id, remaining_delta, held_delta)
    ), lots AS (
        UPDATE credit_lots
        SET remaining_micros = credit_lots.remaining_micros + moves.remaining_delta,
            held_micros = credit_lots.held_micros + moves.held_delta
        FROM moves CROSS JOIN balance
        WHERE credit_lots.id = moves.lot_id
    ), entry AS (
        INSERT INTO journal_entries ({_ENTRY_COLUMNS})
        SELECT {", ".join(":" + c.strip() for c in _ENTRY_COLUMNS.split(","))} FROM balance
        RETURNING id
    ), moved AS (
        INSERT INTO journal_movements
            (entry_id, lot_id, remaining_delta_micros, held_delta_micros, account_id)
        SELECT entry.id, moves.lot_id, moves.remaining_delta, moves.held_delta, :account
        FROM entry CROSS JOIN moves
    ), charged AS (
        INSERT INTO daily_charges (account_id, local_date, charged_micros)
        SELECT :account, :local_date, CAST(:charge AS bigint) FROM balance
        WHERE CAST(:charge AS bigint) > 0
        ON CONFLICT (account_id, local_date)
        DO UPDATE SET charged_micros = daily_charges.charged_micros + EXCLUDED.charged_micros
    )
    SELECT entry.id, pg_notify(:channel, :account) FROM entry
    """
_POSTINGS_PG: dict[tuple[str, ...], Prepared] = {}
_POSTINGS_PG_LOCK = threading.Lock()


def _posting_pg(names: tuple[str, ...], ctes: tuple[str, ...]) -> Prepared:
    """The posting statement with the CTEs of writes beside it (built once per shape)."""
    found = _POSTINGS_PG.get(names)
    if found is None:
        extra = "".join(f"{part}, " for part in ctes)
        with _POSTINGS_PG_LOCK:
            found = _POSTINGS_PG.setdefault(
                names, Prepared(sa.text(_POSTING_PG.replace("{extra}", extra)))
            )
    return found


def _upsert_daily_charge(insert: Any) -> Any:
    stmt = insert(daily_charges).values(
        account_id=sa.bindparam("account"),
        local_date=sa.bindparam("date"),
        charged_micros=sa.bindparam("micros"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[daily_charges.c.account_id, daily_charges.c.local_date],
        set_={"charged_micros": daily_charges.c.charged_micros + stmt.excluded.charged_micros},
    )


_upsert_daily_charge_sqlite = Prepared(_upsert_daily_charge(sqlite_insert))


# The balance row with the account's day totals since a date, in one round trip (the
# caller picks today's and this month's once it knows the account's time zone).
_balance_with_days = (
    sa.select(*_STATE_COLUMNS, daily_charges.c.local_date, daily_charges.c.charged_micros)
    .select_from(
        _STATE_FROM.outerjoin(
            daily_charges,
            sa.and_(
                daily_charges.c.account_id == balances.c.account_id,
                daily_charges.c.local_date >= sa.bindparam("since"),
            ),
        )
    )
    .where(balances.c.account_id == sa.bindparam("account"))
)


def read_balance_with_days(
    conn: Connection, account_id: str, since: str
) -> tuple[AccountState, dict[str, int]] | None:
    """The account's balance row and {local date: charged micros} for days >= since."""
    rows = conn.execute(_balance_with_days, {"account": account_id, "since": since}).all()
    if not rows:
        return None
    width = len(_STATE_COLUMNS)
    days = {row[width]: int(row[width + 1]) for row in rows if row[width] is not None}
    return AccountState(*rows[0][:width]), days


_promotional_expiries = (
    sa.select(credit_lots.c.expires_at_us, sa.func.sum(credit_lots.c.remaining_micros))
    .where(
        credit_lots.c.account_id == sa.bindparam("account"),
        credit_lots.c.remaining_micros > 0,
        credit_lots.c.kind == LotKind.PROMOTIONAL.value,
        credit_lots.c.expires_at_us > sa.bindparam("now"),
    )
    .group_by(credit_lots.c.expires_at_us)
    .order_by(credit_lots.c.expires_at_us)
)


def promotional_expiries(conn: Connection, account_id: str, now_us: int) -> list[tuple[int, int]]:
    """[(expires_at_us, remaining_micros)] of unexpired promotional money, soonest first."""
    rows = conn.execute(_promotional_expiries, {"account": account_id, "now": now_us})
    return [(int(r[0]), int(r[1])) for r in rows]


# -- holds ------------------------------------------------------------------------------
@dataclass(slots=True)
class HoldRow:
    id: str
    account_id: str
    reference: str
    amount_micros: int
    status: str
    expires_at_us: int
    created_at_us: int
    closed_at_us: int | None
    captured_micros: int | None


_HOLD_NAMES = [c.name for c in holds.c]
_find_hold = Prepared(
    sa.select(*holds.c).where(
        holds.c.account_id == sa.bindparam("account"),
        holds.c.reference == sa.bindparam("reference"),
    )
)
_insert_hold = Prepared(holds.insert(), _HOLD_NAMES)
_update_hold = Prepared(
    holds.update()
    .where(holds.c.id == sa.bindparam("hold"))
    .values({c: sa.bindparam(f"new_{c.name}") for c in holds.c if c.name != "id"})
)
_held = sa.func.sum(journal_movements.c.held_delta_micros)
_hold_allocations = Prepared(
    sa.select(journal_movements.c.lot_id, _held)
    .join(journal_entries, journal_entries.c.id == journal_movements.c.entry_id)
    .where(journal_entries.c.hold_id == sa.bindparam("hold"))
    .group_by(journal_movements.c.lot_id)
    .having(_held != 0)
)


def find_hold(conn: Connection, account_id: str, reference: str) -> HoldRow | None:
    row = _find_hold.first(conn, {"account": account_id, "reference": reference})
    return HoldRow(*row) if row is not None else None


def holds_of(conn: Connection, account_id: str, references: list[str]) -> dict[str, HoldRow]:
    """The holds of these references (call sids), by reference; one query."""
    if not references:
        return {}
    query = sa.select(*holds.c).where(
        holds.c.account_id == account_id, holds.c.reference.in_(references)
    )
    return {row.reference: HoldRow(*row) for row in conn.execute(query)}


def insert_hold(conn: Connection, hold: HoldRow) -> None:
    _insert_hold.run(conn, {name: getattr(hold, name) for name in _HOLD_NAMES})


def update_hold(conn: Connection, hold: HoldRow) -> None:
    values = {f"new_{name}": getattr(hold, name) for name in _HOLD_NAMES if name != "id"}
    _update_hold.run(conn, {"hold": hold.id, **values})


def hold_allocations(conn: Connection, hold_id: str) -> dict[str, Money]:
    """What an open hold reserves on each lot, summed from its journal movements."""
    rows = _hold_allocations.all(conn, {"hold": hold_id})
    return {lot_id: Money(int(micros)) for lot_id, micros in rows}


def due_holds(conn: Connection, now_us: int, limit: int) -> list[tuple[str, str]]:
    rows = conn.execute(
        sa.select(holds.c.account_id, holds.c.reference)
        .where(holds.c.status == "open", holds.c.expires_at_us <= now_us)
        .order_by(holds.c.expires_at_us, holds.c.created_at_us, holds.c.id)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows]


def accounts_with_due_lots(conn: Connection, now_us: int, limit: int) -> list[str]:
    rows = conn.execute(
        sa.select(credit_lots.c.account_id)
        .where(
            credit_lots.c.expires_at_us <= now_us,
            credit_lots.c.remaining_micros > credit_lots.c.held_micros,
        )
        .distinct()
        .limit(limit)
    )
    return [r[0] for r in rows]


def next_due_at_us(conn: Connection) -> int | None:
    """The soonest instant at which a hold or a promotional lot falls due."""
    hold_due = conn.execute(
        sa.select(sa.func.min(holds.c.expires_at_us)).where(holds.c.status == "open")
    ).scalar()
    lot_due = conn.execute(
        sa.select(sa.func.min(credit_lots.c.expires_at_us)).where(
            credit_lots.c.remaining_micros > credit_lots.c.held_micros
        )
    ).scalar()
    candidates = [int(v) for v in (hold_due, lot_due) if v is not None]
    return min(candidates) if candidates else None


def count_open_holds(conn: Connection) -> int:
    return int(
        conn.execute(sa.select(sa.func.count()).where(holds.c.status == "open")).scalar_one()
    )


_bump_config = (
    accounts.update()
    .where(accounts.c.id == sa.bindparam("account"))
    .values(config_version=accounts.c.config_version + 1)
)


def bump_config(conn: Connection, account_id: str) -> None:
    """What the ledger's triggers read for this account changed: caches keyed by the old
    `config_version` go stale (see `usagewatch.adapters.db.config_cache`)."""
    conn.execute(_bump_config, {"account": account_id})

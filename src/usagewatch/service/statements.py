"""Monthly statements: at the start of each account-local month, the previous month's usage
as CSV and PDF, stored in the `statements` table (bytes, one row per account and month).

The job keeps one `statement_schedule` row per account: the next month owed and the instant
it falls due (the start of the month after it). New accounts are scheduled from the month
they were created in. A run produces each due month once: the files are rendered outside
any write lock, then one transaction inserts the statement (UNIQUE account+month, a second
producer's insert does nothing) and advances the schedule by compare-and-set. After
downtime it catches up month by month. Under the test clock, `advance` stops at each due
instant, so a statement is produced "at" its month start.

The same transaction records a `monthly_statement` notice: the outbox delivers it to the
account's billing recipients (`…/notification-settings`), by email with both files
attached, and to the dashboard inbox.

Revisions: usage can arrive for a month already stated (batch events are dated when they
happened, up to 90 days back). The write that adds it (`mark_revisions`, in the same
transaction, under the account's schedule row lock) lists the month in
`statement_revisions_due`; the job then makes the month again as revision n + 1, which
supersedes the one before (kept as it was sent) and is announced like the first. Usage
committed while a month was being rendered is caught too: the producing transaction takes
the same lock and compares the month's rollup sums with those read before rendering.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import (
    accounts,
    statement_revisions_due,
    statement_schedule,
    statements,
    usage_rollups_monthly,
)
from usagewatch.domain.clock import Clock, from_micros, month_key, next_month_start, to_micros
from usagewatch.domain.errors import NotFound
from usagewatch.domain.money import MICROS_PER_UNIT, Money
from usagewatch.service import notifications
from usagewatch.service.exports import ExportService
from usagewatch.service.ledger import new_id
from usagewatch.service.notifications import Notice
from usagewatch.service.reports import Period, account_info

SWEEP_BATCH_MAX = 50  # statements rendered per run (a run repeats while work is left)


@dataclass(frozen=True, slots=True)
class StatementView:
    id: str
    account_id: str
    month: str
    currency: str
    records: int
    total_micros: int
    csv_bytes: int
    pdf_bytes: int
    created_at_us: int
    revision: int  # 1, then 2, 3, ... for each revision of the month
    supersedes_id: str | None  # the revision before; None for revision 1


def month_period(month: str) -> Period:
    first = date.fromisoformat(f"{month}-01")
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return Period(first, following - timedelta(days=1))


class StatementService:
    slow = True  # rendering a month of a big account takes seconds: its own sweeper lane

    def __init__(self, db: Database, clock: Clock, exports: ExportService) -> None:
        self.db = db
        self.clock = clock
        self.exports = exports
        self.public_url = "http://127.0.0.1:8000"

    # -- the scheduler's job -------------------------------------------------------------
    def run_due(self) -> int:
        now_us = to_micros(self.clock.now())
        done = self._schedule_new_accounts()
        with self.db.read() as conn:
            due = conn.execute(
                sa.select(
                    statement_schedule.c.account_id,
                    statement_schedule.c.next_month,
                    statement_schedule.c.next_due_at_us,
                )
                .where(statement_schedule.c.next_due_at_us <= now_us)
                .order_by(statement_schedule.c.next_due_at_us)
                .limit(SWEEP_BATCH_MAX)
            ).all()
            revisions = conn.execute(
                sa.select(statement_revisions_due.c.account_id, statement_revisions_due.c.month)
                .order_by(statement_revisions_due.c.since_us)
                .limit(SWEEP_BATCH_MAX)
            ).all()
        for account_id, month, due_at_us in due:
            done += self._produce(account_id, month, due_at_us)
        for account_id, month in revisions:
            done += self._produce(account_id, month, None)
        return done

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            if (
                self._unscheduled(conn, 1)
                or conn.execute(sa.select(statement_revisions_due.c.account_id).limit(1)).first()
            ):
                return self.clock.now()
            due = conn.execute(sa.select(sa.func.min(statement_schedule.c.next_due_at_us))).scalar()
        return from_micros(int(due)) if due is not None else None

    def _unscheduled(self, conn: sa.Connection, limit: int) -> list[sa.Row]:  # type: ignore[type-arg]
        a, s = accounts.c, statement_schedule.c
        return list(
            conn.execute(
                sa.select(a.id, a.timezone, a.created_at_us)
                .select_from(accounts.outerjoin(statement_schedule, s.account_id == a.id))
                .where(s.account_id.is_(None))
                .limit(limit)
            ).all()
        )

    def _schedule_new_accounts(self) -> int:
        with self.db.read() as conn:
            new = self._unscheduled(conn, 1000)
        if not new:
            return 0
        insert = statement_schedule.insert()
        with self.db.write() as conn:
            for account_id, timezone, created_at_us in new:
                created = from_micros(created_at_us)
                exists = conn.execute(
                    sa.select(statement_schedule.c.account_id).where(
                        statement_schedule.c.account_id == account_id
                    )
                ).first()
                if exists is None:
                    conn.execute(
                        insert.values(
                            account_id=account_id,
                            next_month=month_key(created, timezone),
                            next_due_at_us=to_micros(next_month_start(created, timezone)),
                        )
                    )
        return len(new)

    def _produce(self, account_id: str, month: str, due_at_us: int | None) -> int:
        """Make the statement of `month`: the one due at `due_at_us`, or (None) the
        revision owed to it. 1 if this call made it, 0 if another worker did."""
        period = month_period(month)
        with self.db.read() as conn:
            info = account_info(conn, account_id)
            sums_before = _month_sums(conn, account_id, month)
        csv_bytes = b"".join(self.exports.csv(account_id, period, None))
        pdf_bytes = self.exports.pdf(account_id, period, None)
        records, total = _csv_totals(csv_bytes)
        now_us = to_micros(self.clock.now())
        with self.db.write() as conn:
            # The schedule row is the account's statement lock (see mark_revisions).
            if due_at_us is not None:
                following = (period.last + timedelta(days=1)).isoformat()[:7]
                # due_at is the start of the following month; the one after is due next
                following_due = next_month_start(from_micros(due_at_us), info.timezone)
                advanced = conn.execute(
                    statement_schedule.update()
                    .where(
                        statement_schedule.c.account_id == account_id,
                        statement_schedule.c.next_month == month,
                    )
                    .values(next_month=following, next_due_at_us=to_micros(following_due))
                ).rowcount
                if advanced != 1:
                    return 0  # another worker produced it
                earlier = None
            else:
                _lock_schedule(conn, account_id)
                taken = conn.execute(
                    statement_revisions_due.delete().where(
                        statement_revisions_due.c.account_id == account_id,
                        statement_revisions_due.c.month == month,
                    )
                ).rowcount
                if taken != 1:
                    return 0  # another worker made the revision
                earlier = conn.execute(
                    sa.select(statements.c.id, statements.c.revision, statements.c.total_micros)
                    .where(statements.c.account_id == account_id, statements.c.month == month)
                    .order_by(statements.c.revision.desc())
                    .limit(1)
                ).first()
            view = StatementView(
                id=new_id("stmt"),
                account_id=account_id,
                month=month,
                currency=info.currency,
                records=records,
                total_micros=total,
                csv_bytes=len(csv_bytes),
                pdf_bytes=len(pdf_bytes),
                created_at_us=now_us,
                revision=earlier.revision + 1 if earlier is not None else 1,
                supersedes_id=earlier.id if earlier is not None else None,
            )
            conn.execute(
                statements.insert().values(
                    id=view.id,
                    account_id=account_id,
                    month=month,
                    currency=info.currency,
                    records=records,
                    total_micros=total,
                    csv=csv_bytes,
                    pdf=pdf_bytes,
                    created_at_us=now_us,
                    revision=view.revision,
                    supersedes_id=view.supersedes_id,
                )
            )
            if _month_sums(conn, account_id, month) != sums_before:
                # usage for the month committed while it was rendered: make it again
                _owe_revision(conn, account_id, month, now_us)
            amount = f"{info.currency} {Money(total).display()}"
            if earlier is None:
                message = (
                    f"The usage statement of account {account_id} for {month} is ready: "
                    f"{records:,} records, {amount} in all. "
                )
            else:
                message = (
                    f"The usage statement of account {account_id} for {month} was revised "
                    f"(revision {view.revision}): usage for the month arrived after it was "
                    f"made. It now has {records:,} records, {amount} in all (was "
                    f"{info.currency} {Money(earlier.total_micros).display()}). "
                )
            message += (
                f"Download its CSV or PDF in the dashboard: {self.public_url}/billing/usage. "
                "An email notice carries both as attachments."
            )
            data = {
                "statement_id": view.id,
                "month": month,
                "records": records,
                "total": Money(total).format(),
                "revision": view.revision,
            }
            notifications.record(
                conn,
                account_id,
                Notice("monthly_statement", message, data),
                now_us,
                dedupe_key=f"monthly_statement:{month}"
                + (f":r{view.revision}" if view.revision > 1 else ""),
            )
        return 1

    # -- reads -------------------------------------------------------------------------
    def list(self, account_id: str, limit: int, before_month: str | None) -> list[StatementView]:
        """The latest revision of each month's statement, newest month first."""
        s = statements.c
        later = statements.alias("later")
        query = (
            sa.select(*_VIEW_COLUMNS)
            .where(
                s.account_id == account_id,
                ~sa.exists().where(
                    later.c.account_id == s.account_id,
                    later.c.month == s.month,
                    later.c.revision > s.revision,
                ),
            )
            .order_by(s.month.desc())
            .limit(limit)
        )
        if before_month is not None:
            query = query.where(s.month < before_month)
        with self.db.read() as conn:
            account_info(conn, account_id)
            return [StatementView(*row) for row in conn.execute(query)]

    def file(self, account_id: str, statement_id: str, fmt: str) -> tuple[StatementView, bytes]:
        s = statements.c
        column = s.csv if fmt == "csv" else s.pdf
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(*_VIEW_COLUMNS, column).where(
                    s.account_id == account_id, s.id == statement_id
                )
            ).one_or_none()
        if row is None:
            raise NotFound("statement_not_found", f"no statement {statement_id!r}")
        return StatementView(*row[:-1]), bytes(row[-1])


_VIEW_COLUMNS = (
    statements.c.id,
    statements.c.account_id,
    statements.c.month,
    statements.c.currency,
    statements.c.records,
    statements.c.total_micros,
    sa.func.length(statements.c.csv),
    sa.func.length(statements.c.pdf),
    statements.c.created_at_us,
    statements.c.revision,
    statements.c.supersedes_id,
)


def mark_revisions(conn: sa.Connection, account_id: str, months: set[str], now_us: int) -> None:
    """Inside a write that added usage dated in `months`: owe a revision for each whose
    statement was already made. Locks the account's schedule row first, so a statement
    being produced either is committed before (and is revised) or re-checks its month's
    sums after this commits (and makes the revision itself)."""
    if not months:
        return
    next_month = _lock_schedule(conn, account_id)
    if next_month is None:
        return
    stated = {
        month
        for (month,) in conn.execute(
            sa.select(statements.c.month)
            .distinct()
            .where(
                statements.c.account_id == account_id,
                statements.c.month.in_(sorted(m for m in months if m < next_month)),
            )
        )
    }
    for month in sorted(stated):  # (months before the account's first statement have none)
        _owe_revision(conn, account_id, month, now_us)


def _lock_schedule(conn: sa.Connection, account_id: str) -> str | None:
    """The account's next month owed (None: not scheduled yet, nothing made), its schedule
    row locked until the transaction ends (PostgreSQL; SQLite's write lock covers it)."""
    query = sa.select(statement_schedule.c.next_month).where(
        statement_schedule.c.account_id == account_id
    )
    return conn.execute(query.with_for_update()).scalar()


def _owe_revision(conn: sa.Connection, account_id: str, month: str, now_us: int) -> None:
    due = statement_revisions_due.c
    owed = conn.execute(
        sa.select(due.month).where(due.account_id == account_id, due.month == month)
    ).first()
    if owed is None:
        conn.execute(
            statement_revisions_due.insert().values(
                account_id=account_id, month=month, since_us=now_us
            )
        )


def _month_sums(conn: sa.Connection, account_id: str, month: str) -> tuple[int, int]:
    """(records, cost) of an account-local month in the monthly rollups."""
    m = usage_rollups_monthly.c
    row = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(m.records), 0),
            sa.func.coalesce(sa.func.sum(m.cost_micros), 0),
        ).where(m.account_id == account_id, m.month == month)
    ).one()
    return int(row[0]), int(row[1])


def _csv_totals(data: bytes) -> tuple[int, int]:
    """(rows, sum of the price column in micro-units) of a CSV export."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    rows, total = 0, Decimal(0)
    for row in reader:
        rows += 1
        total += Decimal(row["price"])
    return rows, int(total * MICROS_PER_UNIT)

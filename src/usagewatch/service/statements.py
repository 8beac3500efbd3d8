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
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import accounts, statement_schedule, statements
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
        for account_id, month, due_at_us in due:
            done += self._produce(account_id, month, due_at_us)
        return done

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            if self._unscheduled(conn, 1):
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

    def _produce(self, account_id: str, month: str, due_at_us: int) -> int:
        period = month_period(month)
        csv_bytes = b"".join(self.exports.csv(account_id, period, None))
        pdf_bytes = self.exports.pdf(account_id, period, None)
        with self.db.read() as conn:
            info = account_info(conn, account_id)
        records, total = _csv_totals(csv_bytes)
        following = (period.last + timedelta(days=1)).isoformat()[:7]
        # due_at is the start of the following month; the one after is due next
        following_due = next_month_start(from_micros(due_at_us), info.timezone)
        view = StatementView(
            id=new_id("stmt"),
            account_id=account_id,
            month=month,
            currency=info.currency,
            records=records,
            total_micros=total,
            csv_bytes=len(csv_bytes),
            pdf_bytes=len(pdf_bytes),
            created_at_us=to_micros(self.clock.now()),
        )
        with self.db.write() as conn:
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
                    created_at_us=view.created_at_us,
                )
            )
            message = (
                f"The usage statement of account {account_id} for {month} is ready: "
                f"{records:,} records, {info.currency} {Money(total).display()} in all. "
                f"Download its CSV or PDF in the dashboard: {self.public_url}/billing/usage. "
                "An email notice carries both as attachments."
            )
            data = {
                "statement_id": view.id,
                "month": month,
                "records": records,
                "total": Money(total).format(),
            }
            notifications.record(
                conn,
                account_id,
                Notice("monthly_statement", message, data),
                view.created_at_us,
                dedupe_key=f"monthly_statement:{month}",
            )
        return 1

    # -- reads -------------------------------------------------------------------------
    def list(self, account_id: str, limit: int, before_month: str | None) -> list[StatementView]:
        s = statements.c
        query = (
            sa.select(*_VIEW_COLUMNS)
            .where(s.account_id == account_id)
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
)


def _csv_totals(data: bytes) -> tuple[int, int]:
    """(rows, sum of the price column in micro-units) of a CSV export."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    rows, total = 0, Decimal(0)
    for row in reader:
        rows += 1
        total += Decimal(row["price"])
    return rows, int(total * MICROS_PER_UNIT)

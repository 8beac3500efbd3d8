"""`usagewatch reconcile`: three independent figures for one account and period, which must
agree to the micro-unit:

1. exported — the sum of the `price` column of the CSV export, parsed back from its text;
2. reported — the total of the daily report (the usage rollups);
3. charged  — the usage charges in the journal.

Which journal entries are charges of a period: entries of kind `debit`, `capture` and
`late_capture` (the kinds whose negative amount is usage, `USAGE_KINDS`), each for the
whole price (an overrun included: `amount` is the change in paid + promotional credit).
Holds (`hold`, `hold_extend`) only reserve money, and `release` / `hold_expired` return
it, so calls in progress count nowhere; `promotional_expired` forfeits credit, not usage.
An entry counts on its `local_date` (when the money moved, which for single charges is the
day its usage record is dated), except a batch's entries: a batch writes one entry per
usage date, its reference that date and its idempotency key `batch_<id>:<date>`, so those
count on the date of the usage they paid for, as the records and rollups do.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import journal_entries
from usagewatch.domain.ledger import USAGE_KINDS
from usagewatch.domain.money import MICROS_PER_UNIT
from usagewatch.service.exports import CSV_COLUMNS, ExportService
from usagewatch.service.reports import Period, ReportService

BATCH_KEY_PREFIX = "batch_"


@dataclass(frozen=True, slots=True)
class Reconciliation:
    exported_micros: int
    exported_rows: int
    reported_micros: int
    charged_micros: int

    @property
    def agrees(self) -> bool:
        return self.exported_micros == self.reported_micros == self.charged_micros


def exported_micros(exports: ExportService, account_id: str, period: Period) -> tuple[int, int]:
    """Parse the CSV export as a client would and add up its price column."""
    raw = io.BufferedReader(_ChunkReader(exports.csv(account_id, period, None)))
    text = io.TextIOWrapper(raw, encoding="utf-8")
    reader = csv.reader(text)
    header = next(reader)
    assert tuple(header) == CSV_COLUMNS, header
    price = header.index("price")
    total, rows = Decimal(0), 0
    for row in reader:
        total += Decimal(row[price])
        rows += 1
    micros = total * MICROS_PER_UNIT
    assert micros == micros.to_integral_value(), "a price finer than a micro-unit"
    return int(micros), rows


def charged_micros(db: Database, account_id: str, period: Period) -> int:
    e = journal_entries.c
    first, last = period.first.isoformat(), period.last.isoformat()
    is_batch = e.idempotency_key.startswith(BATCH_KEY_PREFIX, autoescape=True)
    usage_date = sa.case(
        (sa.and_(is_batch, e.reference.is_not(None)), e.reference), else_=e.local_date
    )
    query = sa.select(sa.func.coalesce(sa.func.sum(e.amount_micros), 0)).where(
        e.account_id == account_id,
        e.kind.in_([k.value for k in USAGE_KINDS]),
        e.amount_micros < 0,
        usage_date >= first,
        usage_date <= last,
    )
    with db.read() as conn:
        return -int(conn.execute(query).scalar_one())


def reconcile(
    db: Database, reports: ReportService, exports: ExportService, account_id: str, period: Period
) -> Reconciliation:
    exported, rows = exported_micros(exports, account_id, period)
    reported = sum(row.cost_micros for row in reports.daily(account_id, period, None))
    return Reconciliation(exported, rows, reported, charged_micros(db, account_id, period))


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterator of byte chunks."""

    def __init__(self, chunks: object) -> None:
        self._chunks = iter(chunks)  # type: ignore[call-overload]
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

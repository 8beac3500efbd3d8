"""Usage exports: the raw usage records of a period as CSV (streamed), and the formatted
XLSX workbook and PDF summary (adapters/documents) with the report figures beside them.

Every export reads inside one read transaction, so its summary and its rows are one
consistent snapshot. Rows are the period's usage records except calls still in progress
(they cost nothing yet and are not in the rollups), ordered by date, then record id.
The CSV columns are documented in docs/exports.md; `CSV_COLUMNS` is that list.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import usage_records, usage_rollups_day_service
from usagewatch.domain.clock import Clock
from usagewatch.domain.errors import Invalid
from usagewatch.domain.money import MICROS_PER_UNIT
from usagewatch.service.reports import (
    AccountInfo,
    ConsumerRow,
    DailyRow,
    Period,
    ServiceBreakdown,
    account_info,
    breakdown,
    daily_rows,
    top_consumers,
)

FORMATS = ("csv", "xlsx", "pdf")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}
CSV_COLUMNS = (
    "date",
    "occurred_at",
    "service",
    "sub_type",
    "id",
    "status",
    "consumer",
    "campaign_id",
    "from",
    "to",
    "quantity",
    "duration_seconds",
    "price",
    "currency",
)
FETCH_ROWS = 5_000  # rows per database round trip and per streamed chunk
SUMMARY_CONSUMERS = 10
# A cell starting with one of these is read as a formula by spreadsheet programs.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Progress = Callable[[int], None]  # called with the number of rows just written

u = usage_records.c
_ROW_COLUMNS = (
    u.local_date,
    u.occurred_at_us,
    u.service,
    u.sub_type,
    u.natural_id,
    u.status,
    u.consumer,
    u.campaign_id,
    u.from_number,
    u.to_number,
    u.quantity,
    u.duration_seconds,
    u.price_micros,
)


def parse_format(value: str | None) -> str:
    if value is None:
        return "csv"
    if value not in FORMATS:
        raise Invalid("invalid_export_format", f"format is one of {', '.join(FORMATS)}", "format")
    return value


def neutralise(value: str | None) -> str:
    """A text cell a spreadsheet will show as text: a leading ' before = + - @ tab CR."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def record_rows(
    conn: Connection, account_id: str, period: Period, service: str | None
) -> Iterator[list[Any]]:
    """The period's records as tuples in `_ROW_COLUMNS` order, a list per round trip;
    streamed (a server-side cursor on PostgreSQL), so memory stays flat at any size."""
    query = (
        sa.select(*_ROW_COLUMNS)
        .where(
            u.account_id == account_id,
            u.local_date >= period.first.isoformat(),
            u.local_date <= period.last.isoformat(),
            u.status != "in-progress",
        )
        .order_by(u.local_date, u.id)
    )
    if service is not None:
        query = query.where(u.service == service)
    result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(query)
    for partition in result.partitions():
        yield list(partition)


def expected_rows(conn: Connection, account_id: str, period: Period, service: str | None) -> int:
    """How many rows the export will have, from the rollups (for progress bars)."""
    r = usage_rollups_day_service.c
    query = sa.select(sa.func.coalesce(sa.func.sum(r.records), 0)).where(
        r.account_id == account_id,
        r.local_date >= period.first.isoformat(),
        r.local_date <= period.last.isoformat(),
    )
    if service is not None:
        query = query.where(r.service == service)
    return int(conn.execute(query).scalar_one())


class _MoneyText(dict[int, str]):
    """micro-units -> the API's decimal string, memoised (prices repeat a great deal)."""

    def __missing__(self, micros: int) -> str:
        units, frac = divmod(micros, MICROS_PER_UNIT)
        text = f"{units}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"
        if len(self) < 100_000:
            self[micros] = text
        return text


def instant_text(micros: int) -> str:
    """RFC 3339 UTC, like the API: 2026-11-28T10:00:00Z (microseconds only when present)."""
    seconds, fraction = divmod(micros, 1_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{fraction:06d}Z" if fraction else f"{text}Z"


def csv_chunks(
    rows: Iterator[list[Any]], currency: str, progress: Progress | None = None
) -> Iterator[bytes]:
    """The CSV as UTF-8 chunks: the header, then one chunk per fetched batch of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue().encode()
    money = _MoneyText()
    safe = neutralise
    for batch in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(
            [
                (
                    day,
                    instant_text(at),
                    service,
                    sub_type,
                    safe(natural_id),
                    status,
                    safe(consumer),
                    safe(campaign),
                    safe(from_),
                    safe(to),
                    quantity,
                    "" if seconds is None else seconds,
                    money[price],
                    currency,
                )
                for (
                    day,
                    at,
                    service,
                    sub_type,
                    natural_id,
                    status,
                    consumer,
                    campaign,
                    from_,
                    to,
                    quantity,
                    seconds,
                    price,
                ) in batch
            ]
        )
        yield buffer.getvalue().encode()
        if progress is not None:
            progress(len(batch))


@dataclass(frozen=True, slots=True)
class Summary:
    """What the workbook's summary sheet and the PDF show beside the rows."""

    account: AccountInfo
    period: Period
    service: str | None
    daily: list[DailyRow]
    breakdown: ServiceBreakdown
    top: list[ConsumerRow]
    generated_at: datetime


class ExportService:
    def __init__(self, db: Database, clock: Clock, balance_of: Callable[[str], Any]) -> None:
        self.db = db
        self.clock = clock
        self.balance_of = balance_of  # account id -> BalanceView (the PDF's snapshot)

    def summary(
        self, conn: Connection, account_id: str, period: Period, service: str | None
    ) -> Summary:
        info = account_info(conn, account_id)
        return Summary(
            account=info,
            period=period,
            service=service,
            daily=daily_rows(conn, account_id, period, service),
            breakdown=breakdown(conn, info, period),
            top=top_consumers(conn, account_id, period, SUMMARY_CONSUMERS),
            generated_at=self.clock.now(),
        )

    def check(self, account_id: str) -> AccountInfo:
        """Raise 404 before a response starts streaming (errors cannot follow a 200)."""
        with self.db.read() as conn:
            return account_info(conn, account_id)

    def csv(
        self, account_id: str, period: Period, service: str | None, progress: Progress | None = None
    ) -> Iterator[bytes]:
        """The CSV export, streamed: the read transaction stays open while it is consumed
        (and closes when the consumer stops, finished or not)."""
        with self.db.read() as conn:
            info = account_info(conn, account_id)
            rows = record_rows(conn, account_id, period, service)
            yield from csv_chunks(rows, info.currency, progress)

    def expected_rows(self, account_id: str, period: Period, service: str | None) -> int:
        with self.db.read() as conn:
            return expected_rows(conn, account_id, period, service)

    def xlsx(
        self,
        account_id: str,
        period: Period,
        service: str | None,
        out: BinaryIO | str,
        progress: Progress | None = None,
    ) -> None:
        """Write the workbook to `out` (a path or a seekable binary file)."""
        from usagewatch.adapters.documents.xlsx import write_workbook

        with self.db.read() as conn:
            summary = self.summary(conn, account_id, period, service)
            rows = record_rows(conn, account_id, period, service)
            write_workbook(out, summary, rows, progress)

    def pdf(self, account_id: str, period: Period, service: str | None) -> bytes:
        from usagewatch.adapters.documents.pdf import render_pdf

        balance = self.balance_of(account_id)
        with self.db.read() as conn:
            summary = self.summary(conn, account_id, period, service)
        return render_pdf(summary, balance)

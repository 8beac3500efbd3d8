"""Reports and exports over one account with many usage records, each figure next to a
baseline measured in the same run.

    python bench/report_bench.py                      # 10,000,000 records, SQLite
    python bench/report_bench.py --records 1000000    # quicker
    python bench/report_bench.py --engine postgresql  # needs USAGEWATCH_TEST_POSTGRES_URL

A seeded generator writes one account's records (bulk inserts: executemany on SQLite, COPY
on PostgreSQL) over the 365 days to 2026-11-28 and the daily rollups computed from the same
rows. Then:
- every report (in process, the service the routes call), p50/p95 over repeated runs,
  next to the same aggregate SQL run raw through the driver;
- the CSV export of the whole year (every record), in a child process: rows/s and peak
  RSS, next to a raw SELECT of the same rows written with csv.writer;
- the XLSX export of a period with about 1,000,000 rows, in a child process: seconds and
  peak RSS, next to the same rows written raw with XlsxWriter (constant memory, untyped).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from bench.benchdb import postgres_database

from usagewatch.adapters.db import migrate
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.usage_store import _RECORD_COLUMNS
from usagewatch.domain.clock import ManualClock
from usagewatch.service.accounts import AccountService
from usagewatch.service.exports import ExportService
from usagewatch.service.reports import Period, ReportService

ACCOUNT = "bench"
LAST_DAY = date(2026, 11, 28)
DAYS = 365
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CONSUMERS = [f"app-{i}" for i in range(10)]
CAMPAIGNS = ["", "diwali", "renewals"]
# (service, sub_type, price per unit in micros): a cycle of 20 that sets the mix
MIX = (
    [("voice", "outbound", 600_000)] * 6
    + [("voice", "inbound", 300_000)] * 2
    + [("sms", "transactional", 200_000)] * 4
    + [("sms", "promotional", 250_000)] * 2
    + [("sms", "service", 150_000)]
    + [("whatsapp", "marketing", 800_000)] * 2
    + [("whatsapp", "utility", 350_000)]
    + [("whatsapp", "authentication", 300_000)]
    + [("agent_seat", "session", 0)]
)
NUMBERS, SEATS = 20, 10
REPORT_RUNS = 100
XLSX_ROWS = 1_000_000
RSS_LIMIT_MB = 300


# -- data --------------------------------------------------------------------------------
def generate(db: Database, records: int, seed: int) -> None:
    rng = random.Random(seed)
    durations = [rng.randint(0, 900) for _ in range(997)]
    with db.engine.begin() as conn:
        AccountService(db, ManualClock(NOW - timedelta(days=400)), "x" * 32).create_account(
            "Bench Ltd", ACCOUNT
        ) if conn.execute(sa.text("SELECT 1 FROM accounts")).first() is None else None
    rollups: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    per_day = records // DAYS
    names = [c.name for c in _RECORD_COLUMNS]
    start = time.perf_counter()
    written = 0
    batch: list[tuple[Any, ...]] = []
    raw = db.engine.raw_connection()
    try:
        if db.is_sqlite:
            raw.driver_connection.execute("PRAGMA synchronous=OFF")  # type: ignore[union-attr]
        first = LAST_DAY - timedelta(days=DAYS - 1)
        for d in range(DAYS):
            day = first + timedelta(days=d)
            local = day.isoformat()
            day_us = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 10**6
            count = per_day + (1 if d < records % DAYS else 0)
            if day.day == 1 or d == 0:  # the month's rentals and seats
                for kind, items, price in (
                    ("number", NUMBERS, 500_000_000),
                    ("agent_seat", SEATS, 1_200_000_000),
                ):
                    for item in range(items):
                        consumer = f"agent-{item}" if kind == "agent_seat" else None
                        batch.append(
                            _row(
                                kind,
                                "monthly",
                                f"{kind}{item}:{local[:7]}",
                                "charged",
                                consumer,
                                None,
                                1,
                                None,
                                price,
                                local,
                                day_us,
                            )
                        )
                        _roll(rollups, local, kind, "monthly", consumer or "", "", 1, None,
                              price, 0)  # fmt: skip
            for i in range(count):
                n = written + i
                service, sub_type, unit = MIX[n % 20]
                consumer = CONSUMERS[(n // 20) % 10]
                campaign = CAMPAIGNS[(n // 200) % 3] if service != "agent_seat" else ""
                seconds: int | None = None
                status = "charged"
                if service == "voice":
                    seconds = durations[n % 997]
                    quantity = -(-seconds // 60)
                    status = "completed"
                elif service == "sms":
                    quantity = 1 + n % 3
                    status = "delivered" if n % 10 else "failed"
                elif service == "agent_seat":
                    seconds, quantity, status = durations[n % 997] * 10, 0, "recorded"
                else:
                    quantity = 1
                price = quantity * unit if service != "whatsapp" else unit
                batch.append(
                    _row(
                        service,
                        sub_type,
                        f"r{n}",
                        status,
                        consumer,
                        campaign or None,
                        quantity,
                        seconds,
                        price,
                        local,
                        day_us + (n % 86_400) * 10**6,
                    )
                )
                _roll(
                    rollups,
                    local,
                    service,
                    sub_type,
                    consumer,
                    campaign,
                    quantity,
                    seconds,
                    price,
                    int(status == "delivered"),
                )
                if len(batch) >= 50_000:
                    _insert(db, raw, names, batch)
                    batch.clear()
            written += count
            if d % 30 == 0:
                rate = written / (time.perf_counter() - start)
                print(f"  generated {written:,} records ({rate:,.0f}/s)", file=sys.stderr)
        _insert(db, raw, names, batch)
        raw.commit()
    finally:
        raw.close()
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO usage_rollups (account_id, local_date, service, sub_type, consumer,"
                " campaign_id, records, quantity, duration_seconds, cost_micros, delivered)"
                " VALUES (:a, :d, :s, :t, :c, :p, :r, :q, :x, :m, :v)"
            ),
            [
                {"a": ACCOUNT, "d": k[0], "s": k[1], "t": k[2], "c": k[3], "p": k[4],
                 "r": v[0], "q": v[1], "x": v[2], "m": v[3], "v": v[4]}
                for k, v in rollups.items()
            ],
        )  # fmt: skip
        for statement in COARSE_ROLLUPS:  # what the writers keep beside the daily rows
            conn.exec_driver_sql(statement)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    print(f"  {written:,} records, {len(rollups):,} rollup rows", file=sys.stderr)


SUMS = "sum(records), sum(quantity), sum(duration_seconds), sum(cost_micros), sum(delivered)"
COARSE_ROLLUPS = (
    "INSERT INTO usage_rollups_day_service (account_id, local_date, service, records,"
    f" quantity, duration_seconds, cost_micros, delivered) SELECT account_id, local_date,"
    f" service, {SUMS} FROM usage_rollups GROUP BY account_id, local_date, service",
    "INSERT INTO usage_rollups_monthly (account_id, month, service, sub_type, consumer,"
    " campaign_id, records, quantity, duration_seconds, cost_micros, delivered)"
    f" SELECT account_id, substr(local_date, 1, 7), service, sub_type, consumer, campaign_id,"
    f" {SUMS} FROM usage_rollups GROUP BY account_id, substr(local_date, 1, 7), service,"
    " sub_type, consumer, campaign_id",
)


def _row(service: str, sub_type: str, natural_id: str, status: str, consumer: str | None,
         campaign: str | None, quantity: int, seconds: int | None, price: int, local: str,
         at_us: int) -> tuple[Any, ...]:  # fmt: skip
    return (ACCOUNT, service, sub_type, natural_id, status, consumer, campaign, None,
            "+919800000000", quantity, seconds, price, local, at_us, at_us, "f",
            None, None, None)  # fmt: skip


def _roll(rollups: dict[tuple[str, ...], list[int]], local: str, service: str, sub_type: str,
          consumer: str, campaign: str, quantity: int, seconds: int | None, price: int,
          delivered: int) -> None:  # fmt: skip
    sums = rollups[(local, service, sub_type, consumer, campaign)]
    sums[0] += 1
    sums[1] += quantity
    sums[2] += seconds or 0
    sums[3] += price
    sums[4] += delivered


def _insert(db: Database, raw: Any, names: list[str], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    cursor = raw.cursor()
    if db.is_sqlite:
        marks = ", ".join("?" for _ in names)
        cursor.executemany(f"INSERT INTO usage_records ({', '.join(names)}) VALUES ({marks})", rows)
        raw.commit()
    else:
        with cursor.copy(f"COPY usage_records ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        raw.commit()
    cursor.close()


# -- measurements --------------------------------------------------------------------------
def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def time_it(fn: Any) -> tuple[float, float]:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(REPORT_RUNS):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return _percentiles(samples)


RAW_DAILY = (
    "SELECT local_date, service, sum(records), sum(quantity), sum(cost_micros) FROM usage_rollups"
    " WHERE account_id = {p} AND local_date >= {p} AND local_date <= {p}"
    " GROUP BY local_date, service ORDER BY local_date, service"
)


def bench_reports(db: Database) -> list[tuple[str, str, float, float, float, float]]:
    reports = ReportService(db, ManualClock(NOW))
    month = Period(date(2026, 11, 1), date(2026, 11, 30))
    year = Period(LAST_DAY - timedelta(days=365), LAST_DAY)
    # the most daily rows a year-long breakdown reads: two partial months of ~30 days each
    ragged = Period(date(2025, 12, 2), date(2026, 11, 27))
    p = "?" if db.is_sqlite else "%s"
    raw = db.engine.raw_connection()

    def raw_daily(period: Period) -> Any:
        def run() -> None:
            cursor = raw.cursor()
            cursor.execute(
                RAW_DAILY.format(p=p), (ACCOUNT, period.first.isoformat(), period.last.isoformat())
            )
            cursor.fetchall()
            cursor.close()

        return run

    out = []
    for label, period in (("month", month), ("year", year), ("year, ragged", ragged)):
        base = time_it(raw_daily(period))
        for name, fn in (
            ("daily", lambda: reports.daily(ACCOUNT, period, None)),  # noqa: B023
            ("services", lambda: reports.services(ACCOUNT, period)),  # noqa: B023
            ("top-consumers", lambda: reports.top_consumers(ACCOUNT, period, 10)),  # noqa: B023
        ):
            p50, p95 = time_it(fn)
            out.append((name, label, p50, p95, *base))
    base = time_it(raw_daily(year))
    p50, p95 = time_it(lambda: reports.trend(ACCOUNT, 12))
    out.append(("trend", "12 months", p50, p95, *base))
    raw.close()
    return out


def child(kind: str, url: str, first: str, last: str) -> None:
    """Run one export in this (fresh) process; print rows, seconds, peak RSS as JSON."""
    db = Database(url)
    period = Period(date.fromisoformat(first), date.fromisoformat(last))
    exports = ExportService(db, ManualClock(NOW), lambda _a: None)
    rows = 0

    def count(n: int) -> None:
        nonlocal rows
        rows += n

    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if kind == "csv":
        with open(os.devnull, "wb") as sink:
            for chunk in exports.csv(ACCOUNT, period, None, count):
                sink.write(chunk)
    elif kind == "csv-raw":
        with db.read() as conn, open(os.devnull, "w", newline="") as sink:
            writer = csv.writer(sink)
            result = conn.exec_driver_sql(
                "SELECT local_date, occurred_at_us, service, sub_type, natural_id, status,"
                " consumer, campaign_id, from_number, to_number, quantity, duration_seconds,"
                " price_micros FROM usage_records WHERE account_id = {p} AND local_date >= {p}"
                " AND local_date <= {p} AND status <> 'in-progress' ORDER BY local_date, id".format(
                    p="?" if db.is_sqlite else "%s"
                ),
                (ACCOUNT, first, last),
            )
            cursor = result.cursor
            while batch := cursor.fetchmany(5000):
                writer.writerows(batch)
                rows += len(batch)
    elif kind in ("xlsx", "xlsx-raw"):
        path = Path(tempfile.mkdtemp()) / "out.xlsx"
        if kind == "xlsx":
            exports.xlsx(ACCOUNT, period, None, str(path), count)
        else:
            import xlsxwriter

            from usagewatch.service.exports import record_rows

            book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
            sheet = book.add_worksheet("Usage")
            with db.read() as conn:
                line = 0
                for batch in record_rows(conn, ACCOUNT, period, None):
                    for row in batch:
                        sheet.write_row(line, 0, row)
                        line += 1
                    rows += len(batch)
            book.close()
        extra["bytes"] = path.stat().st_size
        path.unlink()
    seconds = time.perf_counter() - t0
    peak_mb = _peak_rss_mb()
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak_mb, **extra}))


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would carry the parent's over
    fork + exec on Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, url: str, first: date, last: date) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--url", url, "--first", first.isoformat(),
         "--last", last.isoformat()],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def bench_engine(engine: str, url: str, records: int, seed: int, exports: bool = True) -> None:
    db = Database(url)
    migrate.upgrade(db)
    t0 = time.perf_counter()
    generate(db, records, seed)
    print(f"  data generated in {time.perf_counter() - t0:,.0f} s", file=sys.stderr)
    print(f"\n### {engine}: {records:,} usage records, one account\n")
    print("| report | period | p50 (ms) | p95 (ms) | baseline raw SQL p50 (ms) | baseline p95 (ms) "
          "| target p95 < 50 ms |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|:---:|")
    for name, label, p50, p95, b50, b95 in bench_reports(db):
        ok = "✅" if p95 < 50 else "❌"
        print(f"| {name} | {label} | {p50:.2f} | {p95:.2f} | {b50:.2f} | {b95:.2f} | {ok} |")
    db.dispose()
    if not exports:
        return
    first, last = LAST_DAY - timedelta(days=DAYS - 1), LAST_DAY
    ours = run_child("csv", url, first, last)
    base = run_child("csv-raw", url, first, last)
    print("\n| export | rows | seconds | rows/s | peak RSS (MB) | target |")
    print("|---|---:|---:|---:|---:|:---:|")
    for name, r, target in (
        ("CSV export (ours)", ours, r"≥ 100,000 rows/s, RSS < 300 MB"),
        ("baseline: raw SELECT + csv.writer", base, "—"),
    ):
        rate = r["rows"] / r["seconds"]
        ok = (
            ""
            if target == "—"
            else (" ✅" if rate >= 100_000 and r["peak_mb"] < RSS_LIMIT_MB else " ❌")
        )
        print(f"| {name} | {r['rows']:,} | {r['seconds']:.1f} | {rate:,.0f} | {r['peak_mb']:.0f} "
              f"| {target}{ok} |")  # fmt: skip
    per_day = max(1, records // DAYS)
    days = min(DAYS, -(-XLSX_ROWS // per_day))
    ours = run_child("xlsx", url, last - timedelta(days=days - 1), last)
    base = run_child("xlsx-raw", url, last - timedelta(days=days - 1), last)
    for name, r, target in (
        ("XLSX export (ours)", ours, "RSS < 300 MB"),
        ("baseline: raw rows, XlsxWriter untyped", base, "—"),
    ):
        rate = r["rows"] / r["seconds"]
        ok = "" if target == "—" else (" ✅" if r["peak_mb"] < RSS_LIMIT_MB else " ❌")
        print(f"| {name} | {r['rows']:,} | {r['seconds']:.1f} | {rate:,.0f} | {r['peak_mb']:.0f} "
              f"| {target}{ok} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--no-exports", action="store_true", help="measure the reports only")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--first")
    parser.add_argument("--last")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.first, args.last)
        return
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    for engine in engines:
        if engine == "sqlite":
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMPDIR")) as tmp:
                bench_engine(
                    engine,
                    f"sqlite:///{tmp}/report_bench.db",
                    args.records,
                    args.seed,
                    not args.no_exports,
                )
        else:
            admin = os.environ.get("USAGEWATCH_TEST_POSTGRES_URL")
            assert admin, "set USAGEWATCH_TEST_POSTGRES_URL for the PostgreSQL run"
            with postgres_database(admin, "usagewatch_report_bench") as url:
                bench_engine(engine, url, args.records, args.seed, not args.no_exports)


if __name__ == "__main__":
    main()

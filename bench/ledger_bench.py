"""Ledger benchmark: debits per second and balance-read latency, on SQLite and PostgreSQL.

    .venv/bin/python bench/ledger_bench.py                     # both engines, ~2 minutes
    .venv/bin/python bench/ledger_bench.py --quick             # smoke run, well under a minute
    .venv/bin/python bench/ledger_bench.py --engines sqlite --seconds 10 --entries 200000

1. Debit throughput through the service layer: `LedgerService.debit`, one command and one
   commit per debit, with 1 client, 4 clients on 4 accounts and 4 clients on one account.
   Each figure sits next to a BASELINE measured in the same run, with the same driver, the
   same `Database` engine object and the same transaction discipline (`Database.write()`):
   a bare transaction that updates one balance row and inserts one journal row (SQLAlchemy
   Core). ratio = ours / baseline; the target is >= 0.5. Ours and the baseline alternate
   (baseline, ours, ours, baseline; half the time each) so drift in machine load cancels.
   SQLite clients are threads sharing one container (one server process, as deployed; its
   writers queue on one lock); PostgreSQL clients are OS processes (no GIL between them),
   each with its own container, as separate server processes would be.
2. GET /v1/accounts/{id}/balance latency (p50/p95/p99) on an account with --entries journal
   entries, seeded with bulk SQL (a recursive CTE on SQLite, generate_series on PostgreSQL):
   the journal rows, the lot, the balance row and the per-day totals agree. Measured
   in process, calling the route's service function (`container.queries.balance`) and
   through the HTTP stack with starlette's TestClient. The target is p99 < 5 ms.

SQLite runs on a file in a temporary directory (WAL, synchronous=FULL: the engine's own
settings). PostgreSQL runs in a throwaway database `usagewatch_bench` (dropped at the end) on
the server named by --postgres-url, USAGEWATCH_BENCH_POSTGRES_URL or
USAGEWATCH_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
The output ends with Markdown tables for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

import benchdb
from usagewatch.adapters.db.schema import balances, journal_entries
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.clock import local_date, to_micros
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
BENCH_DATABASE = "usagewatch_bench"
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 0.5
TARGET_P99_MS = 5.0
DEBIT = Money.parse("0.01")
START_CREDIT = Money.parse("1000000.00")
SPAWN = multiprocessing.get_context("spawn")
WARMUP_SECONDS = 0.5


# -- the two kinds of write measured -------------------------------------------------------
def ours_debit(c: Container, account_id: str, reference: str) -> None:
    c.ledger.debit(account_id, reference, DEBIT)


_bump_balance = (
    balances.update()
    .where(balances.c.account_id == sa.bindparam("account"))
    .values(
        paid_micros=balances.c.paid_micros - sa.bindparam("amount"),
        version=balances.c.version + 1,
        updated_at_us=sa.bindparam("now"),
    )
    .returning(balances.c.version, balances.c.paid_micros)
)
_insert_entry = journal_entries.insert()


def baseline_debit(c: Container, account_id: str, reference: str) -> None:
    """The floor: one transaction, one balance UPDATE ... RETURNING, one journal INSERT."""
    now_us = time.time_ns() // 1000
    with c.db.write() as conn:
        version, paid = conn.execute(
            _bump_balance, {"account": account_id, "amount": DEBIT.micros, "now": now_us}
        ).one()
        conn.execute(
            _insert_entry,
            {
                "account_id": account_id,
                "version": version,
                "kind": "debit",
                "amount_micros": -DEBIT.micros,
                "reserved_delta_micros": 0,
                "overdraft_delta_micros": 0,
                "available_after_micros": paid,
                "hold_id": None,
                "lot_id": None,
                "reference": reference,
                "description": None,
                "idempotency_key": f"debit:{reference}",
                "request_fingerprint": None,
                "result_json": None,
                "local_date": "2026-01-01",
                "created_at_us": now_us,
            },
        )


KINDS: dict[str, Callable[[Container, str, str], None]] = {
    "ours": ours_debit,
    "baseline": baseline_debit,
}


def run_load(
    c: Container, kind: str, account_id: str, tag: str, start_at: float, seconds: float
) -> tuple[int, float]:
    """Debit in a loop from `start_at` (wall clock, shared by processes) for `seconds`.
    Returns (debits done, when the last one finished)."""
    op = KINDS[kind]
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    stop = start_at + seconds
    count = 0
    while time.time() < stop:
        op(c, account_id, f"{tag}-{count}")
        count += 1
    return count, time.time()


def _process_client(url: str, conn: Any) -> None:
    """A client process: its own container, serving run_load requests until told to stop."""
    c = build(Settings(database_url=url, db_pool_size=2), ADMIN_TOKEN)
    try:
        conn.send("ready")
        while True:
            request = conn.recv()
            if request is None:
                break
            try:
                conn.send(("ok", run_load(c, *request)))
            except Exception as exc:  # report, keep serving
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        c.close()
        conn.close()


class Clients:
    """N load clients: threads sharing the parent's container, or spawned processes."""

    def __init__(self, url: str, parent: Container, n: int, processes: bool) -> None:
        self.n = n
        self.parent = parent
        self._threads = None if processes else ThreadPoolExecutor(n)
        self._procs: list[tuple[Any, Any]] = []
        if processes:
            for _ in range(n):
                mine, theirs = SPAWN.Pipe()
                proc = SPAWN.Process(target=_process_client, args=(url, theirs), daemon=True)
                proc.start()
                self._procs.append((proc, mine))
            for proc, mine in self._procs:
                if not mine.poll(120) or mine.recv() != "ready":
                    raise RuntimeError(f"client process {proc.pid} did not start")

    def run(self, kind: str, accounts: list[str], tag: str, seconds: float) -> float:
        """All n clients debit at once (client i on accounts[i % len]); returns debits/s."""
        start_at = time.time() + 0.2
        jobs = [
            (kind, accounts[i % len(accounts)], f"{tag}-c{i}", start_at, seconds)
            for i in range(self.n)
        ]
        if self._threads is not None:
            futures = [self._threads.submit(run_load, self.parent, *job) for job in jobs]
            results = [f.result() for f in futures]
        else:
            for (_proc, conn), job in zip(self._procs, jobs, strict=True):
                conn.send(job)
            results = []
            for _proc, conn in self._procs:
                status, payload = conn.recv()
                if status != "ok":
                    raise RuntimeError(f"client failed: {payload}")
                results.append(payload)
        done = sum(count for count, _ in results)
        elapsed = max(end for _, end in results) - start_at
        return done / elapsed

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown()
        for proc, conn in self._procs:
            conn.send(None)
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
            conn.close()


# -- results ----------------------------------------------------------------------------
@dataclass
class Throughput:
    engine: str
    scenario: str
    clients: int
    accounts: int
    ours: float
    baseline: float

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


@dataclass
class Latency:
    engine: str
    path: str
    entries: int
    samples: list[float]  # seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples)
        rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[rank] * 1000

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.samples) * 1000


# -- databases --------------------------------------------------------------------------
@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="usagewatch-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


def postgres_database(admin_url: str) -> contextlib.AbstractContextManager[str]:
    return benchdb.postgres_database(admin_url, BENCH_DATABASE)


def describe(c: Container) -> str:
    with c.db.read() as conn:
        if c.db.is_sqlite:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                conn.exec_driver_sql("PRAGMA synchronous").scalar(), "?"
            )
            return f"SQLite {sqlite3.sqlite_version}, journal_mode={mode}, synchronous={sync}"
        version = conn.exec_driver_sql("SHOW server_version").scalar()
        commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
        fsync = conn.exec_driver_sql("SHOW fsync").scalar()
        return f"PostgreSQL {version}, synchronous_commit={commit}, fsync={fsync}, psycopg 3"


def new_account(c: Container, name: str, baseline: bool) -> str:
    """An account with plenty of money: a paid lot for ours, a bare balance for the
    baseline (which never touches lots)."""
    account_id = c.accounts.create_account(name, name).id
    if baseline:
        with c.db.write() as conn:
            conn.execute(
                balances.update()
                .where(balances.c.account_id == account_id)
                .values(paid_micros=START_CREDIT.micros)
            )
    else:
        c.ledger.add_credit(account_id, LotKind.PAID, START_CREDIT)
    return account_id


# -- section 1: throughput --------------------------------------------------------------
def measure_throughput(
    engine: str, url: str, parent: Container, seconds: float, log: Callable[[str], None]
) -> list[Throughput]:
    processes = engine == "postgresql"

    def four(prefix: str, kind: str) -> list[str]:
        return [new_account(parent, f"{prefix}{kind}-{i}", kind == "baseline") for i in range(4)]

    accounts = {kind: four("", kind) for kind in KINDS}
    warm = {kind: four("warm-", kind) for kind in KINDS}
    scenarios = [
        ("1 client", 1, 1),
        ("4 clients, 4 accounts", 4, 4),
        ("4 clients, 1 account", 4, 1),
    ]
    results: list[Throughput] = []
    pools: dict[int, Clients] = {}
    try:
        for scenario, n, n_accounts in scenarios:
            if n not in pools:
                pools[n] = Clients(url, parent, n, processes)
                for kind in KINDS:  # warm connections, statement and plan caches
                    pools[n].run(kind, warm[kind], f"warm{n}-{kind}", WARMUP_SECONDS)
            clients = pools[n]
            rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for step, kind in enumerate(["baseline", "ours", "ours", "baseline"]):
                tag = f"{engine}-{n}-{n_accounts}-{step}"
                rates[kind].append(clients.run(kind, accounts[kind][:n_accounts], tag, seconds / 2))
            row = Throughput(
                engine,
                scenario,
                n,
                n_accounts,
                statistics.fmean(rates["ours"]),
                statistics.fmean(rates["baseline"]),
            )
            results.append(row)
            log(
                f"  {engine:<10} {scenario:<22} ours {row.ours:8.0f}/s   "
                f"baseline {row.baseline:8.0f}/s   ratio {row.ratio:.2f}"
            )
    finally:
        for clients in pools.values():
            clients.close()
    return results


# -- section 2: balance latency ---------------------------------------------------------
def seed(c: Container, account_id: str, entries: int) -> float:
    """Give `account_id` `entries` journal entries with bulk SQL: one paid credit, then debits
    of 0.01 spread over the last 90 days; the lot, balance row and day totals agree with
    them. Returns the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    now_us = to_micros(now)
    today = local_date(now, c.accounts.get_account(account_id).timezone).isoformat()
    debits = entries - 1
    lot_id = f"cr_seed_{account_id}"[:40]
    remaining = START_CREDIT.micros - debits * DEBIT.micros
    params = {
        "a": account_id,
        "n": entries,
        "d": DEBIT.micros,
        "credit": START_CREDIT.micros,
        "today": today,
        "days": 90,
        "t0": now_us - entries,
    }
    if c.db.is_sqlite:
        series = """
            WITH RECURSIVE seq(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM seq WHERE i <= :n - 1)
            SELECT :a, i, 'debit', -:d, 0, 0, :credit - (i - 1) * :d, 'seed-' || i,
                   'debit:seed-' || i, date(:today, '-' || ((:n - i) * :days / :n) || ' days'),
                   :t0 + i
            FROM seq"""
    else:
        series = """
            SELECT :a, i, 'debit', -CAST(:d AS bigint), 0, 0,
                   CAST(:credit AS bigint) - (i - 1) * CAST(:d AS bigint), 'seed-' || i,
                   'debit:seed-' || i,
                   to_char(CAST(:today AS date) - ((:n - i) * :days / :n)::int, 'YYYY-MM-DD'),
                   CAST(:t0 AS bigint) + i
            FROM generate_series(2, CAST(:n AS bigint)) AS i"""
    with c.db.write() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO credit_lots (id, account_id, kind, amount_micros, remaining_micros,"
                " held_micros, expires_at_us, description, created_at_us, created_seq)"
                " VALUES (:lot, :a, 'paid', :credit, :remaining, 0, NULL, 'seed', :t0, 1)"
            ),
            {**params, "lot": lot_id, "remaining": remaining},
        )
        conn.execute(
            sa.text(
                "INSERT INTO journal_entries (account_id, version, kind, amount_micros,"
                " reserved_delta_micros, overdraft_delta_micros, available_after_micros, lot_id,"
                " idempotency_key, local_date, created_at_us)"
                " VALUES (:a, 1, 'credit_paid', :credit, 0, 0, :credit, :lot, 'credit:seed',"
                " :first_day, :t0)"
            ),
            {**params, "lot": lot_id, "first_day": today},
        )
        if debits:
            conn.execute(
                sa.text(
                    "INSERT INTO journal_entries (account_id, version, kind, amount_micros,"
                    " reserved_delta_micros, overdraft_delta_micros, available_after_micros,"
                    " reference, idempotency_key, local_date, created_at_us)" + series
                ),
                params,
            )
        conn.execute(
            sa.text(
                "INSERT INTO daily_charges (account_id, local_date, charged_micros)"
                " SELECT account_id, local_date, -SUM(amount_micros) FROM journal_entries"
                " WHERE account_id = :a AND kind = 'debit' GROUP BY account_id, local_date"
            ),
            params,
        )
        conn.execute(
            sa.text(
                "UPDATE balances SET paid_micros = :remaining, version = :n,"
                " updated_at_us = :now WHERE account_id = :a"
            ),
            {**params, "remaining": remaining, "now": now_us},
        )
    with c.db.engine.connect() as conn:  # what autovacuum would do soon after such a load
        if not c.db.is_sqlite:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def check_seed(c: Container, account_id: str, entries: int) -> None:
    with c.db.read() as conn:
        count, total = conn.execute(
            sa.select(sa.func.count(), sa.func.sum(journal_entries.c.amount_micros)).where(
                journal_entries.c.account_id == account_id
            )
        ).one()
    view = c.queries.balance(account_id)
    assert count == entries, (count, entries)
    assert total == view.paid_micros == view.available_micros, (total, view)
    assert view.version == entries and view.month_usage_micros > 0


def measure_latency(
    engine: str, parent: Container, entries: int, requests: int, log: Callable[[str], None]
) -> list[Latency]:
    from usagewatch.api.app import create_app

    account_id = parent.accounts.create_account("seeded", "seeded").id
    took = seed(parent, account_id, entries)
    check_seed(parent, account_id, entries)
    log(f"  {engine:<10} seeded {entries:,} journal entries in {took:.1f} s")

    def sample(call: Callable[[], object]) -> list[float]:
        for _ in range(min(200, requests)):
            call()
        out = []
        for _ in range(requests):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
        return out

    def direct() -> None:
        parent.queries.balance(account_id)

    results = [Latency(engine, "queries.balance()", entries, sample(direct))]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    path = f"/v1/accounts/{account_id}/balance"
    app = create_app(parent, run_sweeper=False)

    async def over_asgi() -> tuple[list[float], list[float]]:
        # In process, without a server or TestClient's thread hop: the app's own stack
        # (middleware, auth, route, the balance read, JSON). /healthz is the floor.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def timed(url: str, auth: dict[str, str]) -> list[float]:
                for _ in range(min(200, requests)):
                    (await client.get(url, headers=auth)).raise_for_status()
                out = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    (await client.get(url, headers=auth)).raise_for_status()
                    out.append(time.perf_counter() - t0)
                return out

            return await timed(path, headers), await timed("/healthz", {})

    balance_samples, floor_samples = asyncio.run(over_asgi())
    results.append(Latency(engine, "GET /balance (ASGI)", entries, balance_samples))
    results.append(Latency(engine, "GET /healthz (ASGI)", entries, floor_samples))
    for r in results:
        log(
            f"  {engine:<10} {r.path:<20} p50 {r.pct(50):6.2f} ms  p95 {r.pct(95):6.2f} ms  "
            f"p99 {r.pct(99):6.2f} ms  ({len(r.samples)} requests)"
        )
    return results


# -- report -----------------------------------------------------------------------------
def report(
    throughput: list[Throughput], latency: list[Latency], notes: list[str], seconds: float
) -> str:
    lines = ["", "## Ledger benchmark", ""]
    lines += [f"- {note}" for note in notes]
    if throughput:
        lines += [
            f"- debits/s over {seconds:g} s per figure (ours and baseline alternated); baseline"
            " = one transaction that UPDATEs the balance row and INSERTs one journal row (same"
            " engine object and settings)",
            "",
            "| engine | clients | accounts | ours (debits/s) | baseline (debits/s) | ratio |"
            f" target ≥ {TARGET_RATIO} |",
            "|---|---:|---:|---:|---:|---:|:---:|",
        ]
    for t in throughput:
        ok = "✅" if t.ratio >= TARGET_RATIO else "❌"
        lines.append(
            f"| {t.engine} | {t.clients} | {t.accounts} | {t.ours:,.0f} | {t.baseline:,.0f} |"
            f" {t.ratio:.2f} | {ok} |"
        )
    if latency:
        lines += [
            "",
            "| engine | balance read | journal entries | requests | p50 (ms) | p95 (ms) |"
            f" p99 (ms) | target p99 < {TARGET_P99_MS:g} ms |",
            "|---|---|---:|---:|---:|---:|---:|:---:|",
        ]
        for r in latency:
            ok = "✅" if r.pct(99) < TARGET_P99_MS else "❌"
            lines.append(
                f"| {r.engine} | {r.path} | {r.entries:,} | {len(r.samples):,} |"
                f" {r.pct(50):.2f} | {r.pct(95):.2f} | {r.pct(99):.2f} | {ok} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput figure")
    parser.add_argument("--entries", type=int, default=1_000_000, help="seeded journal size")
    parser.add_argument("--requests", type=int, default=2000, help="balance reads per path")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument(
        "--only", choices=["throughput", "latency"], help="run one section (default both)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("USAGEWATCH_BENCH_POSTGRES_URL")
        or os.environ.get("USAGEWATCH_TEST_POSTGRES_URL")
        or DEFAULT_PG_ADMIN_URL,
        help="a PostgreSQL server (any database); usagewatch_bench is created and dropped",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 1.0)
        args.entries = min(args.entries, 20_000)
        args.requests = min(args.requests, 300)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown engines: {', '.join(sorted(unknown))}")

    began = time.perf_counter()

    def log(line: str) -> None:
        print(line, flush=True)

    notes = [
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" SQLAlchemy {sa.__version__}"
    ]
    throughput: list[Throughput] = []
    latency: list[Latency] = []
    for engine in engines:
        log(f"== {engine}")
        try:
            databases = (
                sqlite_database() if engine == "sqlite" else postgres_database(args.postgres_url)
            )
            with databases as url:
                parent = build(Settings(database_url=url), ADMIN_TOKEN)
                try:
                    notes.append(describe(parent))
                    log(f"  {notes[-1]}")
                    if args.only != "latency":
                        throughput += measure_throughput(engine, url, parent, args.seconds, log)
                    if args.only != "throughput":
                        latency += measure_latency(engine, parent, args.entries, args.requests, log)
                finally:
                    parent.close()
        except sa.exc.OperationalError as exc:
            if engine != "postgresql":
                raise
            log(f"  skipped: PostgreSQL unreachable at {args.postgres_url}: {exc.orig}")
            notes.append(f"PostgreSQL skipped (unreachable at {args.postgres_url})")
    log(f"\ntotal run time {time.perf_counter() - began:.0f} s")
    print(report(throughput, latency, notes, args.seconds))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())

"""Dashboard benchmark: the first page's time-to-usable on an account with 10,000,000 usage
records, and charge throughput with 0 vs 200 open live-balance streams, against a real
`usagewatch serve` process, on SQLite and PostgreSQL.

    .venv/bin/python bench/dashboard_bench.py                          # 10M records, both engines
    .venv/bin/python bench/dashboard_bench.py --records 200000 --engines sqlite   # quick
    .venv/bin/python bench/dashboard_bench.py --no-browser             # HTTP only

1. Time-to-usable of the first page. The account (`report_bench`'s seeded generator: one
   account, N records over 365 days with their daily rollups, bulk-inserted) gets a paid
   credit and an owner user through the API; the bench signs in through the login form
   (GET /login for the CSRF token and cookie, POST /login) and then loads the first page
   (`/billing/usage`, where `/` and sign-in lead) over and over on one keep-alive
   connection. The header balance is in the served HTML (`data-testid="header-balance"`),
   so the page's HTTP time is its time-to-usable; each answer is checked to carry a
   number there. BASELINE, same server, same connection, interleaved: `GET /healthz` (the
   floor of any request) and `GET /login` (a page with the same template base and no
   database work). With Playwright and Debian's chromium (flags from DEVELOPERS.md), the
   same page in a headless browser, from navigation start until the header balance shows
   a number, next to the login page until its email field shows.
2. SMS charges per second (closed-loop clients in separate processes, as in
   `usage_bench.py`: `POST /v1/accounts/{id}/sms`, one at a time per client) with 0 and
   with 200 open dashboards: 200 `GET /dashboard/balance/stream` connections authenticated
   by the session cookie, held by separate client processes that read every event. Rounds
   alternate (0, 200, 200, 0, ...) so drift in machine load cancels; ratio = charges/s with
   200 streams / charges/s with none; the target is >= 0.9. The streams' events per second
   are shown to prove they were live. Each round prints the server's CPU per SMS, split
   into its event loop (uvicorn's main thread: HTTP, the streams' deliveries) and its other
   threads (the routes' thread pool, the balance feed, the sweeper), and on PostgreSQL the
   CPU of the postgres processes per SMS.

Between seeding and measuring, the database catches up with the bulk load, so the first
measured rounds do not pay for it: on PostgreSQL `VACUUM (ANALYZE)` of the seeded tables
(what autovacuum and autoanalyze would otherwise start during the rounds), then a wait, at
most CATCH_UP_WAIT_SECONDS_MAX, until `pg_stat_activity` shows no other active statement
and no autovacuum worker on the bench database (printing what it waits for); on SQLite
`ANALYZE` and then `PRAGMA wal_checkpoint(TRUNCATE)` (the bulk load's WAL, copied into the
database file by the server's first checkpoints otherwise). The time it took is printed.
Then, with the server up, the bench waits until its statements worker has caught up with
the monthly statements the seeded year owes (one per month, tens of seconds each at 10M
records): a one-off after a bulk load of history, not the steady state being measured.
The charges start with a warm-up round (not counted), after which PostgreSQL gets ANALYZE
and the same wait for quiet (`settle`): the new account's tables have statistics, and the
autovacuum workers its first charges start are done before the measured rounds begin.

SQLite runs on a file in a temporary directory; PostgreSQL in a throwaway database
`usagewatch_bench_dashboard` (dropped at the end) on --postgres-url,
USAGEWATCH_BENCH_POSTGRES_URL or USAGEWATCH_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres). The output ends with Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

import benchdb
import usage_bench
from usage_bench import ADMIN_TOKEN, Clients, Server, Target, database_cpu, ours_args

ENGINES = ("sqlite", "postgresql")
BENCH_DATABASE = "usagewatch_bench_dashboard"
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ACCOUNT = "bench"  # report_bench's account
EMAIL, PASSWORD = "owner@bench.example", "bench-password-0123"
FIRST_PAGE = "/billing/usage"
PAGE_TARGET_MS = 1000.0
STREAM_TARGET_RATIO = 0.9
SEEDED_TABLES = (  # what report_bench.generate writes
    "accounts",
    "usage_records",
    "usage_rollups",
    "usage_rollups_monthly",
    "usage_rollups_day_service",
)
CATCH_UP_WAIT_SECONDS_MAX = 120.0
CATCH_UP_POLL_SECONDS = 0.5
STATEMENTS_WAIT_SECONDS_MAX = 1800.0
SESSION_SECRET = "bench-session-secret-0123456789abcdef-0123"
SPAWN = multiprocessing.get_context("spawn")
BALANCE_RE = re.compile(
    r'data-testid="header-balance".*?data-field="available_balance"[^>]*>([^<]*\d[^<]*)<', re.S
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))
    return ordered[int(rank)] * 1000


# -- setup --------------------------------------------------------------------------------------
def seed(url: str, records: int, seed_value: int) -> None:
    from report_bench import generate
    from usagewatch.adapters.db import migrate
    from usagewatch.adapters.db.engine import Database

    db = Database(url)
    try:
        migrate.upgrade(db)
        generate(db, records, seed_value)
    finally:
        db.dispose()


def catch_up(url: str) -> None:
    """Let the database finish what the bulk load left for later (see the docstring)."""
    from usagewatch.adapters.db.engine import Database

    started = time.perf_counter()
    db = Database(url)
    try:
        if db.is_sqlite:
            wal = Path(f"{db.engine.url.database}-wal")
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
                wal_bytes = wal.stat().st_size if wal.exists() else 0
                (busy, *_) = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            if busy:
                raise RuntimeError("the WAL checkpoint was blocked by another connection")
            done = f"ANALYZE, then a WAL of {wal_bytes:,} bytes checkpointed"
        else:
            vacuumed, waited = _run_then_wait_for_quiet(
                db, f"VACUUM (ANALYZE) {', '.join(SEEDED_TABLES)}"
            )
            done = f"VACUUM (ANALYZE) in {vacuumed:.1f} s, then quiet after {waited:.1f} s"
    finally:
        db.dispose()
    print(f"  caught up in {time.perf_counter() - started:.1f} s: {done}", file=sys.stderr)


def settle(url: str) -> None:
    """After the warm-up round of charges, before the measured ones: on PostgreSQL ANALYZE
    (the new account's journal, records and rollups have no statistics yet) and a wait for
    the autovacuum workers that traffic on freshly loaded tables starts; otherwise they run
    during the first rounds (PostgreSQL's CPU per SMS was two to three times the steady
    state's there). SQLite needs nothing."""
    from usagewatch.adapters.db.engine import Database

    db = Database(url)
    try:
        if db.is_sqlite:
            return
        analyzed, waited = _run_then_wait_for_quiet(db, "ANALYZE")
        print(
            f"    settled in {analyzed + waited:.1f} s: ANALYZE in {analyzed:.1f} s, then"
            f" quiet after {waited:.1f} s",
            file=sys.stderr,
        )
    finally:
        db.dispose()


def wait_for_statements(url: str) -> None:
    """Wait until the server's statements worker has produced every monthly statement the
    seeded history owes (at most STATEMENTS_WAIT_SECONDS_MAX)."""
    from usagewatch.adapters.db.engine import Database
    from usagewatch.adapters.db.schema import statement_schedule, statements

    started = time.perf_counter()
    db = Database(url)
    owed = (
        sa.select(sa.func.count())
        .select_from(statement_schedule)
        .where(statement_schedule.c.next_due_at_us <= int(time.time() * 1_000_000))
    )
    try:
        while True:
            time.sleep(CATCH_UP_POLL_SECONDS)
            with db.read() as conn:
                left = conn.execute(owed).scalar_one()
                scheduled = conn.execute(
                    sa.select(sa.func.count()).select_from(statement_schedule)
                ).scalar_one()
                made = conn.execute(sa.select(sa.func.count()).select_from(statements)).scalar()
            waited = time.perf_counter() - started
            if scheduled and not left:
                break
            if waited >= STATEMENTS_WAIT_SECONDS_MAX:
                print(
                    f"  statements still owed after {waited:.0f} s, measuring anyway",
                    file=sys.stderr,
                )
                break
    finally:
        db.dispose()
    print(f"  {made} monthly statements caught up in {waited:.0f} s", file=sys.stderr)


def _run_then_wait_for_quiet(db: Any, sql: str) -> tuple[float, float]:
    """PostgreSQL: run a maintenance statement outside a transaction, then wait for quiet
    (`_wait_for_quiet`); returns the seconds each took."""
    started = time.perf_counter()
    autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.exec_driver_sql(sql)
        took = time.perf_counter() - started
        return took, _wait_for_quiet(conn)


def _wait_for_quiet(conn: Any) -> float:
    """Wait until no other backend runs a statement, and no autovacuum worker works, on
    this database; at most CATCH_UP_WAIT_SECONDS_MAX. Returns the seconds waited."""
    others = sa.text(
        "SELECT pid, backend_type, left(regexp_replace(query, '\\s+', ' ', 'g'), 80)"
        " FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
        " AND (state = 'active' OR backend_type = 'autovacuum worker') ORDER BY pid"
    )
    started = time.perf_counter()
    shown: set[tuple[Any, ...]] = set()
    while True:
        busy = [tuple(row) for row in conn.execute(others)]
        if not busy:
            return time.perf_counter() - started
        waited = time.perf_counter() - started
        if waited >= CATCH_UP_WAIT_SECONDS_MAX:
            print(f"  still busy after {waited:.0f} s, measuring anyway: {busy}", file=sys.stderr)
            return waited
        for row in busy:
            if row not in shown:
                shown.add(row)
                print(f"  waiting for pid {row[0]} ({row[1]}): {row[2]}", file=sys.stderr)
        time.sleep(CATCH_UP_POLL_SECONDS)


def prepare_account(base: str) -> str:
    """Money, an owner user and a platform key for the seeded account; returns the key."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        credit = {"type": "paid", "amount": "100000000.00"}
        usage_bench._check(c.post(f"/v1/accounts/{ACCOUNT}/credits", json=credit))
        user = {"email": EMAIL, "password": PASSWORD, "role": "owner"}
        usage_bench._check(c.post(f"/v1/accounts/{ACCOUNT}/users", json=user))
        key = c.post(f"/v1/accounts/{ACCOUNT}/api-keys", json={"role": "platform"})
        usage_bench._check(key)
        return str(key.json()["token"])


def sign_in(client: httpx.Client) -> str:
    """Sign in through the login form; returns the session cookie's value."""
    page = client.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if page.status_code != 200 or not found:
        raise RuntimeError(f"no login form: {page.status_code}")
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": found.group(1)}
    answer = client.post("/login", data=form)
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in failed: {answer.status_code} {answer.text[:200]}")
    return str(client.cookies["uw_session"])


# -- 1. the first page --------------------------------------------------------------------------
@dataclass
class PageRow:
    engine: str
    records: int
    how: str
    what: str
    samples: list[float]

    @property
    def p50(self) -> float:
        return pct(self.samples, 50)

    @property
    def p95(self) -> float:
        return pct(self.samples, 95)


def http_first_page(base: str, engine: str, records: int, loads: int) -> list[PageRow]:
    times: dict[str, list[float]] = {FIRST_PAGE: [], "/login": [], "/healthz": []}
    with httpx.Client(base_url=base, timeout=60) as client:
        sign_in(client)
        cold = time.perf_counter()
        first = client.get(FIRST_PAGE)
        cold = time.perf_counter() - cold
        print(f"    first load after sign-in: {cold * 1000:.1f} ms", file=sys.stderr)
        for _ in range(loads):
            for path in times:
                start = time.perf_counter()
                answer = client.get(path)
                elapsed = time.perf_counter() - start
                if answer.status_code != 200:
                    raise RuntimeError(f"{path}: {answer.status_code}")
                if path == FIRST_PAGE:
                    found = BALANCE_RE.search(answer.text)
                    if not found:
                        raise RuntimeError("no balance in the header of the first page")
                times[path].append(elapsed)
        print(f"    header balance: {BALANCE_RE.search(first.text).group(1)}", file=sys.stderr)  # type: ignore[union-attr]
    return [
        PageRow(engine, records, "HTTP", f"GET {path}", samples) for path, samples in times.items()
    ]


def browser_first_page(
    base: str, cookie: str, engine: str, records: int, loads: int
) -> list[PageRow]:
    from playwright.sync_api import sync_playwright

    page_times: list[float] = []
    login_times: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            host = base.split("//", 1)[1].split(":")[0]
            context.add_cookies(
                [{"name": "uw_session", "value": cookie, "domain": host, "path": "/"}]
            )
            page = context.new_page()
            anon = browser.new_context().new_page()
            for i in range(loads + 1):  # the first of each is a warm-up
                start = time.perf_counter()
                page.goto(base + FIRST_PAGE, wait_until="commit")
                page.wait_for_function(
                    """() => { const el = document.querySelector(
                        '[data-testid=header-balance] [data-field=available_balance]');
                        return el !== null && /\\d/.test(el.textContent); }""",
                    polling="raf",
                )
                elapsed = time.perf_counter() - start
                start2 = time.perf_counter()
                anon.goto(base + "/login", wait_until="commit")
                anon.locator("input[name=email]").wait_for(state="visible")
                elapsed2 = time.perf_counter() - start2
                if i:
                    page_times.append(elapsed)
                    login_times.append(elapsed2)
        finally:
            browser.close()
    return [
        PageRow(engine, records, "Chromium", f"{FIRST_PAGE} until the balance shows", page_times),
        PageRow(engine, records, "Chromium", "/login until the form shows", login_times),
    ]


# -- 2. open dashboards vs charges ----------------------------------------------------------------
EVENT = b"event: balance"


async def _hold_streams(base: str, cookie: str, n: int, ready: Any, stop: Any) -> list[int]:
    """n streams, each a plain HTTP/1.1 connection that counts the events it reads: as
    light a client as can be, so that the shared machine's CPU goes to the server."""
    counts = [0] * n
    host, port = base.split("//", 1)[1].split(":")
    request = (
        f"GET /dashboard/balance/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Cookie: uw_session={cookie}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    first_events = asyncio.Semaphore(0)
    writers: list[asyncio.StreamWriter] = []

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        writers.append(writer)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"stream: {head.splitlines()[0]!r}")
        rest = b""
        while chunk := await reader.read(65536):
            data = rest + chunk
            found = data.count(EVENT)
            if found:
                rest = data[data.rfind(EVENT) + len(EVENT) :]
                if counts[i] == 0:
                    first_events.release()
                counts[i] += found
            else:
                rest = data[-len(EVENT) :]
        raise RuntimeError("the server ended a stream")

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    for _ in range(n):
        await first_events.acquire()
    ready()
    await stop()
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for writer in writers:
        writer.close()
    return counts


def _stream_process(conn: Any) -> None:
    """Holds streams: ("open", base, cookie, n) -> "open" once every stream had its first
    event; then ("close",) -> the events each stream received."""
    conn.send("ready")
    while True:
        request = conn.recv()
        if request is None:
            break
        _, base, cookie, n = request
        loop = asyncio.new_event_loop()

        async def stop(loop: asyncio.AbstractEventLoop = loop) -> None:
            while not await loop.run_in_executor(None, conn.poll, 0.5):
                pass
            conn.recv()

        try:
            counts = loop.run_until_complete(
                _hold_streams(base, cookie, n, lambda: conn.send("open"), stop)
            )
            conn.send(("ok", counts))
        except Exception as exc:  # report, keep serving
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            loop.close()
    conn.close()


class StreamHolders:
    def __init__(self, processes: int) -> None:
        self._procs = []
        for _ in range(processes):
            mine, theirs = SPAWN.Pipe()
            proc = SPAWN.Process(target=_stream_process, args=(theirs,), daemon=True)
            proc.start()
            self._procs.append((proc, mine))
        for _, mine in self._procs:
            if not mine.poll(120) or mine.recv() != "ready":
                raise RuntimeError("stream process did not start")

    def open(self, base: str, cookie: str, total: int) -> None:
        share = [
            total // len(self._procs) + (i < total % len(self._procs))
            for i in range(len(self._procs))
        ]
        for (_, conn), n in zip(self._procs, share, strict=True):
            conn.send(("open", base, cookie, n))
        for _, conn in self._procs:
            if not conn.poll(120):
                raise RuntimeError("streams did not open")
            answer = conn.recv()
            if answer != "open":
                raise RuntimeError(f"streams failed: {answer}")

    def close(self) -> list[int]:
        counts: list[int] = []
        for _, conn in self._procs:
            conn.send(("close",))
        for _, conn in self._procs:
            status, payload = conn.recv()
            if status != "ok":
                raise RuntimeError(f"streams failed: {payload}")
            counts += payload
        return counts

    def cpu(self) -> float:
        """User + system CPU seconds of the holding processes so far."""
        total = 0.0
        for proc, _ in self._procs:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def shutdown(self) -> None:
        for proc, conn in self._procs:
            conn.send(None)
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


@dataclass
class StreamRow:
    engine: str
    clients: int
    streams: int
    without: float
    with_streams: float
    cpu_without_ms: float
    cpu_with_ms: float
    events_per_stream_s: float

    @property
    def ratio(self) -> float:
        return self.with_streams / self.without if self.without else float("nan")


def charges_with_streams(
    server: Server,
    url: str,
    target: Target,
    cookie: str,
    engine: str,
    clients: int,
    streams: int,
    seconds: float,
    rounds: int,
) -> StreamRow:
    pool = Clients(clients)
    holders = StreamHolders(max(1, min(4, -(-streams // 100))))
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    events: list[float] = []
    try:
        # A whole round of warm-up: the first measured round is otherwise the slowest, and
        # it is one without streams.
        pool.run("sms", target, f"{engine}-warm", seconds, clients)
        settle(url)
        order = [False, True, True, False] * rounds
        for step, with_streams in enumerate(order):
            if with_streams:
                holders.open(server.base, cookie, streams)
                time.sleep(0.5)  # the opening burst of first events is over
            before, holders_before = server.cpu(), holders.cpu()
            loop_before = server.main_thread_cpu()
            database_before = database_cpu(engine)
            done, rate = pool.run("sms", target, f"{engine}-{step}", seconds, clients)
            used = server.cpu() - before
            loop_used = server.main_thread_cpu() - loop_before
            database_used = database_cpu(engine) - database_before
            # what the stream readers took from the shared cores meanwhile
            holders_cores = (holders.cpu() - holders_before) / seconds
            if with_streams:
                counts = holders.close()
                if len(counts) != streams or min(counts) < 1:
                    raise RuntimeError(f"streams lost: {len(counts)} of {streams}")
                events.append(statistics.fmean(counts) / seconds)
            rates[with_streams].append(rate)
            cpu[with_streams].append(used / max(done, 1) * 1000)
            print(
                f"    round {step}: {streams if with_streams else 0:>3} streams"
                f" {rate:7.0f} SMS/s ({cpu[with_streams][-1]:.2f} ms server CPU each: event"
                f" loop {loop_used / max(done, 1) * 1000:.2f}, threads"
                f" {(used - loop_used) / max(done, 1) * 1000:.2f}"
                + (
                    f"; PostgreSQL {database_used / max(done, 1) * 1000:.2f}"
                    if not math.isnan(database_used)
                    else ""
                )
                + ")"
                + (
                    f", {events[-1]:.1f} events/s per stream"
                    f" (their readers: {holders_cores:.2f} cores)"
                    if with_streams
                    else ""
                ),
                file=sys.stderr,
            )
    finally:
        holders.shutdown()
        pool.close()
    return StreamRow(
        engine,
        clients,
        streams,
        statistics.fmean(rates[False]),
        statistics.fmean(rates[True]),
        statistics.fmean(cpu[False]),
        statistics.fmean(cpu[True]),
        statistics.fmean(events),
    )


# -- driver -------------------------------------------------------------------------------------
@contextlib.contextmanager
def database(engine: str, workdir: Path, pg_admin_url: str) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{workdir / 'dashboard.db'}"
    else:
        with benchdb.postgres_database(pg_admin_url, BENCH_DATABASE) as url:
            yield url


def run_engine(
    engine: str, args: argparse.Namespace, workdir: Path
) -> tuple[list[PageRow], StreamRow | None]:
    pages: list[PageRow] = []
    with database(engine, workdir, args.postgres_url) as url:
        print(f"{engine}: seeding {args.records:,} records", file=sys.stderr)
        start = time.perf_counter()
        seed(url, args.records, args.seed)
        print(f"  seeded in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        catch_up(url)
        server = Server(f"usagewatch-{engine}", ours_args(url), workdir, args.profile)
        try:
            token = prepare_account(server.base)
            wait_for_statements(url)
            print("  1. the first page", file=sys.stderr)
            pages += http_first_page(server.base, engine, args.records, args.loads)
            with httpx.Client(base_url=server.base, timeout=60) as c:
                cookie = sign_in(c)
            if args.browser:
                pages += browser_first_page(
                    server.base, cookie, engine, args.records, args.browser_loads
                )
            for row in pages:
                print(
                    f"    {row.how:<8} {row.what:<40} p50 {row.p50:8.1f} ms  p95 {row.p95:8.1f} ms",
                    file=sys.stderr,
                )
            streams = None
            if args.streams:
                print(f"  2. SMS charges with 0 vs {args.streams} open streams", file=sys.stderr)
                streams = charges_with_streams(
                    server,
                    url,
                    Target(server.base, token, ACCOUNT),
                    cookie,
                    engine,
                    args.clients,
                    args.streams,
                    args.seconds,
                    args.rounds,
                )
                print(
                    f"    without {streams.without:.0f}/s, with {streams.with_streams:.0f}/s:"
                    f" ratio {streams.ratio:.2f}",
                    file=sys.stderr,
                )
        finally:
            server.stop()
    return pages, streams


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--loads", type=int, default=50, help="HTTP loads of each page")
    parser.add_argument("--browser-loads", type=int, default=20)
    parser.add_argument("--browser", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--clients", type=int, default=2, help="SMS client processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3, help="of 0, N, N, 0 streams")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("USAGEWATCH_BENCH_POSTGRES_URL")
        or os.environ.get("USAGEWATCH_TEST_POSTGRES_URL")
        or DEFAULT_PG_ADMIN_URL,
    )
    parser.add_argument("--profile", type=Path, help="cProfile the server into this file")
    args = parser.parse_args()
    os.environ["USAGEWATCH_SESSION_SECRET"] = SESSION_SECRET  # the server's, inherited
    if args.browser and not Path("/usr/bin/chromium").exists():
        print("no /usr/bin/chromium: skipping the browser figures", file=sys.stderr)
        args.browser = False
    pages: list[PageRow] = []
    streams: list[StreamRow] = []
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        for engine in args.engines.split(","):
            p, s = run_engine(engine, args, Path(tmp))
            pages += p
            if s is not None:
                streams.append(s)

    print("\n| engine | records | measure | p50 (ms) | p95 (ms) | target < 1 s |")
    print("|---|---:|---|---:|---:|:---:|")
    for row in pages:
        target = mark(row.p95 < PAGE_TARGET_MS) if FIRST_PAGE in row.what else "baseline"
        print(
            f"| {row.engine} | {row.records:,} | {row.how}: {row.what} | {row.p50:.1f}"
            f" | {row.p95:.1f} | {target} |"
        )
    if streams:
        print(
            "\n| engine | SMS clients | open streams | SMS/s without | SMS/s with | ratio"
            " | target ≥ 0.9 | server CPU/SMS without (ms) | with (ms) | events/s per stream |"
        )
        print("|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|")
        for s in streams:
            print(
                f"| {s.engine} | {s.clients} | {s.streams} | {s.without:,.0f}"
                f" | {s.with_streams:,.0f} | {s.ratio:.2f} | {mark(s.ratio >= STREAM_TARGET_RATIO)}"
                f" | {s.cpu_without_ms:.2f} | {s.cpu_with_ms:.2f} | {s.events_per_stream_s:.1f} |"
            )


if __name__ == "__main__":
    main()

"""Usage benchmark: SMS charges and call lifecycles per second through the HTTP API of a real
server process, on SQLite and PostgreSQL.

    .venv/bin/python bench/usage_bench.py                      # both engines, ~2 minutes
    .venv/bin/python bench/usage_bench.py --quick              # smoke run, under a minute
    .venv/bin/python bench/usage_bench.py --engines sqlite --seconds 10
    .venv/bin/python bench/usage_bench.py --profile-dir /tmp/prof   # cProfile the server

The server under test is `python -m usagewatch serve` in its own process on a free loopback
port (admin token from the environment, log level warning, as deployed). Clients are
separate OS processes (spawn), each with one keep-alive httpx connection, sending one request
at a time as fast as answers come back (closed loop).

1. SMS charges per second: one `POST /v1/accounts/{id}/sms` per SMS (a unique sms_sid, a
   platform key, a 5-character GSM-7 body: 1 unit at 0.20), with 1 and 4 clients. Each SMS
   is priced, debited from the balance, journaled and recorded with its rollup in one
   transaction. BASELINE, measured in the same run with the same clients and requests: a
   bare endpoint of the same framework and server that does no work -- a second process
   running uvicorn (same loop, same HTTP parser, same flags) with a tiny FastAPI app whose
   one POST route (a plain `def`, dispatched to the thread pool like every usagewatch route)
   returns a constant JSON body (`python bench/usage_bench.py --serve-bare PORT`).
   ratio = ours / baseline; the target is >= 0.3. Ours and the baseline alternate (baseline,
   ours, ours, baseline; half the time each) so drift in machine load cancels.
   Then 4 clients on 4 accounts, one each (SPREAD_ACCOUNTS): the commands of one account
   queue behind its balance row's lock, those of different accounts do not, so this row
   shows what that lock costs; a platform serves many accounts at once. The target is
   judged on the one-account rows.
2. Call lifecycles per second at 4 clients: authorize (`POST …/calls`, holds the first
   window) then end (`POST …/calls/{sid}/end`, completed, 45 s: one pulse captured, the rest
   released). Baseline: the same two requests to the bare endpoint.
3. Latency of authorize at half the rate of (2), open loop: calls are started on a fixed
   schedule whatever the answers (asyncio + httpx in the bench process, up to 64
   connections), each one authorize then end; latency is counted from the scheduled start
   (so queueing behind a slow answer is included). Baseline: the bare endpoint under the
   same schedule.

Before measuring, 4 clients charge SMS for HISTORY_SECONDS (10 s) and, on PostgreSQL, the
bench runs ANALYZE, as autovacuum does within a minute of traffic on a new database (see
`take_statistics`): the figures are the steady state of an account with a history.

The server's CPU time per request (from /proc) is shown beside each throughput figure, and
on PostgreSQL the CPU time of all its processes (the bench's PostgreSQL is local): they say
where the time goes (server, database, or the clients and waiting). After each engine the bench
checks the books it produced: one usage record per 201, and `verify` finds no difference.

SQLite runs on a file in a temporary directory. PostgreSQL runs in a throwaway database
`usagewatch_bench_usage` (dropped at the end) on the server named by --postgres-url,
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
import platform
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

import benchdb
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import usage_records

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
BENCH_DATABASE = "usagewatch_bench_usage"
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 0.3
ACCOUNT = "bench"
START_CREDIT = "100000000.00"
SMS_CLIENTS = (1, 4)
# Four clients on four accounts, one each: what one account's lock does not serialize.
SPREAD_ACCOUNTS = 4
SPREAD_WHAT = f"SMS charges, {SPREAD_ACCOUNTS} accounts"
CALL_CLIENTS = 4
CALL_SECONDS = 45  # one 60 s pulse
WARMUP_SECONDS = 0.5
HISTORY_SECONDS = 10.0  # SMS charged before measuring, then the planner's statistics taken
SERVER_START_SECONDS = 60
LATENCY_CONNECTIONS = 64
SPAWN = multiprocessing.get_context("spawn")
BARE_BODY = {"sms_sid": "SM0", "type": "transactional", "units": 1, "price": "0.20"}


# -- the baseline server: a bare endpoint of the same framework and server --------------------
def serve_bare(port: int) -> None:
    """uvicorn with a FastAPI app whose one POST route does no work (same uvicorn.run flags
    as `usagewatch serve`)."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/{path:path}", status_code=201)
    def bare(path: str) -> dict[str, Any]:
        return BARE_BODY

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- server processes ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_cpu(stat_path: str) -> float:
    """User + system CPU seconds from a /proc stat file (nan when it is gone)."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu(engine: str) -> float:
    """User + system CPU seconds so far of the database's own processes: on PostgreSQL every
    postgres process on this machine (backends, WAL writer, checkpointer...; the bench's
    PostgreSQL is local); nan on SQLite, which runs inside the server."""
    if engine != "postgresql":
        return float("nan")
    total, seen = 0, False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if name == "postgres":
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
            seen = True
    return total / os.sysconf("SC_CLK_TCK") if seen else float("nan")


class Server:
    """A server subprocess on a free loopback port; `cpu()` is its CPU time so far."""

    def __init__(self, name: str, args: list[str], workdir: Path, profile: Path | None) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.profile = profile
        env = {
            **os.environ,
            "USAGEWATCH_ADMIN_TOKEN": ADMIN_TOKEN,
            "USAGEWATCH_LOG_LEVEL": "warning",
        }
        prefix = [sys.executable]
        if profile is not None:
            prefix += ["-m", "cProfile", "-o", str(profile)]
        command = [*prefix, *[a.replace("{port}", str(self.port)) for a in args]]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start:\n{self.log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.05)

    def cpu(self) -> float:
        """User + system CPU seconds of the server process (all its threads)."""
        return _proc_cpu(f"/proc/{self.proc.pid}/stat")

    def main_thread_cpu(self) -> float:
        """User + system CPU seconds of the server's main thread: uvicorn's event loop (the
        rest is the thread pool that runs the routes, and the background threads)."""
        return _proc_cpu(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat")

    def stop(self) -> None:
        if self.proc.poll() is None:
            # uvicorn shuts down cleanly on either signal, then re-raises it: SIGTERM would
            # end a cProfile'd process before it writes; SIGINT ends it with SystemExit.
            self.proc.send_signal(signal.SIGINT if self.profile else signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def ours_args(url: str) -> list[str]:
    return ["-m", "usagewatch", "serve", "--port", "{port}", "--database-url", url]


def bare_args() -> list[str]:
    return [str(Path(__file__).resolve()), "--serve-bare", "{port}"]


# -- load clients -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Where a client sends its requests: the same paths and bodies on both servers."""

    base: str
    token: str
    account: str = ACCOUNT


def _check(response: httpx.Response) -> None:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.url.path}: {response.status_code} {response.text}")


def one_sms(client: httpx.Client, target: Target, sid: str) -> None:
    body = {"sms_sid": sid, "type": "transactional", "to": "+919800000001", "body": "hello"}
    _check(client.post(f"/v1/accounts/{target.account}/sms", json=body))


def one_call(client: httpx.Client, target: Target, sid: str) -> None:
    base = f"/v1/accounts/{target.account}/calls"
    body = {"call_sid": sid, "direction": "outbound", "to": "+919800000002"}
    _check(client.post(base, json=body))
    end = {"status": "completed", "duration_seconds": CALL_SECONDS}
    _check(client.post(f"{base}/{sid}/end", json=end))


OPS: dict[str, Callable[[httpx.Client, Target, str], None]] = {"sms": one_sms, "call": one_call}


def run_load(
    clients: dict[Target, httpx.Client],
    op: str,
    target: Target,
    tag: str,
    start_at: float,
    seconds: float,
) -> tuple[int, float]:
    """Send `op` in a loop from `start_at` (wall clock, shared by processes) for `seconds`
    over one keep-alive connection. Returns (operations done, when the last one finished)."""
    client = clients.get(target)
    if client is None:
        headers = {"Authorization": f"Bearer {target.token}"}
        client = clients[target] = httpx.Client(base_url=target.base, headers=headers, timeout=60)
    send = OPS[op]
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    stop = start_at + seconds
    count = 0
    while time.time() < stop:
        send(client, target, f"{tag}-{count}")
        count += 1
    return count, time.time()


def _process_client(conn: Any) -> None:
    """A client process: serves run_load requests until told to stop."""
    clients: dict[Target, httpx.Client] = {}
    try:
        conn.send("ready")
        while True:
            request = conn.recv()
            if request is None:
                break
            try:
                conn.send(("ok", run_load(clients, *request)))
            except Exception as exc:  # report, keep serving
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        for client in clients.values():
            client.close()
        conn.close()


class Clients:
    """N client processes."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._procs: list[tuple[Any, Any]] = []
        for _ in range(n):
            mine, theirs = SPAWN.Pipe()
            proc = SPAWN.Process(target=_process_client, args=(theirs,), daemon=True)
            proc.start()
            self._procs.append((proc, mine))
        for proc, mine in self._procs:
            if not mine.poll(120) or mine.recv() != "ready":
                raise RuntimeError(f"client process {proc.pid} did not start")

    def run(
        self, op: str, target: Target | list[Target], tag: str, seconds: float, n: int
    ) -> tuple[int, float]:
        """The first n clients run `op` at once, client i against target i (round robin
        over a list); returns (operations done, per second)."""
        targets = target if isinstance(target, list) else [target]
        start_at = time.time() + 0.2
        busy = self._procs[:n]
        for i, (_proc, conn) in enumerate(busy):
            conn.send((op, targets[i % len(targets)], f"{tag}-c{i}", start_at, seconds))
        results = []
        for _proc, conn in busy:
            status, payload = conn.recv()
            if status != "ok":
                raise RuntimeError(f"client failed: {payload}")
            results.append(payload)
        done = sum(count for count, _ in results)
        elapsed = max(end for _, end in results) - start_at
        return done, done / elapsed

    def close(self) -> None:
        for proc, conn in self._procs:
            conn.send(None)
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
            conn.close()


# -- results ------------------------------------------------------------------------------------
@dataclass
class Rate:
    """Operations per second of one kind of load, ours next to the baseline."""

    engine: str
    what: str
    clients: int
    ours: float
    baseline: float
    ours_cpu_ms: float  # server CPU per operation
    baseline_cpu_ms: float
    database_cpu_ms: float  # PostgreSQL's CPU per operation of ours (nan on SQLite)

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


@dataclass
class Latency:
    engine: str
    rate: float  # calls started per second
    ours: list[float] = field(default_factory=list)  # seconds, from the scheduled start
    baseline: list[float] = field(default_factory=list)

    @staticmethod
    def pct(samples: list[float], p: float) -> float:
        ordered = sorted(samples)
        rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[rank] * 1000


@dataclass
class Tally:
    """How many SMS and calls usagewatch answered 201 to, to check against its database."""

    sms: int = 0
    calls: int = 0

    def add(self, op: str, done: int) -> None:
        if op == "sms":
            self.sms += done
        else:
            self.calls += done


# -- databases ----------------------------------------------------------------------------------
@contextlib.contextmanager
def sqlite_database(workdir: Path) -> Iterator[str]:
    yield f"sqlite:///{workdir / 'bench.db'}"


def postgres_database(admin_url: str) -> contextlib.AbstractContextManager[str]:
    return benchdb.postgres_database(admin_url, BENCH_DATABASE)


def describe(url: str) -> str:
    db = Database(url)
    try:
        with db.read() as conn:
            if db.is_sqlite:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                    int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0), "?"
                )
                return f"SQLite, journal_mode={mode}, synchronous={sync}"
            version = conn.exec_driver_sql("SHOW server_version").scalar()
            commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
            return f"PostgreSQL {version}, synchronous_commit={commit}"
    finally:
        db.dispose()


def setup_account(base: str, account: str = ACCOUNT) -> str:
    """A bench account with plenty of money and a platform key; returns the key's token."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as c:
        _check(c.post("/v1/accounts", json={"id": account, "name": "Bench"}))
        credit = {"type": "paid", "amount": START_CREDIT}
        _check(c.post(f"/v1/accounts/{account}/credits", json=credit))
        key = c.post(f"/v1/accounts/{account}/api-keys", json={"role": "platform"})
        _check(key)
        return str(key.json()["token"])


def take_statistics(url: str) -> str:
    """PostgreSQL: ANALYZE, as autovacuum does within its first minute of traffic on a new
    database. Before it, the tables have no statistics, and the plans PostgreSQL caches for
    the hot statements (generic plans, from their sixth run on a connection) can read every
    record and journal entry of the account instead of using the unique indexes, so the
    cost of a charge grows with the account's history until autovacuum's ANALYZE replaces
    them; the bench measures the steady state after it. SQLite takes a unique index whenever a
    statement gives all its columns, statistics or not, and needs nothing."""
    db = Database(url)
    try:
        if db.is_sqlite:
            return "SQLite: nothing to do"
        autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        started = time.perf_counter()
        with autocommit.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
        return f"ANALYZE in {time.perf_counter() - started:.1f} s"
    finally:
        db.dispose()


def check_books(url: str, tally: Tally) -> str:
    """Every 201 left one usage record, and the books agree with the journal."""
    from usagewatch.service.verify import verify

    db = Database(url)
    try:
        with db.read() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.select(usage_records.c.service, sa.func.count()).group_by(
                        usage_records.c.service
                    )
                ).all()
            )
        problems = verify(db)
    finally:
        db.dispose()
    got = (counts.get("sms", 0), counts.get("voice", 0))
    if got != (tally.sms, tally.calls) or problems:
        raise RuntimeError(
            f"books disagree: records {got}, sent {(tally.sms, tally.calls)}; {problems[:5]}"
        )
    return f"{tally.sms:,} SMS and {tally.calls:,} calls recorded, verify: ok"


# -- section 1 and 2: throughput ----------------------------------------------------------------
def measure_rate(
    engine: str,
    what: str,
    op: str,
    n: int,
    pool: Clients,
    servers: Mapping[str, tuple[Server, Target | list[Target]]],
    tally: Tally,
    seconds: float,
    log: Callable[[str], None],
) -> Rate:
    slug = what.replace(" ", "").replace(",", "-")  # unique sids per measure: no replays
    rates: dict[str, list[float]] = {"ours": [], "baseline": []}
    cpu: dict[str, list[float]] = {"ours": [], "baseline": []}
    database_ms: list[float] = []  # of ours (nan on SQLite)
    for kind in ("baseline", "ours"):  # warm connections, caches and the database
        server, target = servers[kind]
        done, _ = pool.run(op, target, f"{engine}-{slug}-{n}-warm-{kind}", WARMUP_SECONDS, n)
        if kind == "ours":
            tally.add(op, done)
    for step, kind in enumerate(["baseline", "ours", "ours", "baseline"]):
        server, target = servers[kind]
        before, database_before = server.cpu(), database_cpu(engine)
        done, rate = pool.run(op, target, f"{engine}-{slug}-{n}-{step}", seconds / 2, n)
        used = server.cpu() - before
        if kind == "ours":
            tally.add(op, done)
            database_ms.append((database_cpu(engine) - database_before) / max(done, 1) * 1000)
        rates[kind].append(rate)
        cpu[kind].append(used / max(done, 1) * 1000)
    row = Rate(
        engine,
        what,
        n,
        statistics.fmean(rates["ours"]),
        statistics.fmean(rates["baseline"]),
        statistics.fmean(cpu["ours"]),
        statistics.fmean(cpu["baseline"]),
        statistics.fmean(database_ms),
    )
    log(
        f"  {engine:<10} {what:<22} {n} client(s): ours {row.ours:7.0f}/s"
        f" ({row.ours_cpu_ms:.2f} ms server CPU each)   baseline {row.baseline:7.0f}/s"
        f" ({row.baseline_cpu_ms:.2f} ms)   ratio {row.ratio:.2f}"
        + (
            f"   PostgreSQL CPU {row.database_cpu_ms:.2f} ms each"
            if not math.isnan(row.database_cpu_ms)
            else ""
        )
    )
    return row


# -- section 3: open-loop latency ---------------------------------------------------------------
async def paced_calls(target: Target, rate: float, seconds: float, tag: str) -> list[float]:
    """Start calls on a fixed schedule (`rate` per second for `seconds`), each authorize then
    end; returns authorize latencies from the scheduled start, in seconds."""
    headers = {"Authorization": f"Bearer {target.token}"}
    limits = httpx.Limits(
        max_connections=LATENCY_CONNECTIONS, max_keepalive_connections=LATENCY_CONNECTIONS
    )
    calls = f"/v1/accounts/{target.account}/calls"
    end = {"status": "completed", "duration_seconds": CALL_SECONDS}
    async with httpx.AsyncClient(
        base_url=target.base, headers=headers, timeout=60, limits=limits
    ) as client:
        for _ in range(8):  # open a few connections first
            (await client.get("/healthz")).raise_for_status()
        count = max(1, int(rate * seconds))
        start = time.perf_counter() + 0.1

        async def one(i: int) -> float:
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            sid = f"{tag}-{i}"
            body = {"call_sid": sid, "direction": "outbound", "to": "+919800000002"}
            authorized = await client.post(calls, json=body)
            latency = time.perf_counter() - scheduled
            _check(authorized)
            _check(await client.post(f"{calls}/{sid}/end", json=end))
            return latency

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def measure_latency(
    engine: str,
    rate: float,
    servers: dict[str, tuple[Server, Target]],
    tally: Tally,
    seconds: float,
    log: Callable[[str], None],
) -> Latency:
    result = Latency(engine, rate)
    for kind in ("baseline", "ours"):
        _server, target = servers[kind]
        warm = asyncio.run(
            paced_calls(target, rate, min(seconds, 1.0), f"{engine}-lat-warm-{kind}")
        )
        samples = asyncio.run(paced_calls(target, rate, seconds, f"{engine}-lat-{kind}"))
        setattr(result, kind, samples)
        if kind == "ours":
            tally.add("call", len(warm) + len(samples))
    log(
        f"  {engine:<10} authorize at {rate:.0f} calls/s (open loop): ours p50"
        f" {result.pct(result.ours, 50):6.2f} ms p99 {result.pct(result.ours, 99):6.2f} ms"
        f"   baseline p50 {result.pct(result.baseline, 50):6.2f} ms"
        f" p99 {result.pct(result.baseline, 99):6.2f} ms  ({len(result.ours)} calls)"
    )
    return result


def summarize_profile(path: Path, log: Callable[[str], None], top: int = 25) -> None:
    if not path.exists():
        log(f"  (no profile written at {path})")
        return
    log(f"  profile of the server: {path} (top {top} by own time)")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime")
    width = 100
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows:
        where = f"{Path(file).name}:{line}({func})"[:width]
        log(f"    {tt:7.2f} s own {tt / total:6.1%}  {ct:7.2f} s cum  {nc:9,} calls  {where}")


# -- one engine ---------------------------------------------------------------------------------
def run_engine(
    engine: str,
    url: str,
    bare: Server,
    pool: Clients,
    args: argparse.Namespace,
    workdir: Path,
    notes: list[str],
    log: Callable[[str], None],
) -> tuple[list[Rate], Latency | None]:
    profile = Path(args.profile_dir) / f"{engine}.prof" if args.profile_dir else None
    ours = Server(f"usagewatch-{engine}", ours_args(url), workdir, profile)
    rows: list[Rate] = []
    latency: Latency | None = None
    tally = Tally()
    try:
        notes.append(describe(url))
        log(f"  {notes[-1]}")
        token = setup_account(ours.base)
        target = Target(ours.base, token)
        servers: dict[str, tuple[Server, Target]] = {
            "ours": (ours, target),
            "baseline": (bare, Target(bare.base, "unused")),
        }
        spread = [target] + [
            Target(ours.base, setup_account(ours.base, f"{ACCOUNT}-{i}"), f"{ACCOUNT}-{i}")
            for i in range(2, SPREAD_ACCOUNTS + 1)
        ]
        done, _ = pool.run("sms", target, f"{engine}-history", HISTORY_SECONDS, 4)
        tally.add("sms", done)
        log(f"  {engine:<10} history: {done:,} SMS charged; {take_statistics(url)}")
        for n in SMS_CLIENTS:
            rows.append(
                measure_rate(
                    engine, "SMS charges", "sms", n, pool, servers, tally, args.seconds, log
                )
            )
        spread_servers: dict[str, tuple[Server, Target | list[Target]]] = {
            "ours": (ours, spread),
            "baseline": servers["baseline"],
        }
        rows.append(
            measure_rate(
                engine,
                SPREAD_WHAT,
                "sms",
                SPREAD_ACCOUNTS,
                pool,
                spread_servers,
                tally,
                args.seconds,
                log,
            )
        )
        calls = measure_rate(
            engine,
            "call lifecycles",
            "call",
            CALL_CLIENTS,
            pool,
            servers,
            tally,
            args.seconds,
            log,
        )
        rows.append(calls)
        if not args.no_latency:
            latency = measure_latency(
                engine, calls.ours / 2, servers, tally, args.latency_seconds, log
            )
    finally:
        ours.stop()
    log(f"  {engine:<10} {check_books(url, tally)}")
    if profile is not None:
        summarize_profile(profile, log)
    return rows, latency


# -- report -------------------------------------------------------------------------------------
def report(
    rows: list[Rate], latencies: list[Latency], notes: list[str], args: argparse.Namespace
) -> str:
    lines = ["", "## Usage benchmark (HTTP API, server in its own process, loopback)", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        f"- closed loop, {args.seconds:g} s per figure (ours and baseline alternated); each"
        " client is an OS process with one keep-alive httpx connection; baseline = a bare"
        " FastAPI endpoint (sync `def`, constant JSON) on the same uvicorn, in its own process",
        "- server CPU = the server process's CPU time per operation (user + system);"
        " PostgreSQL CPU = that of every postgres process on the machine, per operation of"
        " ours (on SQLite the database runs inside the server)",
        "",
        "| engine | measure | clients | usagewatch (/s) | bare endpoint (/s) | ratio |"
        " target | server CPU usagewatch (ms) | server CPU bare (ms) | PostgreSQL CPU (ms) |",
        "|---|---|---:|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.what == "SMS charges":
            target = f"≥ {TARGET_RATIO} {'✅' if r.ratio >= TARGET_RATIO else '❌'}"
        else:
            target = "—"
        lines.append(
            f"| {r.engine} | {r.what} | {r.clients} | {r.ours:,.0f} | {r.baseline:,.0f} |"
            f" {r.ratio:.2f} | {target} | {r.ours_cpu_ms:.2f} | {r.baseline_cpu_ms:.2f} |"
            f" {'—' if math.isnan(r.database_cpu_ms) else f'{r.database_cpu_ms:.2f}'} |"
        )
    if latencies:
        lines += [
            "",
            "Call lifecycle = authorize + end (2 requests; the bare figure is pairs of requests"
            " per second). Authorize latency at half the measured call rate, open loop"
            f" ({args.latency_seconds:g} s, latency from the scheduled start):",
            "",
            "| engine | load (calls/s) | calls | authorize p50 (ms) | authorize p99 (ms) |"
            " bare p50 (ms) | bare p99 (ms) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for lat in latencies:
            lines.append(
                f"| {lat.engine} | {lat.rate:,.0f} | {len(lat.ours):,} |"
                f" {lat.pct(lat.ours, 50):.2f} | {lat.pct(lat.ours, 99):.2f} |"
                f" {lat.pct(lat.baseline, 50):.2f} | {lat.pct(lat.baseline, 99):.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput figure")
    parser.add_argument(
        "--latency-seconds", type=float, default=10.0, help="per open-loop latency run"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency section")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument(
        "--profile-dir", help="run the usagewatch server under cProfile; write <engine>.prof here"
    )
    parser.add_argument(
        "--serve-bare", type=int, metavar="PORT", help="(internal) run the baseline server"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("USAGEWATCH_BENCH_POSTGRES_URL")
        or os.environ.get("USAGEWATCH_TEST_POSTGRES_URL")
        or DEFAULT_PG_ADMIN_URL,
        help=f"a PostgreSQL server (any database); {BENCH_DATABASE} is created and dropped",
    )
    args = parser.parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare)
        return 0
    if args.quick:
        args.seconds = min(args.seconds, 1.0)
        args.latency_seconds = min(args.latency_seconds, 2.0)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown engines: {', '.join(sorted(unknown))}")
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)

    began = time.perf_counter()

    def log(line: str) -> None:
        print(line, flush=True)

    import fastapi
    import uvicorn

    notes = [
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}, httpx"
        f" {httpx.__version__}"
    ]
    if args.profile_dir:
        notes.append("the usagewatch server ran under cProfile: figures are not comparable")
    rows: list[Rate] = []
    latencies: list[Latency] = []
    with tempfile.TemporaryDirectory(prefix="usagewatch-usage-bench-") as tmp:
        workdir = Path(tmp)
        bare = Server("bare", bare_args(), workdir, None)
        pool = Clients(max(*SMS_CLIENTS, CALL_CLIENTS))
        try:
            for engine in engines:
                log(f"== {engine}")
                try:
                    databases = (
                        sqlite_database(workdir)
                        if engine == "sqlite"
                        else postgres_database(args.postgres_url)
                    )
                    with databases as url:
                        got, latency = run_engine(
                            engine, url, bare, pool, args, workdir, notes, log
                        )
                        rows += got
                        if latency is not None:
                            latencies.append(latency)
                except sa.exc.OperationalError as exc:
                    if engine != "postgresql":
                        raise
                    log(f"  skipped: PostgreSQL unreachable at {args.postgres_url}: {exc.orig}")
                    notes.append(f"PostgreSQL skipped (unreachable at {args.postgres_url})")
        finally:
            pool.close()
            bare.stop()
    log(f"\ntotal run time {time.perf_counter() - began:.0f} s")
    print(report(rows, latencies, notes, args))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())

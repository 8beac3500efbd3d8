"""Concurrency: many processes and threads on one account never overspend it, never lose an
update, never surface "database is locked", and leave books that `verify` agrees with.

The PostgreSQL tests start OS processes (multiprocessing, "spawn" context) that each build
their own container, as separate server processes would, and release them together through a
barrier so their commands really overlap on the same balance row.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN_TOKEN, PG_ADMIN_URL
from usagewatch.adapters.db.engine import Database, normalize_url
from usagewatch.adapters.db.schema import balances, holds, journal_entries, metadata
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.errors import UsageWatchError
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.verify import verify

SPAWN = multiprocessing.get_context("spawn")
WORKER_TIMEOUT_SECONDS = 240

postgres = pytest.mark.skipif(
    not PG_ADMIN_URL, reason="set USAGEWATCH_TEST_POSTGRES_URL to run the PostgreSQL tests"
)


# -- helpers run in the parent ------------------------------------------------------------
@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL database, emptied (like conftest's `database_url`)."""
    url: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(normalize_url(url))
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    engine.dispose()
    return url


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "usagewatch.db"
    target.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{target}"


@pytest.fixture
def parent() -> Iterator[Callable[[str], Container]]:
    """Build containers in the test process (real clock, like the workers)."""
    built: list[Container] = []

    def make(url: str) -> Container:
        c = build(Settings(database_url=url), ADMIN_TOKEN)
        built.append(c)
        return c

    yield make
    for c in built:
        c.close()


def run_processes(
    url: str, jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]], barrier: Any = None
) -> list[Any]:
    """Run each (job, args) in its own spawned process with its own container; start the
    jobs together (once every party of `barrier` is ready); return their results in order.
    A failure in any worker fails the test."""
    barrier = barrier or SPAWN.Barrier(len(jobs))
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_worker_main, args=(i, url, barrier, results, job, args))
        for i, (job, args) in enumerate(jobs)
    ]
    for p in procs:
        p.start()
    try:
        collected: dict[int, Any] = {}
        for _ in procs:
            index, ok, payload = results.get(timeout=WORKER_TIMEOUT_SECONDS)
            assert ok, f"worker {index} failed:\n{payload}"
            collected[index] = payload
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0, f"worker exited with {p.exitcode}"
        return [collected[i] for i in range(len(jobs))]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        results.close()


def books(db: Database, account_id: str) -> dict[str, int]:
    """Balance row figures and what the journal says, straight from the tables."""
    with db.read() as conn:
        row = conn.execute(sa.select(*balances.c).where(balances.c.account_id == account_id)).one()
        journal = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(journal_entries.c.amount_micros), 0),
                sa.func.min(journal_entries.c.available_after_micros),
                sa.func.count(),
            ).where(journal_entries.c.account_id == account_id)
        ).one()
        open_holds = conn.execute(
            sa.select(sa.func.count()).where(
                holds.c.account_id == account_id, holds.c.status == "open"
            )
        ).scalar_one()
    return {
        "paid": row.paid_micros,
        "promotional": row.promotional_micros,
        "reserved": row.reserved_micros,
        "overdraft": row.overdraft_micros,
        "available": row.paid_micros + row.promotional_micros - row.reserved_micros,
        "version": row.version,
        "journal_sum": int(journal[0]),
        "journal_min_available": int(journal[1]),
        "entries": int(journal[2]),
        "open_holds": int(open_holds),
    }


def units(text: str) -> int:
    return Money.parse(text).micros


# -- what the workers run (module level, so "spawn" can import them) -------------------------
def _worker_main(
    index: int,
    url: str,
    barrier: Any,
    results: Any,
    job: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    try:
        container = build(Settings(database_url=url, db_pool_size=2), ADMIN_TOKEN)
        try:
            barrier.wait(timeout=WORKER_TIMEOUT_SECONDS)
            payload = job(container, *args)
        finally:
            container.close()
        results.put((index, True, payload))
    except BaseException:
        results.put((index, False, traceback.format_exc()))


def _debits(c: Container, account_id: str, prefix: str, count: int, amount: int) -> list[Any]:
    """[("ok", available_after) or (error code, None)] for each debit."""
    out: list[Any] = []
    for i in range(count):
        try:
            result = c.ledger.debit(account_id, f"{prefix}-{i}", Money(amount))
        except UsageWatchError as exc:
            out.append((exc.code, None))
        else:
            out.append(("ok", result.available_after_micros))
    return out


def _holds_then_captures(
    c: Container, account_id: str, prefix: str, count: int, hold: int, price: int
) -> list[Any]:
    """Place a hold and capture it at `price` (never above the hold): [(outcome, captured)]."""
    out: list[Any] = []
    for i in range(count):
        reference = f"{prefix}-{i}"
        try:
            placed = c.ledger.place_hold(account_id, reference, Money(hold), ttl_seconds=600)
        except UsageWatchError as exc:
            out.append((exc.code, 0))
            continue
        assert placed.available_after_micros >= 0
        captured = c.ledger.capture_hold(account_id, reference, Money(price))
        assert captured.status == "captured" and captured.available_after_micros >= 0
        out.append(("ok", captured.captured_micros))
    return out


def _same_credit(c: Container, account_id: str, key: str, amount: int) -> dict[str, Any]:
    result = c.ledger.add_credit(account_id, LotKind.PAID, Money(amount), idempotency_key=key)
    return asdict(result)


def _mixed(c: Container, account_ids: list[str], prefix: str, count: int) -> Counter[str]:
    """Credits, debits, holds with captures or releases, round robin over `account_ids`.
    Returns how often each outcome happened; any unexpected error propagates."""
    outcomes: Counter[str] = Counter()
    for i in range(count):
        account_id = account_ids[i % len(account_ids)]
        reference = f"{prefix}-{i}"
        try:
            step = i % 4
            if step == 0:
                c.ledger.add_credit(account_id, LotKind.PAID, Money(units("1.00")))
            elif step == 1:
                c.ledger.debit(account_id, reference, Money(units("0.70")))
            else:
                c.ledger.place_hold(account_id, reference, Money(units("0.50")), ttl_seconds=600)
                if step == 2:
                    c.ledger.capture_hold(account_id, reference, Money(units("0.30")))
                else:
                    c.ledger.release_hold(account_id, reference)
            outcomes["ok"] += 1
        except UsageWatchError as exc:
            if exc.code != "insufficient_balance":
                raise
            outcomes[exc.code] += 1
    return outcomes


# -- PostgreSQL: processes racing on one balance row ------------------------------------------
@postgres
@pytest.mark.postgres_only
def test_processes_debiting_one_account_never_overspend(
    pg_url: str, parent: Callable[[str], Container]
) -> None:
    c = parent(pg_url)
    account = c.accounts.create_account("race")
    c.ledger.add_credit(account.id, LotKind.PAID, Money(units("100.00")))
    half = units("0.50")

    per_worker = run_processes(
        pg_url, [(_debits, (account.id, f"p{w}", 40, half)) for w in range(8)]
    )

    outcomes = [o for worker in per_worker for o in worker]
    codes = Counter(code for code, _ in outcomes)
    assert codes == {"ok": 200, "insufficient_balance": 120}
    # Serialised on the row lock: every success saw the one before it, none was lost.
    afters = sorted(after for code, after in outcomes if code == "ok")
    assert afters == [k * half for k in range(200)]
    view = c.queries.balance(account.id)
    assert view.available_micros == 0 and view.paid_micros == 0
    figures = books(c.db, account.id)
    assert figures["journal_sum"] == figures["paid"] + figures["promotional"] == 0
    assert figures["overdraft"] == 0 and figures["journal_min_available"] >= 0
    assert figures["entries"] == 201 and figures["version"] == 201
    assert verify(c.db) == []


@postgres
@pytest.mark.postgres_only
def test_holds_and_captures_racing_debits_never_overspend(
    pg_url: str, parent: Callable[[str], Container]
) -> None:
    c = parent(pg_url)
    account = c.accounts.create_account("race")
    credited = units("100.00")
    c.ledger.add_credit(account.id, LotKind.PAID, Money(credited))
    half, hold, price = units("0.50"), units("2.00"), units("1.50")

    jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (_holds_then_captures, (account.id, f"h{w}", 15, hold, price)) for w in range(3)
    ]
    jobs += [(_debits, (account.id, f"d{w}", 40, half)) for w in range(5)]
    per_worker = run_processes(pg_url, jobs)

    captures = [o for worker in per_worker[:3] for o in worker]
    debits = [o for worker in per_worker[3:] for o in worker]
    assert {code for code, _ in captures + debits} <= {"ok", "insufficient_balance"}
    captured = sum(amount for code, amount in captures if code == "ok")
    debited = half * sum(1 for code, _ in debits if code == "ok")
    assert all(after >= 0 for code, after in debits if code == "ok")
    assert captured > 0 and debited > 0  # both kinds really ran
    figures = books(c.db, account.id)
    # Demand (3*15*1.50 + 5*40*0.50 = 167.50) exceeds supply: nothing overspent, nothing lost.
    assert figures["available"] >= 0 and figures["overdraft"] == 0
    assert figures["journal_min_available"] >= 0
    assert figures["reserved"] == 0 and figures["open_holds"] == 0
    assert credited == figures["available"] + captured + debited
    assert figures["journal_sum"] == figures["paid"] + figures["promotional"]
    assert verify(c.db) == []


@postgres
@pytest.mark.postgres_only
def test_same_credit_from_many_processes_credits_once(
    pg_url: str, parent: Callable[[str], Container]
) -> None:
    c = parent(pg_url)
    account = c.accounts.create_account("replays")
    amount = units("10.00")

    results = run_processes(
        pg_url, [(_same_credit, (account.id, "topup-2026-0001", amount)) for _ in range(8)]
    )

    assert all(r == results[0] for r in results), results
    assert results[0]["amount_micros"] == amount
    figures = books(c.db, account.id)
    assert figures["paid"] == amount and figures["entries"] == 1
    assert c.queries.balance(account.id).available_micros == amount
    assert [lot.id for _, lot in c.queries.credit_lots(account.id, 10, None)] == [results[0]["id"]]
    assert verify(c.db) == []


# -- SQLite: threads in one process, and processes on one file --------------------------------
def test_sqlite_threads_and_processes_never_see_database_locked(
    sqlite_url: str, parent: Callable[[str], Container]
) -> None:
    c = parent(sqlite_url)
    shared = c.accounts.create_account("shared")
    own = [c.accounts.create_account(f"own-{i}") for i in range(3)]
    for account in [shared, *own]:
        c.ledger.add_credit(account.id, LotKind.PAID, Money(units("20.00")))

    # Two OS processes (own containers) and sixteen threads (the test's container) start
    # together once all eighteen are ready.
    barrier = SPAWN.Barrier(18)
    errors: list[str] = []
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def thread_main(n: int) -> None:
        try:
            barrier.wait(timeout=WORKER_TIMEOUT_SECONDS)
            got = _mixed(c, [shared.id, own[0].id], f"t{n}", 24)
            with lock:
                outcomes.update(got)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=thread_main, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    try:
        per_process = run_processes(
            sqlite_url,
            [(_mixed, ([shared.id, own[1 + w].id], f"p{w}", 60)) for w in range(2)],
            barrier,
        )
    finally:
        for t in threads:
            t.join(timeout=WORKER_TIMEOUT_SECONDS)

    assert not errors, "\n".join(errors)
    for got in per_process:
        outcomes.update(got)
    assert outcomes["ok"] > 0
    assert sum(outcomes.values()) == 16 * 24 + 2 * 60
    for account in [shared, *own]:
        figures = books(c.db, account.id)
        assert figures["overdraft"] == 0 and figures["journal_min_available"] >= 0
        assert figures["reserved"] == 0 and figures["open_holds"] == 0
        assert figures["journal_sum"] == figures["paid"] + figures["promotional"]
    assert verify(c.db) == []

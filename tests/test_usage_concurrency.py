"""Usage under concurrency on PostgreSQL: SMS charges and call authorizations racing on one
balance never overspend it, reserve exactly what the open holds say, and leave books (and
usage rollups) that `verify` agrees with.

Service-level races run in OS processes (spawn, released together by a barrier; the helpers
of tests/test_concurrency.py), each with its own container, as separate server processes
would. The HTTP race runs against a real `usagewatch serve` process on a free loopback port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN, ADMIN_TOKEN, PG_ADMIN_URL
from tests.test_concurrency import books, run_processes, units
from usagewatch.adapters.db import store
from usagewatch.adapters.db.engine import Database, normalize_url
from usagewatch.adapters.db.schema import holds, metadata, usage_records, usage_rollups
from usagewatch.adapters.db.schema import statements as statements_table
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.errors import PaymentRequired, UsageWatchError
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.verify import verify

pytestmark = [
    pytest.mark.skipif(
        not PG_ADMIN_URL, reason="set USAGEWATCH_TEST_POSTGRES_URL to run the PostgreSQL tests"
    ),
    pytest.mark.postgres_only,
]

SMS_PRICE = Money.parse("0.20")
PROCESSES = 8
SERVER_START_SECONDS = 30


# -- fixtures ---------------------------------------------------------------------------------
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
def parent(pg_url: str) -> Iterator[Container]:
    """A container in the test process (real clock, like the workers and the server)."""
    c = build(Settings(database_url=pg_url), ADMIN_TOKEN)
    yield c
    c.close()


def sms_account(c: Container, account_id: str) -> str:
    """Exactly 1.00 available; a transactional SMS unit costs 0.20."""
    c.accounts.create_account(account_id, account_id)
    c.ledger.add_credit(account_id, LotKind.PAID, Money.parse("1.00"))
    c.rates.replace_overrides(account_id, {"sms": {"transactional": SMS_PRICE}})
    return account_id


def usage_figures(db: Database, account_id: str, service: str) -> tuple[int, list[Any]]:
    """(usage records, rollup rows) of one service."""
    with db.read() as conn:
        records = conn.execute(
            sa.select(sa.func.count()).where(
                usage_records.c.account_id == account_id, usage_records.c.service == service
            )
        ).scalar_one()
        rollups = conn.execute(
            sa.select(usage_rollups).where(
                usage_rollups.c.account_id == account_id, usage_rollups.c.service == service
            )
        ).all()
    return int(records), list(rollups)


def assert_five_sms_charged(c: Container, account_id: str) -> None:
    view = c.queries.balance(account_id)
    assert (view.available_micros, view.paid_micros, view.reserved_micros) == (0, 0, 0)
    figures = books(c.db, account_id)
    assert figures["overdraft"] == 0 and figures["journal_min_available"] >= 0
    assert figures["journal_sum"] == 0 and figures["entries"] == 1 + 5
    records, rollups = usage_figures(c.db, account_id, "sms")
    assert records == 5
    assert [(r.records, r.quantity, r.cost_micros) for r in rollups] == [(5, 5, units("1.00"))]
    assert verify(c.db) == []


# -- what the workers run (module level, so "spawn" can import them) --------------------------
def _charge_sms(c: Container, account_id: str, prefix: str, count: int) -> list[Any]:
    """[("ok", price) or (error code, error class name)] for each SMS."""
    out: list[Any] = []
    for i in range(count):
        try:
            sent = c.usage.charge_sms(
                account_id, f"{prefix}-{i}", "transactional", to="+919800000001", units=1
            )
        except UsageWatchError as exc:
            out.append((exc.code, type(exc).__name__))
        else:
            out.append(("ok", sent.price_micros))
    return out


def _charge_same_sms(c: Container, account_id: str, sms_type: str, sids: list[str]) -> list[Any]:
    """Charge each SMS id (every worker the same ids): [(sms_sid, price)]."""
    out = []
    for sid in sids:
        sent = c.usage.charge_sms(account_id, sid, sms_type, to="+919800000001", units=1)
        out.append((sid, sent.price_micros))
    return out


def _authorize_calls(c: Container, account_id: str, prefix: str, count: int) -> list[Any]:
    """[(call_sid, "ok", reserved, max seconds, available after) or (sid, code, ...)]."""
    out: list[Any] = []
    for i in range(count):
        sid = f"{prefix}-{i}"
        try:
            call = c.calls.authorize(account_id, sid, "outbound", to="+919800000002")
        except UsageWatchError as exc:
            out.append((sid, exc.code, 0, 0, None))
        else:
            available = c.queries.balance(account_id).available_micros
            out.append((sid, "ok", call.reserved_micros, call.max_duration_seconds, available))
    return out


def _end_calls(c: Container, account_id: str, ends: list[tuple[str, str, int]]) -> list[Any]:
    """End each (call_sid, status, duration) twice (the second is a replay): [price]."""
    out: list[Any] = []
    for sid, status, duration in ends:
        first = c.calls.end(account_id, sid, status, duration)
        again = c.calls.end(account_id, sid, status, duration)
        assert again == first
        out.append(first.price_micros)
    return out


# -- SMS: 40 at 0.20 against 1.00 ---------------------------------------------------------------
def test_forty_sms_from_eight_processes_charge_exactly_five(pg_url: str, parent: Container) -> None:
    account = sms_account(parent, "sms-race")

    per_worker = run_processes(
        pg_url, [(_charge_sms, (account, f"SM{w}", 5)) for w in range(PROCESSES)]
    )

    outcomes = [o for worker in per_worker for o in worker]
    assert len(outcomes) == 40
    assert Counter(code for code, _ in outcomes) == {"ok": 5, "insufficient_balance": 35}
    assert {kind for code, kind in outcomes if code != "ok"} == {PaymentRequired.__name__}
    assert [price for code, price in outcomes if code == "ok"] == [SMS_PRICE.micros] * 5
    assert_five_sms_charged(parent, account)


# -- threads of one process: they queue before their transaction, not on the row lock -------
def test_threads_of_one_process_charging_one_account_never_wait_for_its_row_lock(
    parent: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement that waited for the balance row lock reads the book again (`load_book`);
    commands of one process on one account queue in the process first, so none does, and
    every SMS is charged exactly once."""
    account = "threads"
    parent.accounts.create_account(account, account)
    parent.ledger.add_credit(account, LotKind.PAID, Money.parse("100.00"))
    parent.rates.replace_overrides(account, {"sms": {"transactional": SMS_PRICE}})
    rereads: list[str] = []
    load_book = store.load_book

    def counted(conn: Any, account_id: str, key: str | None) -> Any:
        rereads.append(account_id)
        return load_book(conn, account_id, key)

    monkeypatch.setattr(store, "load_book", counted)
    threads, per_thread = 8, 15
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def charge(t: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                parent.usage.charge_sms(
                    account, f"T{t}-{i}", "transactional", to="+919800000001", units=1
                )
        except BaseException as exc:  # reported below
            failures.append(exc)

    workers = [threading.Thread(target=charge, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    assert failures == []
    assert rereads == []
    charged = threads * per_thread * SMS_PRICE.micros
    balance = parent.queries.balance(account)
    assert balance.available_micros == Money.parse("100.00").micros - charged
    records, _rollups = usage_figures(parent.db, account, "sms")
    assert records == threads * per_thread
    assert verify(parent.db, account) == []


# -- the same SMS ids from eight processes at once: each charged (and recorded) once --------
@pytest.mark.parametrize("sms_type, price", [("transactional", "0.20"), ("service", "0.00")])
def test_the_same_sms_from_eight_processes_is_charged_once(
    pg_url: str, parent: Container, sms_type: str, price: str
) -> None:
    # A free SMS writes no journal entry: its duplicates are told apart by the usage
    # record's unique index, not by the balance row's version (store.lock_and_load).
    account = parent.accounts.create_account("sms-dupes", "sms-dupes").id
    parent.ledger.add_credit(account, LotKind.PAID, Money.parse("2.00"))
    parent.rates.replace_overrides(account, {"sms": {sms_type: Money.parse(price)}})
    sids = [f"SAME-{i}" for i in range(5)]

    per_worker = run_processes(
        pg_url, [(_charge_same_sms, (account, sms_type, sids)) for _ in range(PROCESSES)]
    )

    expected = [(sid, Money.parse(price).micros) for sid in sids]
    assert per_worker == [expected] * PROCESSES
    records, rollups = usage_figures(parent.db, account, "sms")
    assert records == 5
    assert [(r.records, r.cost_micros) for r in rollups] == [(5, 5 * Money.parse(price).micros)]
    charged = 5 * Money.parse(price).micros
    assert parent.queries.balance(account).available_micros == units("2.00") - charged
    assert books(parent.db, account)["entries"] == 1 + (5 if charged else 0)
    assert verify(parent.db) == []


# -- the same race over HTTP against a real server process -----------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(pg_url: str, tmp_path: Path) -> Iterator[str]:
    """`python -m usagewatch serve` on a free loopback port against the test database.
    Yields the base URL; the server's output is shown if it fails to start."""
    port = _free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "USAGEWATCH_ADMIN_TOKEN": ADMIN_TOKEN,
        "USAGEWATCH_LOG_LEVEL": "warning",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "usagewatch",
                "serve",
                "--port",
                str(port),
                "--database-url",
                pg_url,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            assert proc.poll() is None, f"server exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"server did not start:\n{log_path.read_text()}"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_forty_sms_over_http_to_a_server_process_charge_exactly_five(
    served: str, parent: Container
) -> None:
    with httpx.Client(base_url=served, headers=ADMIN, timeout=30) as admin:
        made = admin.post("/v1/accounts", json={"id": "sms-http", "name": "SMS over HTTP"})
        assert made.status_code == 201, made.text
        credited = admin.post(
            "/v1/accounts/sms-http/credits",
            json={"type": "paid", "amount": "1.00"},
            headers={"Idempotency-Key": "sms-http-1"},
        )
        assert credited.status_code == 201, credited.text
        rates = admin.put("/v1/accounts/sms-http/rates", json={"sms": {"transactional": "0.20"}})
        assert rates.status_code == 200 and rates.json()["sms"]["transactional"] == "0.20"
        key = admin.post("/v1/accounts/sms-http/api-keys", json={"role": "platform"})
        assert key.status_code == 201, key.text
    platform = {"Authorization": f"Bearer {key.json()['token']}"}

    barrier = threading.Barrier(40)
    responses: list[httpx.Response | None] = [None] * 40
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            with httpx.Client(base_url=served, headers=platform, timeout=60) as client:
                client.get("/healthz")  # connect first, so the 40 POSTs really overlap
                barrier.wait(timeout=60)
                body = {"sms_sid": f"H{n}", "type": "transactional", "to": "+919800000001"}
                responses[n] = client.post("/v1/accounts/sms-http/sms", json={**body, "units": 1})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    got = [r for r in responses if r is not None]
    assert Counter(r.status_code for r in got) == {201: 5, 402: 35}
    assert {r.json()["price"] for r in got if r.status_code == 201} == {"0.20"}
    assert {r.json()["error"]["code"] for r in got if r.status_code == 402} == {
        "insufficient_balance"
    }
    assert_five_sms_charged(parent, "sms-http")


# -- calls: first-window holds racing for a balance that covers exactly N ---------------------
def test_call_authorizations_from_eight_processes_hold_exactly_what_is_available(
    pg_url: str, parent: Container
) -> None:
    # Built-in defaults: 0.60 per 60 s outbound pulse, a 300 s first window = a 3.00 hold.
    window_hold = units("3.00")
    covered = 10  # the balance covers exactly ten first windows; 24 calls try
    account = parent.accounts.create_account("call-race", "call-race").id
    parent.ledger.add_credit(account, LotKind.PAID, Money(covered * window_hold))

    per_worker = run_processes(
        pg_url, [(_authorize_calls, (account, f"CA{w}", 3)) for w in range(PROCESSES)]
    )

    outcomes = [o for worker in per_worker for o in worker]
    assert len(outcomes) == PROCESSES * 3
    assert Counter(code for _, code, *_ in outcomes) == {
        "ok": covered,
        "insufficient_balance": PROCESSES * 3 - covered,
    }
    granted = [o for o in outcomes if o[1] == "ok"]
    assert all(reserved == window_hold for _, _, reserved, _, _ in granted)
    assert all(seconds >= 300 for _, _, _, seconds, _ in granted)
    assert all(after is not None and after >= 0 for *_, after in granted)
    # Each grant's max duration was computed from what was left when it held: exactly one
    # call saw each of 30.00, 27.00, ..., 3.00 (50, 45, ..., 5 minutes).
    assert sorted(seconds for _, _, _, seconds, _ in granted) == [
        300 * k for k in range(1, covered + 1)
    ]
    figures = books(parent.db, account)
    assert figures["available"] == 0 and figures["journal_min_available"] >= 0
    assert figures["overdraft"] == 0
    assert figures["open_holds"] == covered
    with parent.db.read() as conn:
        held = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(holds.c.amount_micros), 0)).where(
                holds.c.account_id == account, holds.c.status == "open"
            )
        ).scalar_one()
    assert figures["reserved"] == held == covered * window_hold
    assert parent.queries.balance(account).reserved_micros == held

    # End every granted call from eight processes at once (and replay each end): completed
    # calls are priced in whole pulses from their hold, the others release it whole.
    statuses = ["completed", "busy", "no-answer", "failed", "canceled"]
    ends: dict[int, list[tuple[str, str, int]]] = {w: [] for w in range(PROCESSES)}
    for n, (sid, *_rest) in enumerate(granted):
        worker = int(sid[2:].split("-")[0])
        status = statuses[n % len(statuses)]
        ends[worker].append((sid, status, 61 + 17 * n if status == "completed" else 0))
    prices = run_processes(pg_url, [(_end_calls, (account, ends[w])) for w in range(PROCESSES)])

    expected = {
        sid: (units("0.60") * -(-duration // 60) if status == "completed" else 0)
        for w in range(PROCESSES)
        for sid, status, duration in ends[w]
    }
    charged = [p for worker in prices for p in worker]
    assert sorted(charged) == sorted(expected.values())
    figures = books(parent.db, account)
    assert figures["reserved"] == 0 and figures["open_holds"] == 0
    assert figures["available"] == covered * window_hold - sum(charged)
    assert figures["journal_min_available"] >= 0 and figures["overdraft"] == 0
    records, rollups = usage_figures(parent.db, account, "voice")
    assert records == covered
    assert sum(r.records for r in rollups) == covered
    assert sum(r.cost_micros for r in rollups) == sum(charged)
    assert verify(parent.db) == []


# -- statements: late usage racing the statement that states its month ----------------------
def test_late_usage_racing_the_month_statement_always_ends_on_a_statement(pg_url: str) -> None:
    """Batches report November usage while November's statement is being made (and
    revised) in another thread: whatever interleaving the locks allow, once the job has
    caught up the latest revision states exactly what the records hold."""
    clock = ManualClock(datetime(2026, 11, 20, 6, 0, tzinfo=UTC))
    c = build(Settings(database_url=pg_url), ADMIN_TOKEN, clock=clock)
    try:
        c.accounts.create_account("Late", "late")
        c.ledger.add_credit("late", LotKind.PAID, Money.parse("100.00"))

        def late_sms(sid: str) -> dict[str, Any]:
            return {
                "kind": "sms",
                "sms_sid": sid,
                "type": "transactional",
                "to": "+919800000001",
                "units": 1,
                "occurred_at": "2026-11-20T06:00:00Z",
            }

        assert c.batch.ingest("late", [late_sms("N0")])[0].status == "applied"
        c.statements.run_due()  # schedules the account: November is due on 1 December
        clock.set(datetime(2026, 11, 30, 20, 30, tzinfo=UTC))  # 02:00 on 1 December, IST

        render = c.statements.exports.csv

        last_call = threading.Event()  # the last batch waits for a render to be under way
        rendering = threading.Event()

        def slow_csv(*args: Any, **kwargs: Any) -> Any:
            rows = list(render(*args, **kwargs))
            if last_call.is_set():
                rendering.set()
                time.sleep(0.3)  # the last batch commits now, between read and commit
            else:
                time.sleep(0.02)  # a wider window between reading the records and committing
            return iter(rows)

        c.statements.exports.csv = slow_csv  # type: ignore[method-assign]
        done = threading.Event()
        errors: list[BaseException] = []

        def statement_job() -> None:
            try:
                while not done.is_set():
                    c.statements.run_due()
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        job = threading.Thread(target=statement_job)
        job.start()
        for i in range(1, 24):
            assert c.batch.ingest("late", [late_sms(f"N{i}")])[0].status == "applied"
            time.sleep(0.005 * (i % 4))
        last_call.set()
        assert c.batch.ingest("late", [late_sms("N24")])[0].status == "applied"  # owes one
        assert rendering.wait(10)
        assert c.batch.ingest("late", [late_sms("N25")])[0].status == "applied"  # in the window
        done.set()
        job.join()
        assert not errors, errors
        while c.statements.next_due_at() == clock.now():  # catch up what is still owed
            c.statements.run_due()

        [latest] = c.statements.list("late", 10, None)
        assert (latest.month, latest.records, latest.total_micros) == ("2026-11", 26, 5_200_000)
        with c.db.read() as conn:
            revisions = (
                conn.execute(
                    sa.select(statements_table.c.revision)
                    .where(statements_table.c.account_id == "late")
                    .order_by(statements_table.c.revision)
                )
                .scalars()
                .all()
            )
        assert revisions == list(range(1, len(revisions) + 1))
        assert latest.revision == revisions[-1]
    finally:
        c.close()

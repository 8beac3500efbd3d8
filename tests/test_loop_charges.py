"""Charges run from the event loop (LedgerService.run_charge_async): on PostgreSQL, an SMS or
WhatsApp charge from the remembered state sends its one statement on the loop's own
connection, with no worker thread; everything else goes the usual way in a thread, and
nothing is ever charged twice or lost on the way."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN_TOKEN
from tests.test_unlocked_charges import TO, available, funded, is_pg, sms
from usagewatch.adapters.db import prepared
from usagewatch.adapters.db.on_loop import LoopConnections
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.errors import Conflict, PaymentRequired
from usagewatch.service.ledger import Command
from usagewatch.service.usage import SmsResult
from usagewatch.service.verify import verify

T = TypeVar("T")


@pytest.fixture
def other(database_url: str, clock: ManualClock) -> Iterator[Container]:
    """A second container on the same database: another server process."""
    c = build(Settings(database_url=database_url, test_clock=True), ADMIN_TOKEN, clock=clock)
    yield c
    c.close()


class Offload:
    """The worker-thread hand-off, counted (the API passes api.lean.in_thread)."""

    def __init__(self) -> None:
        self.calls = 0
        self.pool = ThreadPoolExecutor(8)

    async def __call__(self, fn: Callable[[], T]) -> T:
        self.calls += 1
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)


def charge(c: Container, sid: str, offload: Offload, units: int = 1) -> Awaitable[SmsResult]:
    planned = c.usage.sms_charge("acc", sid, "transactional", to=TO, units=units)
    return c.ledger.run_charge_async(planned, offload)


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def sent_on_loop(c: Container) -> list[str]:
    """Records what LoopConnections.first sends (a spy around it)."""
    loops = c.db.loop_connections
    assert loops is not None
    seen: list[str] = []
    first = loops.first

    async def spy(taken: Any, sql: str, args: Any) -> Any:
        seen.append(sql.split()[0])
        return await first(taken, sql, args)

    loops.first = spy  # type: ignore[method-assign]
    return seen


def test_a_charge_from_the_loop_sends_one_statement_and_takes_no_thread(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    funded(container)
    sms(container, "S1")  # reads the rate card into the cache: this process knows the state
    announced: list[str] = []
    monkeypatch.setattr(container.ledger, "_on_balance_change", announced.append)
    offload = Offload()
    statements: list[str] = []
    execute = prepared._execute

    def spy(conn: Any, sql: str, args: Any, many: bool = False) -> Any:
        statements.append(sql.split()[0])
        return execute(conn, sql, args, many)

    monkeypatch.setattr(prepared, "_execute", spy)
    result = run(charge(container, "S2", offload))
    monkeypatch.setattr(prepared, "_execute", execute)
    assert result.price_micros == 200_000 and result.sms_sid == "S2"
    if is_pg(container):
        assert offload.calls == 0 and statements == []  # nothing through a thread's connection
        assert container.ledger.loop_commits == 1
        assert announced == ["acc"]  # the in-process balance feed hears of it after commit
    else:  # SQLite is in the process: its charges always take a thread
        assert offload.calls == 1 and container.ledger.loop_commits == 0
    assert available(container) == 600_000
    assert verify(container.db) == []


def test_charges_of_one_account_wait_on_the_loop_for_each_other(container: Container) -> None:
    """Four at once on one account: each waits on the loop for the one before it, and none
    takes a worker thread. (Enough money that none crosses zero: that one's notice is a
    write, which takes the thread.)"""
    funded(container, "10.00")
    sms(container, "S1")
    offload = Offload()

    async def four() -> list[SmsResult]:
        return list(await asyncio.gather(*(charge(container, f"L{n}", offload) for n in range(4))))

    assert [r.price_micros for r in asyncio.run(four())] == [200_000] * 4
    if is_pg(container):
        assert offload.calls == 0 and container.ledger.loop_commits == 4
    else:
        assert offload.calls == 4
    assert available(container) == 9_000_000
    assert verify(container.db) == []


def test_a_state_moved_by_another_process_falls_back_and_charges_once(
    container: Container, other: Container
) -> None:
    funded(container)
    sms(container, "S1")  # 0.80, remembered here
    sms(other, "O1")  # 0.60: the remembered state is stale
    offload = Offload()
    assert run(charge(container, "S2", offload)).price_micros == 200_000
    assert offload.calls == 1  # refused by the version check, then the usual way
    assert available(container) == 400_000
    if is_pg(container):
        assert container.ledger.unlocked_runs["rolled_back"] >= 1
        assert container.ledger.loop_commits == 0
    assert verify(container.db) == []


def test_a_replay_from_the_loop_answers_the_first_result(container: Container) -> None:
    funded(container)
    sms(container, "S1")
    offload = Offload()
    first = run(charge(container, "S2", offload))
    again = run(charge(container, "S2", offload))  # the unique index refuses it on the loop
    assert again == first
    with pytest.raises(Conflict) as reused:
        run(charge(container, "S2", offload, units=2))
    assert reused.value.code == "idempotency_key_reused"
    assert available(container) == 600_000
    assert verify(container.db) == []


def test_a_body_that_needs_the_database_runs_in_a_thread_with_nothing_sent_first(
    container: Container,
) -> None:
    funded(container)
    sms(container, "S1")
    reads: list[int] = []

    def reading(cmd: Command) -> None:  # a trigger that reads (as an alert's notice writes)
        reads.append(cmd.conn.execute(sa.text("SELECT 1")).scalar_one())

    container.ledger.add_trigger(reading)
    sent = sent_on_loop(container) if is_pg(container) else []
    offload = Offload()
    assert run(charge(container, "S2", offload)).price_micros == 200_000
    container.ledger._triggers.remove(reading)
    assert offload.calls == 1 and sent == []  # it stopped before sending anything
    assert reads == [1]  # once, in the thread: on the loop it raised before reading
    assert available(container) == 600_000
    assert verify(container.db) == []


def test_a_refusal_is_decided_the_usual_way(container: Container) -> None:
    funded(container, "0.30")
    sms(container, "S1")
    offload = Offload()
    with pytest.raises(PaymentRequired) as refused:
        run(charge(container, "S2", offload))
    assert refused.value.code == "insufficient_balance"
    assert offload.calls == 1
    assert available(container) == 100_000
    assert verify(container.db) == []


@pytest.mark.parametrize("sent", [False, True], ids=["before-it-ran", "after-it-ran"])
def test_a_charge_cancelled_while_sending_frees_its_account(
    container: Container, sent: bool
) -> None:
    funded(container)
    sms(container, "S1")
    loops = container.db.loop_connections
    if loops is None:  # SQLite: no charge runs on the loop, so none is cancelled there
        assert container.db.is_sqlite
        return
    first = loops.first
    started = threading.Event()

    async def slow(taken: Any, sql: str, args: Any) -> Any:
        row = await first(taken, sql, args) if sent else None
        started.set()
        await asyncio.sleep(0.2)  # cancelled here, before or after the statement ran
        return row if sent else await first(taken, sql, args)

    loops.first = slow  # type: ignore[method-assign]

    async def cancelled() -> None:
        task = asyncio.ensure_future(charge(container, "S2", Offload()))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    loops.first = first  # type: ignore[method-assign]
    sms(container, "S3")  # the account's queue is free again, and its state was forgotten
    assert available(container) == (400_000 if sent else 600_000)
    assert sms(container, "S2") == 200_000  # the caller's retry: charged once in all
    assert available(container) == 400_000
    assert verify(container.db) == []


def test_with_the_loops_connections_all_taken_a_charge_takes_a_thread(
    container: Container,
) -> None:
    funded(container)
    sms(container, "S1")
    if is_pg(container):
        container.db.loop_connections = LoopConnections("postgresql://unused", size=0)
    offload = Offload()
    assert run(charge(container, "S2", offload)).price_micros == 200_000
    assert offload.calls == 1 and container.ledger.loop_commits == 0
    assert available(container) == 600_000


def test_forty_at_once_from_the_loop_and_threads_charge_exactly_five(
    container: Container, other: Container
) -> None:
    """40 simultaneous 0.20 SMS against 1.00, mixing the loop and the worker threads (and a
    second process's charge first, so the first ones find the state stale)."""
    funded(container)
    sms(container, "S0")
    sms(other, "O0")  # 0.60 left
    offload = Offload()

    async def one(n: int) -> str:
        try:
            await charge(container, f"H{n}", offload)
            return "ok"
        except PaymentRequired as exc:
            return exc.code

    async def everyone() -> list[str]:
        return list(await asyncio.gather(*(one(n) for n in range(40))))

    assert Counter(asyncio.run(everyone())) == {"ok": 3, "insufficient_balance": 37}
    assert available(container) == 0
    assert verify(container.db) == []


def test_closing_the_database_closes_the_loops_connections(container: Container) -> None:
    funded(container)
    sms(container, "S1")
    run(charge(container, "S2", Offload()))
    loops = container.db.loop_connections
    if loops is None:  # SQLite: nothing to close
        assert container.db.is_sqlite
        return
    assert len(loops._open) == 1
    conns = list(loops._open)
    container.db.dispose()
    assert all(conn.closed for conn in conns) and not loops._open

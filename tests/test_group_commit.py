"""Group commit: commands of one process queued on one account run in one transaction.

`LedgerService._run`: the thread whose turn it is runs every command then queued for its
account, one after the other, and commits them together; if one fails, the transaction
rolls back and each runs again alone. These tests hold a turn open with a blocking command,
queue commands behind it, and then let them go, so the group really forms (checked), on
both engines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db import store
from usagewatch.adapters.db.engine import Database, after_commit
from usagewatch.adapters.db.schema import journal_entries
from usagewatch.bootstrap import Container
from usagewatch.domain.errors import UsageWatchError
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.ledger import LedgerService, _Queued
from usagewatch.service.verify import verify

PRICE = Money.parse("0.20")


class Queued:
    """Commands started in threads behind a command that holds the account's turn."""

    def __init__(self, c: Container, account: str) -> None:
        self.c = c
        self.account = account
        self.entered = threading.Event()
        self.release = threading.Event()
        self.outcomes: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

        def hold(_cmd: Any) -> None:
            self.entered.set()
            assert self.release.wait(30)

        self._start("holder", lambda: c.ledger.run_command(account, None, None, type(None), hold))
        assert self.entered.wait(30)

    def _start(self, name: str, call: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                self.outcomes[name] = call()
            except Exception as exc:  # the outcome under test
                self.outcomes[name] = exc

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def debit(self, reference: str, name: str | None = None) -> None:
        """Queue a 0.20 debit and wait until it waits in the account's queue."""
        before = self.waiting()
        self._start(name or reference, lambda: self.c.ledger.debit(self.account, reference, PRICE))
        deadline = time.monotonic() + 30
        while self.waiting() < before + 1:
            assert time.monotonic() < deadline, "the command never queued"
            time.sleep(0.005)

    def waiting(self) -> int:
        stripes = self.c.ledger._stripes
        return sum(1 for s in stripes for q in list(s.queue) if q.account_id == self.account)

    def finish(self) -> dict[str, Any]:
        self.release.set()
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive()
        return self.outcomes


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every command group the ledger runs."""
    sizes: list[int] = []
    run_group = LedgerService._run_group

    def counted(self: LedgerService, group: list[_Queued]) -> None:
        sizes.append(len(group))
        run_group(self, group)

    monkeypatch.setattr(LedgerService, "_run_group", counted)
    return sizes


def funded(c: Container, account: str, amount: str) -> str:
    c.accounts.create_account(account, account)
    c.ledger.add_credit(account, LotKind.PAID, Money.parse(amount))
    return account


def debit_entries(c: Container, account: str) -> list[str]:
    with c.db.read() as conn:
        rows = conn.execute(
            sa.select(journal_entries.c.reference).where(
                journal_entries.c.account_id == account, journal_entries.c.kind == "debit"
            )
        )
        return sorted(r[0] for r in rows)


def test_queued_commands_commit_together_and_each_sees_the_one_before(
    container: Container, groups: list[int]
) -> None:
    account = funded(container, "group-ok", "2.00")
    queued = Queued(container, account)
    for n in range(6):
        queued.debit(f"d{n}")
    outcomes = queued.finish()

    assert groups[-2:] == [1, 6]  # the holder alone, then the six together
    afters = sorted(outcomes[f"d{n}"].available_after_micros for n in range(6))
    # one after the other: each saw the debits run before it in the same transaction
    assert afters == [
        Money.parse(a).micros for a in ("0.80", "1.00", "1.20", "1.40", "1.60", "1.80")
    ]
    assert container.queries.balance(account).available_micros == Money.parse("0.80").micros
    assert debit_entries(container, account) == [f"d{n}" for n in range(6)]
    assert verify(container.db, account) == []


def test_one_refused_command_rolls_the_group_back_and_the_rest_run_alone(
    container: Container, groups: list[int]
) -> None:
    """Six 0.20 debits against 1.00 in one group: the sixth is refused, so the group's
    transaction rolls back and each runs again in its own: exactly five are charged."""
    account = funded(container, "group-refused", "1.00")
    queued = Queued(container, account)
    for n in range(6):
        queued.debit(f"d{n}")
    outcomes = queued.finish()

    assert 6 in groups
    results = [outcomes[f"d{n}"] for n in range(6)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1
    assert isinstance(refused[0], UsageWatchError)
    assert refused[0].code == "insufficient_balance"
    assert results[5] is refused[0]  # the queue's order is kept when they run alone
    assert container.queries.balance(account).available_micros == 0
    assert debit_entries(container, account) == [f"d{n}" for n in range(5)]
    assert verify(container.db, account) == []


def test_a_repeated_key_in_one_group_is_answered_from_the_first(
    container: Container, groups: list[int]
) -> None:
    account = funded(container, "group-replay", "1.00")
    queued = Queued(container, account)
    queued.debit("same")
    queued.debit("other")
    queued.debit("same", name="same again")
    outcomes = queued.finish()
    assert outcomes["same again"] == outcomes["same"]  # the replay answers with the first

    assert 3 in groups
    assert container.queries.balance(account).available_micros == Money.parse("0.60").micros
    assert debit_entries(container, account) == ["other", "same"]
    assert verify(container.db, account) == []


class FailingCommit:
    """A Database whose next write transaction (once armed) fails at its commit."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        fail, self.armed = self.armed, False
        with self.db.write() as conn:
            yield conn
            if fail:  # raised inside the transaction: it rolls back, as a failed commit does
                raise sa.exc.OperationalError("COMMIT", {}, Exception("connection lost"))


def test_a_failed_group_commit_reaches_every_command_and_none_runs_again(
    container: Container, groups: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed commit nobody knows whether it took (the server may have committed
    before the connection dropped): each command gets the error, none is run again."""
    account = funded(container, "group-commit-fails", "1.00")
    failing = FailingCommit(container.ledger.db)
    monkeypatch.setattr(container.ledger, "db", failing)
    loads: list[str] = []
    lock_and_load = store.lock_and_load

    def counted(conn: Connection, account_id: str, *args: Any) -> Any:
        loads.append(account_id)
        return lock_and_load(conn, account_id, *args)

    monkeypatch.setattr(store, "lock_and_load", counted)
    queued = Queued(container, account)
    for n in range(3):
        queued.debit(f"d{n}")
    failing.armed = True  # the holder's transaction began before: the group's is next
    outcomes = queued.finish()

    assert 3 in groups
    errors = [outcomes[f"d{n}"] for n in range(3)]
    assert all(isinstance(e, sa.exc.OperationalError) for e in errors)
    assert loads.count(account) == 1 + 3  # the holder, then each of the group once
    assert container.queries.balance(account).available_micros == Money.parse("1.00").micros
    assert debit_entries(container, account) == []


def test_a_failing_after_commit_callback_is_logged_and_the_rest_still_run(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("listener gone")

    with caplog.at_level(logging.ERROR), db.write() as conn:
        after_commit(conn, boom)
        after_commit(conn, lambda: ran.append("second"))
    assert ran == ["second"]
    assert "a callback after commit failed" in caplog.text

"""The server sweeps time-driven work in two lanes: a slow job (a big account's monthly
statement takes seconds to render) never holds up the quick ones (hold expiries, notice
deliveries, alert repeats). By default the slow lane runs in a child worker process, so
that rendering does not hold the server's interpreter lock against charges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import ADMIN_TOKEN, START
from usagewatch.adapters.db.schema import statement_schedule, statements
from usagewatch.api.app import _sweeper, create_app
from usagewatch.bootstrap import Container, build
from usagewatch.cli import app as cli
from usagewatch.config import Settings
from usagewatch.domain.clock import ManualClock, to_micros
from usagewatch.service.scheduler import Scheduler
from usagewatch.service.statements import StatementService


class Quick:
    def __init__(self) -> None:
        self.runs = 0

    def run_due(self) -> int:
        self.runs += 1
        return 0

    def next_due_at(self) -> datetime | None:
        return None


class Slow(Quick):
    slow = True

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def run_due(self) -> int:
        self.runs += 1
        self.release.wait(5)  # rendering something huge
        return 0


def test_statements_run_in_the_slow_lane(container: Container) -> None:
    quick, slow = container.scheduler.lanes()
    assert [type(job) for job in slow] == [StatementService]
    assert container.ledger in quick and container.notifications in quick


def test_a_slow_job_does_not_hold_up_the_quick_ones() -> None:
    quick, slow = Quick(), Slow()
    clock = ManualClock(START)
    c: Any = SimpleNamespace(
        scheduler=Scheduler([quick, slow], clock, None),
        settings=SimpleNamespace(sweep_interval_seconds=0.01),
    )

    async def run() -> None:
        task = asyncio.create_task(_sweeper(c, [[quick], [slow]]))
        try:
            deadline = time.monotonic() + 5
            while quick.runs < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            slow.release.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(run())
    assert slow.runs == 1  # still busy with its first run ...
    assert quick.runs >= 20  # ... while the quick lane went round and round


# -- the slow lane in a child process ---------------------------------------------------------
def _statement_due_now(c: Container) -> None:
    """An account whose statement (of this month, so far) is due: what a server that was
    down over a month start finds."""
    c.accounts.create_account("Lane", account_id="lane")
    c.statements.run_due()  # schedules the new account: due at the next month start
    with c.db.write() as conn:
        conn.execute(
            statement_schedule.update().values(next_due_at_us=to_micros(c.clock.now()) - 1)
        )


def _statement_months(c: Container) -> list[str]:
    with c.db.read() as conn:
        return list(conn.execute(sa.select(statements.c.month)).scalars())


def test_the_server_renders_statements_in_a_child_worker_process(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = build(Settings(database_url=database_url, sweep_interval_seconds=0.1), ADMIN_TOKEN)
    try:
        _statement_due_now(c)

        def not_here() -> int:
            raise AssertionError("the server process rendered a statement")

        monkeypatch.setattr(c.statements, "run_due", not_here)
        application = create_app(c)
        with TestClient(application):
            worker = application.state.slow_worker.process
            assert worker.pid != os.getpid() and worker.poll() is None
            deadline = time.monotonic() + 60
            while not _statement_months(c) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(_statement_months(c)) == 1
        assert worker.poll() is not None  # stopped with the server
    finally:
        c.close()


def test_a_statements_worker_that_exits_is_started_again(database_url: str) -> None:
    c = build(Settings(database_url=database_url), ADMIN_TOKEN)
    try:
        application = create_app(c)
        with TestClient(application):
            lane = application.state.slow_worker
            lane.RESTART_SECONDS = 0.05
            first = lane.process
            first.kill()
            first.wait()
            deadline = time.monotonic() + 10
            while lane.process is first and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lane.process is not first and lane.process.poll() is None
    finally:
        c.close()


@pytest.mark.parametrize("mode", ["thread", "off"])
def test_the_slow_lane_can_run_in_the_server_or_nowhere(
    mode: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/lane.db"
    c = build(Settings(database_url=url, sweep_interval_seconds=0.05, slow_lane=mode), ADMIN_TOKEN)
    try:
        _statement_due_now(c)
        application = create_app(c)
        with TestClient(application):
            assert application.state.slow_worker is None
            time.sleep(1.0)
        assert len(_statement_months(c)) == (1 if mode == "thread" else 0)
    finally:
        c.close()


def test_under_the_test_clock_the_slow_lane_stays_in_the_server(container: Container) -> None:
    application = create_app(container)  # the fixture's container has the test clock on
    with TestClient(application):
        assert application.state.slow_worker is None


def test_worker_lanes_from_the_command_line(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/lane.db"
    c = build(Settings(database_url=url), ADMIN_TOKEN)
    try:
        _statement_due_now(c)
        quick = CliRunner().invoke(
            cli, ["worker", "--once", "--lane", "quick", "--database-url", url]
        )
        assert quick.exit_code == 0, quick.output
        assert _statement_months(c) == []
        slow = CliRunner().invoke(
            cli, ["worker", "--once", "--lane", "slow", "--database-url", url]
        )
        assert slow.exit_code == 0, slow.output
        assert len(_statement_months(c)) == 1
        bad = CliRunner().invoke(cli, ["worker", "--once", "--lane", "fast", "--database-url", url])
        assert bad.exit_code == 2 and "--lane" in bad.output
    finally:
        c.close()

"""The server sweeps time-driven work in two lanes: a slow job (a big account's monthly
statement takes seconds to render) never holds up the quick ones (hold expiries, notice
deliveries, alert repeats)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from tests.conftest import START
from usagewatch.api.app import _sweeper
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock
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
        task = asyncio.create_task(_sweeper(c))
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

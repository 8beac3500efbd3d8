"""Time-driven work: one entry point for the background sweeper and for the test clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from usagewatch.domain.clock import Clock, ManualClock


class Job(Protocol):
    """A kind of time-driven work: run what is due now; say when more falls due."""

    def run_due(self) -> int: ...

    def next_due_at(self) -> datetime | None: ...


# Set by `serve` for the worker it starts: that worker's parent pid, so it exits with it.
WORKER_PARENT_ENV = "USAGEWATCH_WORKER_PARENT_PID"
ADVANCE_SECONDS_MAX = 5 * 366 * 24 * 3600  # five years per call
ADVANCE_STEPS_MAX = 100_000


class Scheduler:
    """Runs every piece of work that has fallen due: hold and promotional-credit expiries
    (the ledger), monthly rentals and seats (subscriptions), the end of cap pauses at the
    next local day or month (limits), monthly statements; later alert repeats join here."""

    def __init__(self, jobs: Sequence[Job], clock: Clock, test_clock: ManualClock | None) -> None:
        self.jobs = list(jobs)
        self.clock = clock
        self.test_clock = test_clock

    def lanes(self) -> tuple[list[Job], list[Job]]:
        """(quick jobs, slow jobs): the server sweeps them in two lanes, so rendering a big
        account's monthly statement never delays hold expiries or notice deliveries."""
        slow = [job for job in self.jobs if getattr(job, "slow", False)]
        return [job for job in self.jobs if job not in slow], slow

    def run_due(self, jobs: Sequence[Job] | None = None) -> int:
        """Run everything due by now (of `jobs`, default all); returns how many units of
        work ran."""
        total = 0
        while True:  # a batch may leave more behind when many things fall due at once
            done = sum(job.run_due() for job in (self.jobs if jobs is None else jobs))
            total += done
            if done == 0:
                return total

    def next_due_at(self) -> datetime | None:
        dues = [due for job in self.jobs if (due := job.next_due_at()) is not None]
        return min(dues) if dues else None

    def advance(self, seconds: int) -> datetime:
        """Move the test clock forward, stopping at each instant where work falls due and
        running it there, so every entry carries the time it really became due."""
        assert self.test_clock is not None, "advance needs the test clock"
        if not 0 <= seconds <= ADVANCE_SECONDS_MAX:
            raise ValueError("seconds out of range")
        target = self.test_clock.now() + timedelta(seconds=seconds)
        self.run_due()
        for _ in range(ADVANCE_STEPS_MAX):
            due = self.next_due_at()
            if due is None or due > target:
                break
            if due > self.test_clock.now():
                self.test_clock.set(due)
            self.run_due()
        self.test_clock.set(target)
        self.run_due()
        return target

"""The ASGI application: routes, error envelope, limits, metrics, background sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from usagewatch import __version__
from usagewatch.api import errors
from usagewatch.api.lean import install_schemas
from usagewatch.api.limits import BodyLimitMiddleware
from usagewatch.api.metrics import Metrics, MetricsMiddleware
from usagewatch.api.ratelimit import RateLimiter
from usagewatch.api.routes import (
    accounts,
    alerts,
    batch,
    calls,
    credits,
    exotel,
    limits,
    messages,
    ops,
    payments,
    rates,
    reports,
    subscriptions,
)
from usagewatch.api.schemas import ErrorOut
from usagewatch.bootstrap import Container
from usagewatch.service.scheduler import WORKER_PARENT_ENV
from usagewatch.web import install as install_dashboard

log = logging.getLogger(__name__)

DESCRIPTION = """
Usage tracking and prepaid billing. Money is an exact decimal string in the account's
currency; timestamps are RFC 3339 UTC. Errors are `{"error": {"code", "message", "field"?}}`
with the stable codes listed in docs/errors.md. Authenticate with HTTP Basic
`key_id:token` or `Authorization: Bearer <token>`.
"""


def create_app(c: Container, *, run_sweeper: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        worker = None
        if run_sweeper:
            quick, slow = c.scheduler.lanes()
            mode = c.settings.slow_lane
            if mode == "process" and c.test_clock is not None:
                mode = "thread"  # a child process would not follow the test clock
            if mode == "process" and slow:
                worker = SlowWorker(c.settings.database_url)
                worker.ensure_running()
                tasks.append(asyncio.create_task(worker.supervise()))
            lanes = [quick, slow] if mode == "thread" else [quick]
            tasks.append(asyncio.create_task(_sweeper(c, lanes)))
        app.state.slow_worker = worker
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if worker is not None:
                await run_in_threadpool(worker.stop)
            if c.db.loop_connections is not None:  # this loop's, for the charges run on it
                await c.db.loop_connections.close_loop()

    app = FastAPI(
        title="usagewatch",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        strict_content_type=False,  # a body without Content-Type is read as JSON too
        responses={
            "default": {
                "description": "the error envelope; docs/errors.md lists every code",
                "model": ErrorOut,
            }
        },
        # FastAPI's OpenTelemetry hooks look up providers on every request; usagewatch
        # exports its own metrics (/metrics).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.container = c
    app.state.rate_limiter = RateLimiter(c.settings.api_rate_limit)
    metrics = Metrics(c.db, c.ledger)
    app.state.metrics = metrics
    c.ledger.set_entry_observer(metrics.ledger_entry)
    errors.install(app)
    # The platform's hot routes first: a request is matched against routes in order.
    for module in (messages, calls, batch, accounts, credits, rates, subscriptions, limits):
        app.include_router(module.router)
    app.include_router(alerts.router)
    app.include_router(reports.router)
    app.include_router(payments.router)
    app.include_router(ops.router)
    app.include_router(exotel.router)
    install_dashboard(app, c)  # the dashboard's pages (web/)
    install_schemas(app)
    # The last added runs first: metrics see every response, 413s from the limit included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=c.settings.max_request_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def _sweeper(c: Container, lanes: list[list[Any]]) -> None:
    """Run the time-driven work as it falls due (the test clock's `advance` runs the same
    work synchronously), each lane in its own loop: the quick jobs (expiries, deliveries,
    alerts, ...) never wait behind a slow one (monthly statements)."""
    await asyncio.gather(*(_lane(c, jobs) for jobs in lanes if jobs))


class SlowWorker:
    """`usagewatch worker --lane slow` as a child process at a lower CPU priority: the
    monthly statements, whose rendering takes tens of seconds of CPU for a big account,
    run there and not in a thread of the server, where they would hold the interpreter
    lock against every charge (on 10,000,000 records an SMS took 12-44 ms of server CPU
    instead of 1.6 while a catch-up of statements ran beside it). Started again if it
    exits; it exits by itself when the server is gone. The database URL goes in the
    child's environment, not its command line, which other users of the machine can read."""

    RESTART_SECONDS = 5.0

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.process: subprocess.Popen[bytes] | None = None

    def ensure_running(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                return
            log.warning(
                "the statements worker exited (%s); starting it again", self.process.returncode
            )
        env = {
            **os.environ,
            "USAGEWATCH_DATABASE_URL": self.database_url,
            WORKER_PARENT_ENV: str(os.getpid()),
        }
        command = [sys.executable, "-m", "usagewatch", "worker", "--lane", "slow", "--nice", "10"]
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)

    async def supervise(self) -> None:
        while True:
            await asyncio.sleep(self.RESTART_SECONDS)
            self.ensure_running()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it is still rendering after `timeout` seconds. A
        statement cut short is rendered again by the next run: it is written in one
        transaction."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _lane(c: Container, jobs: list[Any]) -> None:
    while True:
        await asyncio.sleep(c.settings.sweep_interval_seconds)
        try:
            await run_in_threadpool(c.scheduler.run_due, jobs)
        except Exception:
            log.exception("sweeper run failed; retrying next period")

"""The ASGI application: routes, error envelope, limits, metrics, background sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from usagewatch import __version__
from usagewatch.api import errors
from usagewatch.api.limits import BodyLimitMiddleware
from usagewatch.api.metrics import Metrics, MetricsMiddleware
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
from usagewatch.bootstrap import Container
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
        task = asyncio.create_task(_sweeper(c)) if run_sweeper else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="usagewatch",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        strict_content_type=False,  # a body without Content-Type is read as JSON too
        responses={"default": {"description": "error envelope", "model": None}},
        # FastAPI's OpenTelemetry hooks look up providers on every request; usagewatch
        # exports its own metrics (/metrics).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.container = c
    metrics = Metrics(c.db)
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
    # The last added runs first: metrics see every response, 413s from the limit included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=c.settings.max_request_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def _sweeper(c: Container) -> None:
    """Run the time-driven work as it falls due (the test clock's `advance` runs the same
    work synchronously), in two lanes: the quick jobs (expiries, deliveries, alerts, ...)
    never wait behind a slow one (monthly statements)."""
    quick, slow = c.scheduler.lanes()
    await asyncio.gather(*(_lane(c, jobs) for jobs in (quick, slow) if jobs))


async def _lane(c: Container, jobs: list[Any]) -> None:
    while True:
        await asyncio.sleep(c.settings.sweep_interval_seconds)
        try:
            await run_in_threadpool(c.scheduler.run_due, jobs)
        except Exception:
            log.exception("sweeper run failed; retrying next period")

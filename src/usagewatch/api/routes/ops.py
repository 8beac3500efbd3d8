"""Health, readiness, metrics and the test clock."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from usagewatch.adapters.db import migrate
from usagewatch.api.auth import admin_only, container
from usagewatch.api.schemas import TestClockAdvance, TestClockOut
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.domain.clock import ManualClock, format_instant
from usagewatch.domain.errors import NotFound, Unavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and its migrations are current")
def readyz(c: Container = Depends(container)) -> dict[str, str]:
    try:
        current = migrate.is_current(c.db)
    except SQLAlchemyError as exc:
        raise Unavailable("not_ready", "the database is unreachable") from exc
    if not current:
        raise Unavailable("not_ready", "the database schema is not current: run usagewatch migrate")
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _test_clock(c: Container) -> ManualClock:
    if c.test_clock is None:
        raise NotFound("not_found", "the test clock is off (start with --test-clock)")
    return c.test_clock


@router.get("/v1/test-clock", response_model=TestClockOut, summary="Read the test clock (admin)")
def read_test_clock(
    _: Principal = Depends(admin_only), c: Container = Depends(container)
) -> TestClockOut:
    return TestClockOut(now=format_instant(_test_clock(c).now()))


@router.post(
    "/v1/test-clock/advance",
    response_model=TestClockOut,
    summary="Move the test clock forward (admin)",
    description="Returns only after every piece of time-driven work that fell due has run, "
    "each at the instant it fell due.",
)
async def advance_test_clock(
    body: TestClockAdvance, _: Principal = Depends(admin_only), c: Container = Depends(container)
) -> TestClockOut:
    _test_clock(c)
    now = await run_in_threadpool(c.scheduler.advance, body.seconds)
    return TestClockOut(now=format_instant(now))

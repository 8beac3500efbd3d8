"""Prometheus metrics: requests, latencies, ledger operations, open holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usagewatch.adapters.db import store
from usagewatch.adapters.db.engine import Database
from usagewatch.service.ledger import LedgerService


class Metrics:
    def __init__(self, db: Database, ledger: LedgerService) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "usagewatch_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "usagewatch_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.ledger_entries = Counter(
            "usagewatch_ledger_entries",
            "journal entries written, by type",
            ["type"],
            registry=self.registry,
        )
        self.registry.register(_OpenHolds(db))
        self.registry.register(_UnlockedRuns(ledger))

    def ledger_entry(self, kind: str) -> None:
        self.ledger_entries.labels(kind).inc()


class _OpenHolds(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.db.read() as conn:
            count = store.count_open_holds(conn)
        yield GaugeMetricFamily("usagewatch_open_holds", "holds currently open", value=count)


class _UnlockedRuns(Collector):
    """PostgreSQL charges run from the state this process last committed, without the
    locking read (LedgerService.run_command(unlocked_ok=True)): how many committed so, and
    how many rolled back and ran again (another process or a config change got there
    first, a replay, a refusal)."""

    def __init__(self, ledger: LedgerService) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "usagewatch_ledger_unlocked_runs",
            "charges run without the locking read, by outcome",
            labels=["outcome"],
        )
        for outcome, count in sorted(self.ledger.unlocked_runs.items()):
            family.add_metric([outcome], count)
        yield family
        yield CounterMetricFamily(
            "usagewatch_ledger_loop_charges",
            "of those committed, the ones sent from the event loop, with no worker thread",
            value=self.ledger.loop_commits,
        )


class MetricsMiddleware:
    """Counts and times every request by its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)

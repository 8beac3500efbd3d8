"""Batch ingest throughput: events/s through BatchService.ingest (10,000 completed usage
events per batch: balance, journal, records and rollups updated in one transaction) next to
a baseline measured in the same run on the same engine: one transaction that bulk-inserts
the same number of usage rows with executemany and nothing else.

    .venv/bin/python bench/batch_bench.py [--engines sqlite,postgresql] [--batches 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import benchdb
from usagewatch.adapters.db.schema import usage_records
from usagewatch.bootstrap import Container, build, freeze_startup_heap
from usagewatch.config import Settings
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.verify import verify

PG_ADMIN = os.environ.get(
    "USAGEWATCH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BATCH = 10_000
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def events(batch_no: int) -> list[dict[str, Any]]:
    at = (NOW - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    out: list[dict[str, Any]] = []
    for i in range(BATCH):
        n = f"{batch_no}-{i}"
        if i % 3 == 0:
            out.append(
                {
                    "kind": "call",
                    "call_sid": f"C{n}",
                    "direction": "outbound",
                    "status": "completed",
                    "duration_seconds": 30 + i % 300,
                    "occurred_at": at,
                    "consumer": f"agent-{i % 20}",
                }
            )
        elif i % 3 == 1:
            out.append(
                {
                    "kind": "sms",
                    "sms_sid": f"S{n}",
                    "type": "transactional",
                    "to": "+919800000001",
                    "units": 1 + i % 3,
                    "occurred_at": at,
                    "campaign_id": f"camp-{i % 5}",
                }
            )
        else:
            out.append(
                {
                    "kind": "whatsapp",
                    "conversation_id": f"W{n}",
                    "category": "utility",
                    "occurred_at": at,
                }
            )
    return out


def baseline(c: Container, batch_no: int) -> float:
    rows = [
        {
            "account_id": "base",
            "service": "sms",
            "sub_type": "transactional",
            "natural_id": f"B{batch_no}-{i}",
            "status": "sent",
            "consumer": None,
            "campaign_id": None,
            "from_number": None,
            "to_number": "+919800000001",
            "quantity": 1,
            "duration_seconds": None,
            "price_micros": 200_000,
            "local_date": "2026-11-28",
            "occurred_at_us": 0,
            "updated_at_us": 0,
            "request_fingerprint": "x" * 64,
            "start_result_json": None,
            "end_result_json": None,
            "end_fingerprint": None,
        }
        for i in range(BATCH)
    ]
    started = time.perf_counter()
    with c.db.write() as conn:
        conn.execute(usage_records.insert(), rows)
    return time.perf_counter() - started


def ours(c: Container, batch_no: int) -> float:
    batch = events(batch_no)
    started = time.perf_counter()
    results = c.batch.ingest("acme", batch)
    took = time.perf_counter() - started
    assert all(r.status == "applied" for r in results), results[:3]
    return took


def run(engine: str, url: str, batches: int) -> tuple[float, float]:
    c = build(
        Settings(database_url=url), "bench-admin-token-0123456789abcdef", clock=ManualClock(NOW)
    )
    c.accounts.create_account("Acme", "acme")
    c.accounts.create_account("Baseline", "base")
    c.ledger.add_credit("acme", LotKind.PAID, Money.parse("100000000"))
    freeze_startup_heap()  # as `usagewatch serve` and `worker` do once they are built
    ours(c, -1)
    baseline(c, -1)  # warm up both
    ours_s = base_s = 0.0
    for b in range(batches):
        base_s += baseline(c, b)
        ours_s += ours(c, b)
    problems = verify(c.db, "acme")  # the baseline account has bare rows on purpose
    assert not problems, problems[:5]
    c.close()
    return BATCH * batches / ours_s, BATCH * batches / base_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for engine in args.engines.split(","):
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                rows.append((engine, *run(engine, f"sqlite:///{tmp}/bench.db", args.batches)))
        else:
            with benchdb.postgres_database(PG_ADMIN, "usagewatch_bench_batch") as url:
                rows.append((engine, *run(engine, url, args.batches)))
    print(
        f"\n## Batch ingest ({BATCH:,} events per batch, {args.batches} batches; "
        f"{platform.machine()}, {os.cpu_count()} CPUs)\n"
    )
    print("| engine | ours (events/s) | baseline: bare bulk insert (rows/s) | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    targets = {"sqlite": 50_000, "postgresql": 20_000}
    for engine, ours_rate, base_rate in rows:
        target = targets[engine]
        mark = "✅" if ours_rate >= target else "❌"
        print(
            f"| {engine} | {ours_rate:,.0f} | {base_rate:,.0f} | {ours_rate / base_rate:.2f} "
            f"| ≥ {target:,} {mark} |"
        )


if __name__ == "__main__":
    main()

"""What the spending-limits gate costs: SMS charges and call authorizations per second with
no limits, next to the same work with every limit enabled (daily, weekly and monthly caps, per-call
duration and cost caps, and a campaign budget the traffic carries), on one engine at a time,
in one process, in the same run. Target: with every limit at most 20% slower (ratio >= 0.83).

Measured in-process through the services (no HTTP): the gate's extra statements weigh more
here than behind the HTTP stack, so this is the stricter figure. The two variants alternate
in rounds (none, all, all, none, ...) so drift in machine load cancels; each round uses a
fresh account. Caps are set high enough never to refuse: the figure is the cost of deciding.

    .venv/bin/python bench/gate_bench.py [--engines sqlite,postgresql] [--seconds 3] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import benchdb
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.limits import Limits
from usagewatch.domain.money import Money

PG_ADMIN = os.environ.get(
    "USAGEWATCH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ALL_LIMITS = Limits(
    enabled=True,
    daily_cap=Money.parse("1000000.00"),
    weekly_cap=Money.parse("5000000.00"),
    monthly_cap=Money.parse("10000000.00"),
    per_call_max_duration_seconds=3600,
    per_call_max_cost=Money.parse("1000.00"),
)


def setup(c: Container, account_id: str, limited: bool) -> str | None:
    c.accounts.create_account(account_id, account_id)
    c.ledger.add_credit(account_id, LotKind.PAID, Money.parse("10000000.00"))
    if not limited:
        return None
    c.limits.put(account_id, ALL_LIMITS)
    c.limits.create_campaign(account_id, "bench", "Bench", Money.parse("10000000.00"))
    return "bench"


def rate(work: Callable[[int], None], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        work(n)
        n += 1
    return n / elapsed


def measure(c: Container, kind: str, limited: bool, round_no: int, seconds: float) -> float:
    account = f"{kind}-{'all' if limited else 'none'}-{round_no}"
    campaign = setup(c, account, limited)
    if kind == "sms":
        return rate(
            lambda n: c.usage.charge_sms(
                account,
                f"S{n}",
                "transactional",
                to="+919800000001",
                units=1,
                campaign_id=campaign,
            ),
            seconds,
        )

    def lifecycle(n: int) -> None:  # authorize, then end: the hold is closed again
        c.calls.authorize(account, f"C{n}", "outbound", to="+9198", campaign_id=campaign)
        c.calls.end(account, f"C{n}", "completed", 45)

    return rate(lifecycle, seconds)


def run_engine(url: str, engine: str, seconds: float, rounds: int) -> list[tuple[str, ...]]:
    c = build(Settings(database_url=url), "bench-admin-token-0123456789abcdef")
    rows = []
    try:
        for kind in ("sms", "call"):
            figures: dict[bool, list[float]] = {False: [], True: []}
            for r in range(rounds):
                order = (False, True) if r % 2 == 0 else (True, False)
                for limited in order:
                    figures[limited].append(measure(c, kind, limited, r, seconds))
            none, every = statistics.median(figures[False]), statistics.median(figures[True])
            label = "SMS charges/s" if kind == "sms" else "call authorize+end/s"
            rows.append((engine, label, f"{none:,.0f}", f"{every:,.0f}", f"{every / none:.2f}"))
            print(
                f"  {engine:10} {label:22} none {none:8,.0f}  every limit {every:8,.0f}"
                f"  ratio {every / none:.2f}",
                flush=True,
            )
    finally:
        c.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    print(f"gate bench: Python {platform.python_version()}, {os.cpu_count()} cores")
    rows: list[tuple[str, ...]] = []
    for engine in args.engines.split(","):
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                rows += run_engine(f"sqlite:///{tmp}/gate.db", engine, args.seconds, args.rounds)
        else:
            with benchdb.postgres_database(PG_ADMIN, "usagewatch_bench_gate") as url:
                rows += run_engine(url, engine, args.seconds, args.rounds)
    print("\n| engine | operation | no limits | every limit | ratio (target >= 0.83) |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

"""What alerts (and auto-recharge) cost the charge path: SMS charges per second on an account
with nothing configured, next to one with 10 alerts of every kind (the three recommended
levels, four low-balance amounts, three usage alerts: today, this month, this month's SMS)
and an auto-recharge rule, in one process, on one engine at a time, in the same run.
Target: with them at least 0.8x the figure without.

In-process through the services (no HTTP): their share is as large as it gets. Rounds
alternate (without, with, with, without, ...) so drift in machine load cancels; each round
uses a fresh account with plenty of money, so nothing fires and nothing recharges: the
figure is the cost of evaluating.

    .venv/bin/python bench/alerts_bench.py [--engines sqlite,postgresql] [--seconds 3] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from typing import Any

import benchdb
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.domain.payments import AutoRechargeRule
from usagewatch.service.alerts import AlertSpec

PG_ADMIN = os.environ.get(
    "USAGEWATCH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def configure(c: Container, account: str) -> None:
    c.alerts.recommended(account, ["dashboard"], [], [])
    for amount in ("5000.00", "1000.00", "500.00", "100.00"):
        spec = AlertSpec(name=f"below {amount}", type="low_balance", channels=["dashboard"])
        spec.threshold = Money.parse(amount)
        c.alerts.create(account, spec)
    for period, service, amount in (
        ("day", None, "100000.00"),
        ("month", None, "900000.00"),
        ("month", "sms", "800000.00"),
    ):
        spec = AlertSpec(name=f"usage {period}", type="usage", channels=["dashboard"])
        spec.threshold, spec.period, spec.service = Money.parse(amount), period, service
        c.alerts.create(account, spec)
    rule = AutoRechargeRule(True, Money.parse("1000.00"), Money.parse("5000.00"), 3)
    c.payments.put_rule(account, rule)


def rate(c: Container, account: str, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        c.usage.charge_sms(account, f"S{n}", "transactional", to="+919800000001", units=1)
        n += 1
    return n / elapsed


def run_engine(url: str, engine: str, seconds: float, rounds: int) -> tuple[Any, ...]:
    c = build(Settings(database_url=url), "bench-admin-token-0123456789abcdef")
    figures: dict[bool, list[float]] = {False: [], True: []}
    try:
        for r in range(rounds):
            for configured in (False, True) if r % 2 == 0 else (True, False):
                account = f"{'with' if configured else 'without'}-{r}"
                c.accounts.create_account(account, account)
                c.ledger.add_credit(account, LotKind.PAID, Money.parse("1000000.00"))
                if configured:
                    configure(c, account)
                figures[configured].append(rate(c, account, seconds))
    finally:
        c.close()
    without, with_ = statistics.median(figures[False]), statistics.median(figures[True])
    print(
        f"  {engine:10} without {without:8,.0f}/s  with 10 alerts + auto-recharge "
        f"{with_:8,.0f}/s  ratio {with_ / without:.2f}",
        flush=True,
    )
    return engine, f"{without:,.0f}", f"{with_:,.0f}", f"{with_ / without:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    print(f"alerts bench: Python {platform.python_version()}, {os.cpu_count()} cores")
    rows = []
    for engine in args.engines.split(","):
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(run_engine(f"sqlite:///{tmp}/a.db", engine, args.seconds, args.rounds))
        else:
            with benchdb.postgres_database(PG_ADMIN, "usagewatch_bench_alerts") as url:
                rows.append(run_engine(url, engine, args.seconds, args.rounds))
    print(
        "\n| engine | SMS/s, nothing configured | SMS/s, 10 alerts + auto-recharge | ratio "
        "(target >= 0.8) |"
    )
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

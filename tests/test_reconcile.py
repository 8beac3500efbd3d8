"""Reconciliation on randomized usage (seeded, both engines): for any period, the sum of the
exported prices = the report total = the usage charges in the journal, to the micro-unit.

The generator mixes everything that makes the three drift apart if a rule is wrong: calls
held, extended and ended (some fail, some never end so their hold expires, some end after
that with a late capture, some are still in progress at the end), overruns, promotional
credit expiring, batches of usage dated days before it is charged, monthly renewals over a
month boundary, an account in another time zone, delivery reports and agent sessions.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.conftest import ADMIN_TOKEN
from tests.test_cli import _env
from usagewatch.adapters.db.schema import usage_rollups_day_service
from usagewatch.bootstrap import Container
from usagewatch.cli import app
from usagewatch.domain.clock import format_instant
from usagewatch.domain.errors import UsageWatchError
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.reconcile import reconcile
from usagewatch.service.reports import Period
from usagewatch.service.verify import verify

ACCOUNTS = {"acme": "Asia/Kolkata", "nyco": "America/New_York"}
SMS_TYPES = ("transactional", "promotional", "service")
CATEGORIES = ("marketing", "utility", "authentication", "service")
END_STATUSES = ("completed", "completed", "completed", "failed", "busy", "no-answer")


def simulate(c: Container, rng: random.Random, steps: int) -> None:
    assert c.test_clock is not None
    for account_id, zone in ACCOUNTS.items():
        c.accounts.create_account(account_id.title(), account_id, timezone=zone)
        c.ledger.add_credit(account_id, LotKind.PAID, Money.parse("3000.00"))
    open_calls: dict[str, list[str]] = {a: [] for a in ACCOUNTS}
    sent: dict[str, list[str]] = {a: [] for a in ACCOUNTS}
    seats: dict[str, set[str]] = {a: set() for a in ACCOUNTS}
    consumers = ["crm", "dialer", "=bad", None]
    for step in range(steps):
        account = rng.choice(list(ACCOUNTS))
        action = rng.random()
        sid = f"{account}-{step}"
        consumer = rng.choice(consumers)

        def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except UsageWatchError:
                return None  # refused (402 and the like): moves nothing

        if action < 0.2:
            if attempt(
                c.usage.charge_sms,
                account,
                sid,
                rng.choice(SMS_TYPES),
                to="+919800000001",
                units=rng.randint(1, 4),
                consumer=consumer,
                campaign_id="camp",
            ):
                sent[account].append(sid)
        elif action < 0.3:
            attempt(
                c.usage.charge_whatsapp, account, sid, rng.choice(CATEGORIES), consumer=consumer
            )
        elif action < 0.5:
            if attempt(
                c.calls.authorize,
                account,
                sid,
                rng.choice(("outbound", "inbound")),
                consumer=consumer,
            ):
                open_calls[account].append(sid)
        elif action < 0.65 and open_calls[account]:
            call = open_calls[account].pop(rng.randrange(len(open_calls[account])))
            if rng.random() < 0.3:
                attempt(c.calls.extend, account, call)
            attempt(c.calls.end, account, call, rng.choice(END_STATUSES), rng.randint(0, 900))
        elif action < 0.75:
            events = []
            for i in range(rng.randint(1, 6)):
                at = c.clock.now() - timedelta(minutes=rng.randint(0, 4 * 24 * 60))
                events.append(
                    {
                        "kind": "sms",
                        "sms_sid": f"{sid}-b{i}",
                        "type": "service",
                        "to": "+919800000001",
                        "units": rng.randint(1, 3),
                        "occurred_at": format_instant(at),
                    }
                )
            events.append(dict(events[0]))  # a duplicate within the batch
            c.batch.ingest(account, events)
        elif action < 0.8:
            item = f"{account}-n{rng.randint(0, 2)}"
            kind = rng.choice(("number", "agent_seat"))
            if item in seats[account]:
                attempt(c.subscriptions.end, account, kind, item)
                seats[account].discard(item)
            elif attempt(c.subscriptions.start, account, kind, item):
                seats[account].add(item)
        elif action < 0.85 and sent[account]:
            attempt(
                c.usage.sms_status,
                account,
                rng.choice(sent[account]),
                rng.choice(("delivered", "failed")),
            )
        elif action < 0.9:
            kind = LotKind.PROMOTIONAL if rng.random() < 0.5 else LotKind.PAID
            expires = c.clock.now() + timedelta(hours=rng.randint(1, 72))
            c.ledger.add_credit(
                account,
                kind,
                Money(rng.randint(1, 4000) * 10_000),
                expires_at=expires if kind is LotKind.PROMOTIONAL else None,
            )
        # time moves on: holds expire, promotional credit lapses, months start
        c.scheduler.advance(rng.choice((30, 300, 3600, 4 * 3600)))  # fmt: skip


def periods(rng: random.Random, first: date, last: date) -> list[Period]:
    out = [Period(first, last)]
    span = (last - first).days
    for _ in range(6):
        a = first + timedelta(days=rng.randint(0, span))
        b = a + timedelta(days=rng.randint(0, 3))
        out.append(Period(a, b))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_three_figures_agree_on_random_usage(container: Container, seed: int) -> None:
    rng = random.Random(seed)
    assert container.test_clock is not None
    simulate(container, rng, 160)
    assert verify(container.db) == []
    for account in ACCOUNTS:
        for period in periods(rng, date(2026, 11, 22), date(2026, 12, 10)):
            result = reconcile(container.db, container.reports, container.exports, account, period)
            assert result.agrees, (account, period, result)
        whole = reconcile(
            container.db,
            container.reports,
            container.exports,
            account,
            Period(date(2026, 11, 1), date(2026, 12, 31)),
        )
        assert whole.charged_micros > 0 and whole.exported_rows > 0


def test_reconcile_command(container: Container, database_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    simulate(container, random.Random(7), 60)
    args = ["--account", "acme", "--from", "2026-11-01", "--to", "2026-12-31"]
    env = _env(USAGEWATCH_ADMIN_TOKEN=ADMIN_TOKEN)
    ok = runner.invoke(app, ["reconcile", *args, "--database-url", database_url], env=env)
    assert ok.exit_code == 0, ok.output
    assert "exported prices" in ok.output and "ledger charges" in ok.output
    assert "ok: all three agree" in ok.output
    out = tmp_path / "usage.csv"
    exported = runner.invoke(
        app, ["export", *args, "--output", str(out), "--database-url", database_url], env=env
    )
    assert exported.exit_code == 0, exported.output
    assert out.read_bytes().startswith(b"date,occurred_at,service")
    xlsx = tmp_path / "usage.xlsx"
    exported = runner.invoke(
        app,
        ["export", *args, "--format", "xlsx", "--service", "sms", "--output", str(xlsx),
         "--database-url", database_url],
        env=env,
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output and xlsx.stat().st_size > 0
    with container.db.engine.begin() as conn:  # a rollup the daily report reads, tampered
        rollups = usage_rollups_day_service
        conn.execute(
            sa.update(rollups)
            .where(rollups.c.account_id == "acme", rollups.c.cost_micros > 0)
            .values(cost_micros=rollups.c.cost_micros + 1)
        )
    bad = runner.invoke(app, ["reconcile", *args, "--database-url", database_url], env=env)
    assert bad.exit_code == 1, bad.output
    assert "DIFFERENT" in bad.output
    wrong = runner.invoke(
        app,
        ["reconcile", "--account", "acme", "--from", "2026-12-01", "--to", "2026-11-01",
         "--database-url", database_url],
        env=env,
    )  # fmt: skip
    assert wrong.exit_code == 2 and "invalid_date_range" in wrong.output

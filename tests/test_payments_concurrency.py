"""Auto-recharge under concurrency on PostgreSQL: SMS charges racing from eight OS processes
(each with its own container, as separate servers would) across the threshold start exactly
one recharge, and several processes running the payment job at once call the gateway for it
exactly once. The account lock decides the trigger; a compare-and-set claims the payment."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import ADMIN_TOKEN, PG_ADMIN_URL
from tests.test_concurrency import run_processes
from tests.test_usage_concurrency import pg_url  # noqa: F401  (fixture)
from usagewatch.adapters.payments import SimulatedGateway
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.domain.payments import AutoRechargeRule
from usagewatch.service.verify import verify

pytestmark = [
    pytest.mark.skipif(
        not PG_ADMIN_URL, reason="set USAGEWATCH_TEST_POSTGRES_URL to run the PostgreSQL tests"
    ),
    pytest.mark.postgres_only,
]

PROCESSES = 8


@pytest.fixture
def parent(pg_url: str) -> Iterator[Container]:  # noqa: F811
    c = build(Settings(database_url=pg_url), ADMIN_TOKEN)
    yield c
    c.close()


def _sms_then_run_payments(c: Container, account_id: str, prefix: str) -> int:
    """Five SMS at 0.20, then the payment job a few times; the gateway calls it made."""
    for i in range(5):
        c.usage.charge_sms(account_id, f"{prefix}-{i}", "transactional", to="+9198", units=1)
    for _ in range(3):
        c.payments.run_due()
        time.sleep(0.05)
    assert isinstance(c.payments.gateway, SimulatedGateway)
    return c.payments.gateway.calls


def test_forty_sms_across_the_threshold_start_one_recharge(
    pg_url: str,  # noqa: F811
    parent: Container,
) -> None:
    acc = "racing"
    parent.accounts.create_account(acc, acc)
    parent.ledger.add_credit(acc, LotKind.PAID, Money.parse("100.00"))
    rule = AutoRechargeRule(True, Money.parse("97.00"), Money.parse("200.00"), 5)
    parent.payments.put_rule(acc, rule)
    calls = run_processes(
        pg_url, [(_sms_then_run_payments, (acc, f"SM{w}")) for w in range(PROCESSES)]
    )
    parent.payments.run_due()  # whatever the workers left
    assert isinstance(parent.payments.gateway, SimulatedGateway)
    assert sum(calls) + parent.payments.gateway.calls == 1
    [payment] = parent.payments.list(acc, 100, None)
    assert (payment.kind, payment.status, payment.attempts) == ("auto", "succeeded", 1)
    assert parent.queries.balance(acc).available_micros == 292_000_000  # 100 - 8 + 200
    events = [n.row.event for n in parent.notifications.list(acc, 100, None)]
    assert events == ["auto_recharge_succeeded"]
    assert verify(parent.db) == []

"""Caps and budgets under concurrency on PostgreSQL: requests racing from eight OS processes
(each with its own container, as separate servers would) never get more than a daily cap or
a campaign budget allows, and calls holding against a cap never share headroom that only
one of them has. The account lock makes every gate decision see the one before it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.conftest import ADMIN_TOKEN, PG_ADMIN_URL
from tests.test_concurrency import run_processes
from tests.test_usage_concurrency import pg_url  # noqa: F401  (fixture)
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.errors import UsageWatchError
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.limits import Limits
from usagewatch.domain.money import Money
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


def account(c: Container, account_id: str, limits: Limits | None = None) -> str:
    """100.00 available; SMS 0.20 a unit; calls 0.60 a 60 s pulse (the built-in rates)."""
    c.accounts.create_account(account_id, account_id)
    c.ledger.add_credit(account_id, LotKind.PAID, Money.parse("100.00"))
    if limits is not None:
        c.limits.put(account_id, limits)
    return account_id


def _sms(c: Container, account_id: str, prefix: str, campaign: str | None) -> list[str]:
    out = []
    for i in range(5):
        try:
            c.usage.charge_sms(
                account_id,
                f"{prefix}-{i}",
                "transactional",
                to="+919800000001",
                units=1,
                campaign_id=campaign,
            )
        except UsageWatchError as exc:
            out.append(exc.code)
        else:
            out.append("ok")
    return out


def _calls(c: Container, account_id: str, prefix: str) -> list[tuple[str, int, int]]:
    out = []
    for i in range(2):
        try:
            call = c.calls.authorize(account_id, f"{prefix}-{i}", "outbound", to="+9198")
        except UsageWatchError as exc:
            out.append((exc.code, 0, 0))
        else:
            out.append(("ok", call.reserved_micros, call.max_duration_seconds))
    return out


def test_forty_sms_under_a_daily_cap_with_room_for_ten(pg_url: str, parent: Container) -> None:  # noqa: F811
    acc = account(parent, "daily", Limits(enabled=True, daily_cap=Money.parse("2.00")))
    results = run_processes(pg_url, [(_sms, (acc, f"SM{w}", None)) for w in range(PROCESSES)])
    outcomes = Counter(code for worker in results for code in worker)
    assert outcomes == {"ok": 10, "daily_cap_reached": 30}
    view = parent.queries.balance(acc)
    assert (view.available_micros, view.today_usage_micros) == (98_000_000, 2_000_000)
    assert view.outbound_block_reason == "daily_cap_reached"
    # one notice, however many requests were refused
    events = [n.row.event for n in parent.notifications.list(acc, 100, None)]
    assert events == ["daily_cap_reached"]
    assert verify(parent.db) == []


def test_forty_sms_under_a_campaign_budget_with_room_for_ten(
    pg_url: str,  # noqa: F811
    parent: Container,
) -> None:
    acc = account(parent, "campaign")
    parent.limits.create_campaign(acc, "launch", "Launch", Money.parse("2.00"))
    results = run_processes(pg_url, [(_sms, (acc, f"SM{w}", "launch")) for w in range(PROCESSES)])
    outcomes = Counter(code for worker in results for code in worker)
    assert outcomes == {"ok": 10, "campaign_budget_exhausted": 30}
    campaign = parent.limits.get_campaign(acc, "launch").campaign
    assert (campaign.spent_micros, campaign.status) == (2_000_000, "paused")
    assert parent.queries.balance(acc).available_micros == 98_000_000
    assert verify(parent.db) == []


def test_calls_racing_for_a_daily_cap_never_share_headroom(
    pg_url: str,  # noqa: F811
    parent: Container,
) -> None:
    # 7.20 of room: two calls hold their 300 s window (3.00 each; may run 720 s and 420 s),
    # a third gets the last 1.20 (120 s); every other one is refused.
    acc = account(parent, "calls", Limits(enabled=True, daily_cap=Money.parse("7.20")))
    results = run_processes(pg_url, [(_calls, (acc, f"CA{w}")) for w in range(PROCESSES)])
    outcomes = [o for worker in results for o in worker]
    granted = sorted((r, s) for code, r, s in outcomes if code == "ok")
    assert granted == [(1_200_000, 120), (3_000_000, 420), (3_000_000, 720)]
    refused = Counter(code for code, _, _ in outcomes if code != "ok")
    assert refused == {"daily_cap_reached": 13}
    view = parent.queries.balance(acc)
    assert view.reserved_micros == 7_200_000
    assert verify(parent.db) == []

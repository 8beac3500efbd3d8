"""Caps and budgets against random traffic, on both engines: random daily, weekly and monthly caps
and a campaign budget, then random SMS (with and without the campaign), outbound calls that
authorize, extend and end within what they hold, and clock jumps across local midnights
and month ends. After every step:

- per local day, charged + held never exceeds the daily cap;
- per local ISO week, charged + held never exceeds the weekly cap;
- per local month, charged + held never exceeds the monthly cap;
- the campaign's spent + held never exceeds its budget;
- every refusal names a cap or the budget (the balance is ample);
- `verify()` (journal, rollups, campaign spent) finds nothing.

Calls end within what they hold, so no explicit overrun (a capture above its hold, a late
capture, a batch) is in play: those are the documented exceptions to the caps.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.conftest import START
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.errors import PaymentRequired
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.limits import Limits
from usagewatch.domain.money import Money
from usagewatch.service.verify import verify

PULSE_MICROS = 600_000  # outbound, per 60 s pulse (built-in rates)
CAP_CODES = {
    "daily_cap_reached",
    "weekly_cap_reached",
    "monthly_cap_reached",
    "campaign_budget_exhausted",
}


def run(factory: Callable[[ManualClock], Container], examples: int, steps: int) -> None:
    class Caps(RuleBasedStateMachine):
        @initialize(
            daily=st.integers(0, 60),
            weekly=st.integers(0, 120),
            monthly=st.integers(0, 200),
            budget=st.integers(0, 40),
        )
        def start(self, daily: int, weekly: int, monthly: int, budget: int) -> None:
            self.clock = ManualClock(START)
            self.c = factory(self.clock)
            self.c.accounts.create_account("Acme", "acme")
            self.c.ledger.add_credit("acme", LotKind.PAID, Money.parse("1000.00"))
            self.daily = daily * 100_000  # 0.00 .. 6.00
            self.weekly = weekly * 100_000  # 0.00 .. 12.00
            self.monthly = monthly * 100_000  # 0.00 .. 20.00
            self.budget = budget * 100_000  # 0.00 .. 4.00
            self.c.limits.put(
                "acme",
                Limits(
                    enabled=True,
                    daily_cap=Money(self.daily),
                    weekly_cap=Money(self.weekly),
                    monthly_cap=Money(self.monthly),
                ),
            )
            self.c.limits.create_campaign("acme", "c1", "C1", Money(self.budget))
            self.open: dict[str, int] = {}  # call_sid -> micros held
            self.n = 0

        def sid(self, prefix: str) -> str:
            self.n += 1
            return f"{prefix}{self.n}"

        def refused(self, exc: PaymentRequired) -> None:
            assert exc.code in CAP_CODES, exc.code

        @rule(campaign=st.booleans(), kind=st.sampled_from(["transactional", "promotional"]))
        def sms(self, campaign: bool, kind: str) -> None:
            try:
                self.c.usage.charge_sms(
                    "acme",
                    self.sid("SM"),
                    kind,
                    to="+919800000001",
                    units=1,
                    campaign_id="c1" if campaign else None,
                )
            except PaymentRequired as exc:
                self.refused(exc)

        @rule(campaign=st.booleans())
        def authorize(self, campaign: bool) -> None:
            sid = self.sid("CA")
            try:
                result = self.c.calls.authorize(
                    "acme",
                    sid,
                    "outbound",
                    to="+919800000001",
                    campaign_id="c1" if campaign else None,
                )
            except PaymentRequired as exc:
                self.refused(exc)
                return
            assert result.reserved_micros > 0
            self.open[sid] = result.reserved_micros

        @precondition(lambda self: self.open)
        @rule(data=st.data())
        def extend(self, data: st.DataObject) -> None:
            sid = data.draw(st.sampled_from(sorted(self.open)))
            try:
                result = self.c.calls.extend("acme", sid)
            except PaymentRequired as exc:
                assert exc.code in CAP_CODES | {"call_duration_max_reached"}, exc.code
                return
            assert result.reserved_micros > self.open[sid]
            self.open[sid] = result.reserved_micros

        @precondition(lambda self: self.open)
        @rule(data=st.data())
        def end(self, data: st.DataObject) -> None:
            sid = data.draw(st.sampled_from(sorted(self.open)))
            covered = self.open.pop(sid) // PULSE_MICROS * 60
            seconds = data.draw(st.integers(0, covered))
            status = data.draw(st.sampled_from(["completed", "completed", "no-answer"]))
            self.c.calls.end("acme", sid, status, seconds)

        @rule(seconds=st.sampled_from([60, 3600, 6 * 3600, 86_400, 40 * 86_400]))
        def advance(self, seconds: int) -> None:
            # end every call first: a hold past its TTL would make a late end an overrun
            for sid, held in sorted(self.open.items()):
                self.c.calls.end("acme", sid, "completed", held // PULSE_MICROS * 60)
            self.open.clear()
            self.c.scheduler.advance(seconds)

        @invariant()
        def within_caps(self) -> None:
            if not hasattr(self, "c"):
                return
            view = self.c.queries.balance("acme")
            held = view.reserved_micros
            assert view.today_usage_micros + held <= self.daily
            assert view.month_usage_micros + held <= self.monthly
            assert self.c.limits.get("acme").charged_this_week_micros + held <= self.weekly
            campaign = self.c.limits.get_campaign("acme", "c1")
            assert campaign.campaign.spent_micros + campaign.held_micros <= self.budget
            assert verify(self.c.db) == []

        def teardown(self) -> None:
            if hasattr(self, "c"):
                self.c.close()

    Caps.TestCase.settings = settings(
        max_examples=examples, stateful_step_count=steps, deadline=None
    )
    Caps.TestCase().runTest()


def test_caps_and_budgets_hold_under_random_traffic(
    fresh_container: Callable[[ManualClock], Container], request: pytest.FixtureRequest
) -> None:
    if "postgresql" in request.node.callspec.id:
        run(fresh_container, examples=6, steps=25)
    else:
        run(fresh_container, examples=25, steps=25)

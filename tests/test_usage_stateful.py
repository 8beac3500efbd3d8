"""Calls and messages against a simple model: random sequences of call authorizations,
extensions, ends (any status, any duration, including past the hold's TTL), SMS and
WhatsApp charges, batch events and clock jumps, on both engines. After every step: the
balance matches the model exactly, reserved equals the open call holds, available never
goes below zero except by the explicit overruns the model predicts, authorize's
max_duration_seconds is exact, and `verify()` (journal and rollups) finds nothing."""

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
from usagewatch.domain.money import Money
from usagewatch.service.verify import verify

PULSE = 60
OUT = Money.parse("0.60")  # per pulse: the built-in defaults
SMS = Money.parse("0.20")
WINDOW, GRACE = 300, 120


def pulses(seconds: int) -> int:
    return -(-seconds // PULSE)


def run(factory: Callable[[ManualClock], Container], examples: int, steps: int) -> None:
    class Calls(RuleBasedStateMachine):
        @initialize(credit=st.integers(0, 3000))
        def start(self, credit: int) -> None:
            self.clock = ManualClock(START)
            self.c = factory(self.clock)
            self.c.accounts.create_account("Acme", "acme")
            self.paid = 0  # model: credits minus charges, in micro-units (may go negative)
            self.holds: dict[str, int] = {}  # open call holds (model)
            self.started: dict[str, int] = {}  # call start times (seconds since START)
            self.expires: dict[str, int] = {}  # when each call's hold expires
            self.now = 0
            self.n = 0
            if credit:
                self.c.ledger.add_credit("acme", LotKind.PAID, Money(credit * 10_000))
                self.paid += credit * 10_000

        def available(self) -> int:
            return self.paid - sum(self.holds.values())

        def sid(self) -> str:
            self.n += 1
            return f"X{self.n}"

        @rule()
        def authorize(self) -> None:
            sid = self.sid()
            can_pay = max(self.available(), 0) // OUT.micros
            try:
                result = self.c.calls.authorize("acme", sid, "outbound", to="+919800000001")
            except PaymentRequired as exc:
                assert exc.code == "insufficient_balance" and can_pay == 0
                return
            expected_max = min(can_pay * PULSE, 10_800)
            assert result.max_duration_seconds == expected_max
            held = pulses(min(WINDOW, expected_max)) * OUT.micros
            assert result.reserved_micros == held
            # exact: the max costs no more than available, one more pulse would
            assert pulses(expected_max) * OUT.micros <= self.available()
            if expected_max < 10_800:
                assert (pulses(expected_max) + 1) * OUT.micros > self.available()
            self.holds[sid] = held
            self.started[sid] = self.now
            self.expires[sid] = self.now + min(WINDOW, expected_max) + GRACE

        @precondition(lambda self: self.started)
        @rule(
            data=st.data(),
            status=st.sampled_from(["completed", "completed", "failed"]),
            seconds=st.integers(0, 700),
        )
        def end(self, data: st.DataObject, status: str, seconds: int) -> None:
            sid = data.draw(st.sampled_from(sorted(self.started)))
            result = self.c.calls.end("acme", sid, status, seconds)
            price = pulses(seconds) * OUT.micros if status == "completed" else 0
            assert result.price_micros == price
            self.holds.pop(sid, None)
            del self.started[sid]
            self.paid -= price

        @rule(units=st.integers(1, 3))
        def sms(self, units: int) -> None:
            price = units * SMS.micros
            try:
                self.c.usage.charge_sms(
                    "acme", self.sid(), "transactional", to="+919800000001", units=units
                )
            except PaymentRequired:
                assert price > self.available()
                return
            assert price <= self.available()
            self.paid -= price

        @rule(seconds=st.sampled_from([30, 299, 420, 421, 3600]))
        def wait(self, seconds: int) -> None:
            self.c.scheduler.advance(seconds)
            self.now += seconds
            for sid in list(self.holds):
                if self.now >= self.expires[sid]:
                    del self.holds[sid]  # expired: its money is back; the call still ends

        @rule(credit=st.integers(1, 2000))
        def top_up(self, credit: int) -> None:
            self.c.ledger.add_credit("acme", LotKind.PAID, Money(credit * 10_000))
            self.paid += credit * 10_000

        @invariant()
        def books_agree(self) -> None:
            if not hasattr(self, "c"):
                return
            b = self.c.queries.balance("acme")
            assert b.reserved_micros == sum(self.holds.values())
            assert b.available_micros == self.available()
            assert verify(self.c.db) == []

        def teardown(self) -> None:
            if hasattr(self, "c"):
                self.c.close()

    Calls.TestCase.settings = settings(
        max_examples=examples, stateful_step_count=steps, deadline=None
    )
    Calls.TestCase().runTest()


def test_calls_and_messages_against_a_model(
    fresh_container: Callable[[ManualClock], Container], request: pytest.FixtureRequest
) -> None:
    if "postgresql" in request.node.callspec.id:
        run(fresh_container, examples=6, steps=20)
    else:
        run(fresh_container, examples=20, steps=20)

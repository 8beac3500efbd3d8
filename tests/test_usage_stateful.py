"""Calls and messages against a simple model: random sequences of call authorizations,
extensions, ends (any status, any duration, including past the hold's TTL and past the
call's maximum), SMS and WhatsApp charges, batch events, replays of an SMS, top-ups and
clock jumps, on both engines. After every step: the balance matches the model exactly,
reserved equals the open call holds, available goes below zero only by the overruns the
model predicts (a batch of usage that already happened, a call ended past what it held),
authorize's max_duration_seconds and each extension are exact, and `verify()` (journal and
rollups) finds nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.conftest import START
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.errors import Conflict, PaymentRequired
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
            self.sent: dict[str, int] = {}  # SMS charged: sid -> units
            card = self.c.rates.card("acme")
            self.whatsapp_prices = {k.value: v.micros for k, v in card.whatsapp.items()}
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

        @precondition(lambda self: self.started)
        @rule(data=st.data())
        def extend(self, data: st.DataObject) -> None:
            sid = data.draw(st.sampled_from(sorted(self.started)))
            if sid not in self.holds:  # lapsed (or the call never held money)
                try:
                    self.c.calls.extend("acme", sid)
                except Conflict as exc:
                    assert exc.code == "call_not_in_progress"
                    return
                raise AssertionError("an extension of a lapsed hold went ahead")
            held = self.holds[sid]
            covered = held // OUT.micros * PULSE
            # the most the call may run: what it holds and what is free, capped
            allowed = min((held + max(self.available(), 0)) // OUT.micros * PULSE, 10_800)
            target = min(covered + WINDOW, allowed)
            more = pulses(target) * OUT.micros - held
            try:
                result = self.c.calls.extend("acme", sid)
            except PaymentRequired:
                assert target <= covered or more <= 0
                return
            assert target > covered and more > 0
            assert result.reserved_micros == held + more
            assert result.max_duration_seconds == allowed
            self.holds[sid] = held + more
            elapsed = self.now - self.started[sid]
            self.expires[sid] = self.now + max(target - elapsed, 1) + GRACE

        @rule(units=st.integers(1, 3))
        def sms(self, units: int) -> None:
            price = units * SMS.micros
            sid = self.sid()
            try:
                self.c.usage.charge_sms(
                    "acme", sid, "transactional", to="+919800000001", units=units
                )
            except PaymentRequired:
                assert price > self.available()
                return
            assert price <= self.available()
            self.paid -= price
            self.sent[sid] = units

        @precondition(lambda self: self.sent)
        @rule(data=st.data())
        def sms_again(self, data: st.DataObject) -> None:
            """A replay answers the first result and moves nothing; another payload is 409."""
            sid = data.draw(st.sampled_from(sorted(self.sent)))
            units = self.sent[sid]
            again = self.c.usage.charge_sms(
                "acme", sid, "transactional", to="+919800000001", units=units
            )
            assert again.units == units and again.price_micros == units * SMS.micros
            try:
                self.c.usage.charge_sms(
                    "acme", sid, "transactional", to="+919800000001", units=units % 3 + 1
                )
            except Conflict as exc:
                assert exc.code == "idempotency_key_reused"
            else:
                raise AssertionError("a changed replay was accepted")

        @rule(category=st.sampled_from(["marketing", "utility", "authentication", "service"]))
        def whatsapp(self, category: str) -> None:
            price = self.whatsapp_prices[category]
            try:
                result = self.c.usage.charge_whatsapp("acme", self.sid(), category)
            except PaymentRequired:
                assert price > self.available()
                return
            # a free conversation (service, by default) needs no money, even below zero
            assert (price == 0 or price <= self.available()) and result.price_micros == price
            self.paid -= price

        @rule(
            events=st.lists(
                st.one_of(
                    st.tuples(st.just("sms"), st.integers(1, 3)),
                    st.tuples(st.just("call"), st.integers(0, 900)),
                ),
                min_size=1,
                max_size=4,
            )
        )
        def batch(self, events: list[tuple[str, int]]) -> None:
            """Usage that already happened: charged whatever the balance (an overrun when
            short, owed until a credit settles it)."""
            at = (START + timedelta(seconds=self.now)).isoformat().replace("+00:00", "Z")
            body, price = [], 0
            for kind, amount in events:
                if kind == "sms":
                    body.append(
                        {
                            "kind": "sms",
                            "sms_sid": self.sid(),
                            "type": "transactional",
                            "to": "+919800000001",
                            "units": amount,
                            "occurred_at": at,
                        }
                    )
                    price += amount * SMS.micros
                else:
                    body.append(
                        {
                            "kind": "call",
                            "call_sid": self.sid(),
                            "direction": "outbound",
                            "status": "completed",
                            "duration_seconds": amount,
                            "occurred_at": at,
                        }
                    )
                    price += pulses(amount) * OUT.micros
            results = self.c.batch.ingest("acme", body)
            assert [r.status for r in results] == ["applied"] * len(body), results
            assert sum(r.price_micros or 0 for r in results) == price
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

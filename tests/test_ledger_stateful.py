"""The ledger against a simple model of itself: a hypothesis state machine drives random
credits, holds, extends, captures, releases, debits and clock jumps through the real
services on each engine, and after every step checks every invariant of DESIGN.md.

The model below is written from the rules, not from the code: a list of lots, each with
`remaining` and `held`; an overdraft; and holds that remember what they reserved on which
lot. Spending order is promotional before paid, soonest expiry first, then oldest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import START
from usagewatch.adapters.db.schema import credit_lots, holds, journal_entries, journal_movements
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock, to_micros
from usagewatch.domain.errors import Conflict, PaymentRequired
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.ledger import CreditResult, DebitResult, HoldResult
from usagewatch.service.queries import BalanceView
from usagewatch.service.verify import verify

SECOND = 1_000_000  # microseconds
CLOSING_KINDS = ("capture", "release", "hold_expired")

# -- the model ---------------------------------------------------------------------------------


@dataclass
class MLot:
    seq: int  # creation order
    promotional: bool
    amount: int
    remaining: int
    expires_at: int | None  # microseconds; promotional lots only
    held: int = 0

    @property
    def free(self) -> int:
        return self.remaining - self.held


@dataclass
class MHold:
    ref: str
    amount: int
    expires_at: int
    allocations: dict[int, int] = field(default_factory=dict)  # lot seq -> held
    status: str = "open"  # open | captured | released | expired
    captured: int | None = None


class Refused(Exception):
    """The model says the ledger must refuse with insufficient_balance."""


@dataclass
class Model:
    now: int
    lots: list[MLot] = field(default_factory=list)
    holds: dict[str, MHold] = field(default_factory=dict)
    overdraft: int = 0

    # figures
    @property
    def paid(self) -> int:
        return sum(lot.remaining for lot in self.lots if not lot.promotional) - self.overdraft

    @property
    def promotional(self) -> int:
        return sum(lot.remaining for lot in self.lots if lot.promotional)

    @property
    def reserved(self) -> int:
        return sum(lot.held for lot in self.lots)

    @property
    def available(self) -> int:
        return sum(lot.free for lot in self.lots if self.live(lot)) - self.overdraft

    def live(self, lot: MLot) -> bool:
        return lot.expires_at is None or lot.expires_at > self.now

    @staticmethod
    def order(lot: MLot) -> tuple[int, int, int]:
        if lot.promotional:
            assert lot.expires_at is not None
            return (0, lot.expires_at, lot.seq)
        return (1, 0, lot.seq)

    def spendable(self) -> list[MLot]:
        return sorted((x for x in self.lots if self.live(x) and x.free > 0), key=self.order)

    # primitive moves
    def consume_free(self, amount: int) -> int:
        """Spend free money of unexpired lots in spending order; return the shortfall."""
        for lot in self.spendable():
            take = min(amount, lot.free)
            lot.remaining -= take
            amount -= take
        return amount

    def settle(self) -> None:
        self.overdraft = self.consume_free(self.overdraft)

    def forfeit_expired(self) -> int:
        forfeited = 0
        for lot in self.lots:
            if not self.live(lot) and lot.free > 0:
                forfeited += lot.free
                lot.remaining = lot.held
        return forfeited

    def reserve(self, amount: int) -> dict[int, int]:
        if amount > self.available:
            raise Refused
        taken: dict[int, int] = {}
        for lot in self.spendable():
            take = min(amount, lot.free)
            if take:
                lot.held += take
                taken[lot.seq] = take
                amount -= take
        assert amount == 0
        return taken

    def give_back(self, hold: MHold) -> None:
        for seq, alloc in hold.allocations.items():
            self.lots[seq].held -= alloc
        hold.allocations = {}

    # commands (each starts by forfeiting what fell due, like every ledger command)
    def credit(self, promotional: bool, amount: int, expires_at: int | None) -> MLot:
        self.forfeit_expired()
        lot = MLot(len(self.lots), promotional, amount, amount, expires_at)
        self.lots.append(lot)
        self.settle()
        return lot

    def place_hold(self, ref: str, amount: int, expires_at: int) -> MHold:
        self.forfeit_expired()
        hold = MHold(ref, amount, expires_at, self.reserve(amount))
        self.holds[ref] = hold
        return hold

    def extend(self, hold: MHold, amount: int, expires_at: int) -> None:
        self.forfeit_expired()
        assert hold.status == "open"
        for seq, take in self.reserve(amount).items():
            hold.allocations[seq] = hold.allocations.get(seq, 0) + take
        hold.amount += amount
        hold.expires_at = expires_at

    def capture(self, hold: MHold, price: int) -> None:
        """Charge the hold's own money first (in spending order, even on a lot that expired
        after the hold was placed: that money was reserved in time), give back the rest,
        charge any excess from free money and owe what it cannot cover."""
        self.forfeit_expired()
        left = price
        for seq in sorted(hold.allocations, key=lambda s: self.order(self.lots[s])):
            lot, alloc = self.lots[seq], hold.allocations[seq]
            take = min(left, alloc)
            lot.remaining -= take
            lot.held -= alloc
            left -= take
        hold.allocations = {}
        self.overdraft += self.consume_free(left)
        self.settle()
        self.forfeit_expired()
        if hold.status == "open":
            hold.status = "captured"
        hold.captured = price

    def release(self, hold: MHold, status: str = "released") -> None:
        self.forfeit_expired()
        self.give_back(hold)
        self.settle()
        self.forfeit_expired()
        hold.status = status

    def debit(self, amount: int, allow_overrun: bool) -> int:
        self.forfeit_expired()
        if amount > self.available and not allow_overrun:
            raise Refused
        shortfall = self.consume_free(amount)
        self.overdraft += shortfall
        return shortfall

    def advance(self, target: int) -> None:
        """The scheduler: stop at each instant where a hold or a promotional lot falls due,
        expire holds there (in expiry order), then forfeit expired free money."""
        for _ in range(10_000):  # bounded: a model mistake must fail, not hang
            due = [h.expires_at for h in self.holds.values() if h.status == "open"]
            due += [x.expires_at for x in self.lots if x.expires_at is not None and x.free > 0]
            if not due or min(due) > target:
                break
            self.now = max(self.now, min(due))
            for hold in sorted(self.open_holds(), key=lambda h: h.expires_at):
                if hold.expires_at <= self.now:
                    self.release(hold, "expired")
            self.forfeit_expired()
        else:
            raise AssertionError("the model's clock is stuck on an instant")
        self.now = target

    def open_holds(self) -> list[MHold]:
        return [h for h in self.holds.values() if h.status == "open"]

    def check(self) -> None:
        """The model's own invariants (so a wrong model fails loudly, not silently)."""
        for lot in self.lots:
            assert 0 <= lot.held <= lot.remaining <= lot.amount, lot
            assert self.live(lot) or lot.free == 0, f"expired lot kept free money: {lot}"
        assert self.overdraft >= 0
        assert self.overdraft == 0 or not any(x.free for x in self.lots if self.live(x))
        assert self.reserved == sum(h.amount for h in self.open_holds())
        for hold in self.open_holds():
            assert sum(hold.allocations.values()) == hold.amount


# -- strategies --------------------------------------------------------------------------------

# Charges are small next to credits, so most holds and debits go through and the edges
# (refusals, overruns) come from running the balance down, as in real use.
amounts = st.one_of(
    st.integers(1, 30).map(lambda n: n * 250_000),  # round amounts collide and tie often
    st.integers(1, 10_000_000),  # and any micro-unit amount
)
credit_amounts = st.one_of(
    st.integers(1, 20).map(lambda n: n * 5_000_000),
    st.integers(1, 100_000_000),
)
promo_lifetimes = st.sampled_from([1, 59, 60, 600, 3600, 7200, 86_400, 3 * 86_400])
hold_ttls = st.sampled_from([1, 30, 60, 120, 600, 3600, 7200])
jumps = st.one_of(
    st.sampled_from([0, 1, 29, 30, 59, 60, 61, 119, 600, 3600]),  # around the TTLs
    st.integers(0, 2 * 86_400),  # and anywhere up to two days (promotional lifetimes)
)
capture_prices = st.sampled_from(["zero", "below", "equal", "above", "far above"])


# -- the machine -------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    factory: Callable[[ManualClock], Container]

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        self.c = self.factory(self.clock)
        self.account = self.c.accounts.create_account("Model Co").id
        self.model = Model(now=to_micros(START))
        self.lot_ids: dict[str, int] = {}  # ledger lot id -> model seq
        self.counter = 0
        self.overrun_debits: set[str] = set()
        # (call again, first result, conflicting call or None): for replays
        self.done: list[tuple[Callable[[], object], object, Callable[[], object] | None]] = []

    def teardown(self) -> None:
        self.c.close()

    # helpers
    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def unique_hold_expiry(self, ttl: int, hold: MHold | None = None) -> int:
        """Holds falling due at the same instant would expire in an unspecified order; keep
        every open hold's expiry distinct so the model can follow the sweeper exactly."""
        taken = {h.expires_at for h in self.model.open_holds() if h is not hold}
        while self.model.now + ttl * SECOND in taken:
            ttl += 1
        return ttl

    def expect_refusal(self, call: Callable[[], object]) -> None:
        with pytest.raises(PaymentRequired) as err:
            call()
        assert err.value.code == "insufficient_balance"

    def expect_conflict(self, call: Callable[[], object], code: str) -> None:
        with pytest.raises(Conflict) as err:
            call()
        assert err.value.code == code

    def assert_not_overspent(self) -> None:
        """After a hold, an extend or a plain debit went through, available is not below
        zero: only overrunning captures and allow_overrun debits may take it there."""
        assert self.balance().available_micros >= 0

    def balance(self) -> BalanceView:
        return self.c.queries.balance(self.account)

    @initialize(units=st.integers(0, 200))
    def opening_top_up(self, units: int) -> None:
        """Most accounts start with some paid money; some start empty."""
        if units:
            self.credit_paid(units * 1_000_000)

    # -- credits ---------------------------------------------------------------------------
    @rule(amount=credit_amounts)
    def credit_paid(self, amount: int) -> None:
        key = self.name("pay")
        ledger, acct = self.c.ledger, self.account

        def call(micros: int = amount) -> CreditResult:
            return ledger.add_credit(acct, LotKind.PAID, Money(micros), idempotency_key=key)

        result = call()
        lot = self.model.credit(False, amount, None)
        self.lot_ids[result.id] = lot.seq
        self.done.append((call, result, lambda: call(amount + 1)))

    @rule(amount=credit_amounts, lifetime=promo_lifetimes)
    def credit_promotional(self, amount: int, lifetime: int) -> None:
        key = self.name("promo")
        expires = self.clock.now() + timedelta(seconds=lifetime)
        ledger, acct = self.c.ledger, self.account

        def call(micros: int = amount) -> CreditResult:
            return ledger.add_credit(
                acct, LotKind.PROMOTIONAL, Money(micros), expires_at=expires, idempotency_key=key
            )

        result = call()
        lot = self.model.credit(True, amount, to_micros(expires))
        self.lot_ids[result.id] = lot.seq
        self.done.append((call, result, lambda: call(amount + 1)))

    # -- holds -----------------------------------------------------------------------------
    @rule(amount=amounts, ttl=hold_ttls)
    def place_hold(self, amount: int, ttl: int) -> None:
        ref = self.name("call")
        ttl = self.unique_hold_expiry(ttl)
        ledger, acct = self.c.ledger, self.account

        def call(micros: int = amount) -> HoldResult:
            return ledger.place_hold(acct, ref, Money(micros), ttl)

        try:
            self.model.place_hold(ref, amount, self.model.now + ttl * SECOND)
        except Refused:
            self.expect_refusal(call)
            return
        result = call()
        assert result.available_after_micros == self.model.available
        assert result.status == "open" and result.amount_micros == amount
        self.assert_not_overspent()
        self.done.append((call, result, lambda: call(amount + 1)))

    def pick_hold(self, data: st.DataObject, open_only: bool) -> MHold:
        holds = self.model.open_holds() if open_only else list(self.model.holds.values())
        return data.draw(st.sampled_from(sorted(holds, key=lambda h: h.ref)))

    # Each hold command has two rules: on an open hold (the common case, drawn more often)
    # and on any hold (closed ones must be refused or replayed).
    @precondition(lambda self: self.model.open_holds())
    @rule(data=st.data(), amount=amounts, ttl=hold_ttls)
    def extend_open_hold(self, data: st.DataObject, amount: int, ttl: int) -> None:
        self.extend_hold(self.pick_hold(data, True), amount, ttl)

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data(), amount=amounts, ttl=hold_ttls)
    def extend_any_hold(self, data: st.DataObject, amount: int, ttl: int) -> None:
        self.extend_hold(self.pick_hold(data, False), amount, ttl)

    def extend_hold(self, hold: MHold, amount: int, ttl: int) -> None:
        step = self.name("step")
        ttl = self.unique_hold_expiry(ttl, hold)
        ledger, acct = self.c.ledger, self.account

        def call(micros: int = amount) -> HoldResult:
            return ledger.extend_hold(acct, hold.ref, Money(micros), ttl, step)

        if hold.status != "open":
            self.expect_conflict(call, "hold_closed")
            return
        try:
            self.model.extend(hold, amount, self.model.now + ttl * SECOND)
        except Refused:
            self.expect_refusal(call)
            return
        result = call()
        assert result.amount_micros == hold.amount
        assert result.available_after_micros == self.model.available
        self.assert_not_overspent()
        self.done.append((call, result, lambda: call(amount + 1)))

    @precondition(lambda self: self.model.open_holds())
    @rule(data=st.data(), how=capture_prices, extra=amounts)
    def capture_open_hold(self, data: st.DataObject, how: str, extra: int) -> None:
        self.capture_hold(self.pick_hold(data, True), how, extra)

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data(), how=capture_prices, extra=amounts)
    def capture_any_hold(self, data: st.DataObject, how: str, extra: int) -> None:
        self.capture_hold(self.pick_hold(data, False), how, extra)

    @precondition(lambda self: any(h.status == "expired" for h in self.model.holds.values()))
    @rule(data=st.data(), how=capture_prices, extra=amounts)
    def capture_expired_hold(self, data: st.DataObject, how: str, extra: int) -> None:
        """The call's cost arrives after its hold expired: a late capture, charged once."""
        expired = [h for h in self.model.holds.values() if h.status == "expired"]
        hold = data.draw(st.sampled_from(sorted(expired, key=lambda h: h.ref)))
        self.capture_hold(hold, how, extra)

    def capture_hold(self, hold: MHold, how: str, extra: int) -> None:
        price = {
            "zero": 0,
            "below": max(0, hold.amount - extra),
            "equal": hold.amount,
            "above": hold.amount + extra,
            "far above": hold.amount + 10 * extra,
        }[how]
        ledger, acct = self.c.ledger, self.account

        def call(micros: int = price) -> HoldResult:
            return ledger.capture_hold(acct, hold.ref, Money(micros))

        if hold.status == "released":
            self.expect_conflict(call, "hold_closed")
            return
        if hold.captured is not None:
            # captured already (in time or late): the same price replays, another conflicts
            if price != hold.captured:
                self.expect_conflict(call, "idempotency_key_reused")
                return
            before = self.balance().version
            again = call()
            assert again.captured_micros == hold.captured
            assert self.balance().version == before
            return
        available_before = self.model.available
        self.model.capture(hold, price)
        result = call()
        assert result.captured_micros == price
        assert result.status == hold.status
        assert result.available_after_micros == self.model.available
        if price <= hold.amount and hold.status == "captured":
            # within its hold a capture never lowers available
            assert self.model.available >= available_before
        self.done.append((call, result, lambda: call(price + 1)))

    @precondition(lambda self: self.model.open_holds())
    @rule(data=st.data())
    def release_open_hold(self, data: st.DataObject) -> None:
        self.release_hold(self.pick_hold(data, True))

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data())
    def release_any_hold(self, data: st.DataObject) -> None:
        self.release_hold(self.pick_hold(data, False))

    def release_hold(self, hold: MHold) -> None:
        ledger, acct, ref = self.c.ledger, self.account, hold.ref

        def call() -> HoldResult:
            return ledger.release_hold(acct, ref)

        if hold.status == "released":
            return  # replays are covered by the replay rule
        if hold.status != "open":
            self.expect_conflict(call, "hold_closed")
            return
        available_before = self.model.available
        self.model.release(hold)
        result = call()
        assert result.status == "released"
        assert result.available_after_micros == self.model.available
        assert self.model.available >= available_before
        self.done.append((call, result, None))

    # -- debits ----------------------------------------------------------------------------
    @rule(amount=amounts, allow_overrun=st.booleans())
    def debit(self, amount: int, allow_overrun: bool) -> None:
        ref = self.name("sms")
        ledger, acct = self.c.ledger, self.account

        def call(micros: int = amount, overrun: bool = allow_overrun) -> DebitResult:
            return ledger.debit(acct, ref, Money(micros), allow_overrun=overrun)

        try:
            shortfall = self.model.debit(amount, allow_overrun)
        except Refused:
            self.expect_refusal(call)
            return
        result = call()
        assert result.overrun_micros == shortfall
        assert result.available_after_micros == self.model.available
        if allow_overrun:
            self.overrun_debits.add(ref)
        else:
            assert shortfall == 0
            self.assert_not_overspent()
        self.done.append((call, result, lambda: call(amount, not allow_overrun)))

    # -- at the edge of the balance -----------------------------------------------------------
    @rule(allow_overrun=st.booleans())
    def debit_one_micro_more_than_available(self, allow_overrun: bool) -> None:
        """Refused by one micro-unit, or owed by one micro-unit with allow_overrun."""
        self.debit(max(1, self.model.available + 1), allow_overrun)

    @rule(delta=st.sampled_from([-1, 0, 1]), ttl=hold_ttls)
    def hold_at_the_edge(self, delta: int, ttl: int) -> None:
        """A hold of exactly what is available, one micro-unit less, or one more."""
        amount = self.model.available + delta
        if amount > 0:
            self.place_hold(amount, ttl)

    # -- time ------------------------------------------------------------------------------
    @rule(seconds=jumps)
    def advance(self, seconds: int) -> None:
        self.c.scheduler.advance(seconds)
        self.model.advance(self.model.now + seconds * SECOND)
        assert to_micros(self.clock.now()) == self.model.now

    @precondition(lambda self: self.upcoming())
    @rule(data=st.data(), offset=st.sampled_from([-1, 0, 1]))
    def advance_to_an_expiry(self, data: st.DataObject, offset: int) -> None:
        """Jump to just before, exactly at, or just after a hold or promotional expiry."""
        instant = data.draw(st.sampled_from(self.upcoming()))
        gap, rest = divmod(instant - self.model.now, SECOND)
        assert rest == 0, "every expiry here is a whole number of seconds from START"
        self.advance(max(0, gap + offset))

    def upcoming(self) -> list[int]:
        m = self.model
        instants = {h.expires_at for h in m.open_holds()}
        instants |= {x.expires_at for x in m.lots if x.expires_at is not None and x.remaining}
        return sorted(t for t in instants if t > m.now)

    # -- replays ---------------------------------------------------------------------------
    @precondition(lambda self: self.done)
    @rule(data=st.data(), conflicting=st.booleans())
    def replay(self, data: st.DataObject, conflicting: bool) -> None:
        again, first, conflict = data.draw(st.sampled_from(self.done))
        before = self.balance().version
        if conflicting and conflict is not None:
            self.expect_conflict(conflict, "idempotency_key_reused")
        else:
            assert again() == first
        assert self.balance().version == before, "a replay moved money"

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def books_match_the_model(self) -> None:
        m = self.model
        m.check()
        b = self.balance()
        assert b.available_micros == b.paid_micros + b.promotional_micros - b.reserved_micros
        assert (b.paid_micros, b.promotional_micros, b.reserved_micros) == (
            m.paid,
            m.promotional,
            m.reserved,
        ), f"ledger vs model at {self.clock.now().isoformat()}"
        assert b.available_micros == m.available
        # no overspend: below zero only while something is owed after an explicit overrun
        assert b.available_micros >= 0 or m.overdraft > 0

        with self.c.db.read() as conn:
            lots = {
                r.id: (r.remaining_micros, r.held_micros)
                for r in conn.execute(sa.select(credit_lots))
            }
            hold_rows = {r.reference: r for r in conn.execute(sa.select(holds))}
            entries = list(conn.execute(sa.select(journal_entries)))
            expiry = {r.id: r.expires_at_us for r in conn.execute(sa.select(credit_lots))}
            spent = conn.execute(
                sa.select(
                    journal_movements.c.lot_id,
                    journal_movements.c.remaining_delta_micros,
                    journal_movements.c.held_delta_micros,
                    journal_entries.c.kind,
                    journal_entries.c.created_at_us,
                ).join(journal_entries, journal_entries.c.id == journal_movements.c.entry_id)
            ).all()

        assert {lot_id: (m.lots[seq].remaining, m.lots[seq].held) for lot_id, seq in
                self.lot_ids.items()} == lots  # fmt: skip

        # every hold ends exactly once; reserved = sum of open holds
        assert set(hold_rows) == set(m.holds)
        closings: dict[str | None, list[str]] = {}
        for e in entries:
            if e.kind in (*CLOSING_KINDS, "late_capture"):
                closings.setdefault(e.hold_id, []).append(e.kind)
        for ref, hold in m.holds.items():
            row = hold_rows[ref]
            assert (row.status, row.amount_micros, row.captured_micros) == (
                hold.status,
                hold.amount,
                hold.captured,
            )
            assert (row.expires_at_us, row.closed_at_us is None) == (
                hold.expires_at,
                hold.status == "open",
            )
            kinds = closings.get(row.id, [])
            ends = [k for k in kinds if k in CLOSING_KINDS]
            assert len(ends) == (0 if hold.status == "open" else 1), (ref, kinds)
            late = kinds.count("late_capture")
            assert late == (1 if hold.status == "expired" and hold.captured is not None else 0)
        assert b.reserved_micros == sum(
            r.amount_micros for r in hold_rows.values() if r.status == "open"
        )

        # the only ways into debt are overrunning captures and allow_overrun debits
        for e in entries:
            if e.overdraft_delta_micros > 0:
                assert e.kind in ("capture", "late_capture") or (
                    e.kind == "debit" and e.reference in self.overrun_debits
                ), e

        # expired promotional money is never spent: after expiry a lot only loses money to
        # a forfeit, or to a capture of what a hold had reserved on it before the expiry
        for lot_id, remaining_delta, held_delta, kind, at in spent:
            expires = expiry[lot_id]
            if expires is None or at < expires or remaining_delta >= 0:
                continue
            assert kind == "promotional_expired" or (
                kind in ("capture",) and -remaining_delta <= -held_delta
            ), (lot_id, remaining_delta, held_delta, kind)

        assert verify(self.c.db) == []


def _run(factory: Callable[[ManualClock], Container], examples: int, steps: int) -> None:
    machine = type("Ledger", (LedgerMachine,), {"factory": staticmethod(factory)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


def test_ledger_matches_the_model(
    fresh_container: Callable[[ManualClock], Container], request: pytest.FixtureRequest
) -> None:
    engine = request.node.callspec.params["fresh_container"]
    if engine == "sqlite":
        _run(fresh_container, examples=50, steps=30)
    else:
        _run(fresh_container, examples=20, steps=30)

"""Ledger scenarios under the fake clock, run through the real services on every engine.

Each scenario is a table: one step per row, then the balance the account owner would see
right after it (available, paid, promotional, reserved). Steps read like the product:

    ("credit paid", "100.00")                 a top-up
    ("credit promo", "10.00", "+1d")          promotional credit expiring one day from now
    ("hold", "call1", "15.00")                a call starts: reserve 15.00 (TTL 5 minutes)
    ("hold", "call1", "15.00", "2m")          ... with a 2-minute TTL
    ("extend", "call1", "5.00")               the call runs on: reserve 5.00 more (TTL 5m)
    ("capture", "call1", "12.50")             the call ends and cost 12.50
    ("release", "call1")                      the call failed: give the hold back
    ("debit", "sms1", "0.25")                 a message charged once
    ("debit overrun", "cdr7", "5.00")         usage that already happened (may go below zero)
    ("refused debit", "sms9", "500.00")       refused with insufficient_balance, nothing moves
    ("refused hold", "call9", "500.00")       the same for a call that may not start
    ("advance", "2d")                         the test clock (and every expiry) moves on
    ("lots", "100.00 0.00 3.00")              remaining on each credit lot, oldest first

The starting instant is 2026-11-28 10:00 in Asia/Kolkata (04:30 UTC).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import START
from usagewatch.adapters.db.schema import balances, holds, journal_entries
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import from_micros, to_micros
from usagewatch.domain.errors import Conflict, PaymentRequired
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.ledger import CreditResult, DebitResult, HoldResult
from usagewatch.service.queries import BalanceView
from usagewatch.service.verify import verify

Step = tuple[str, ...]
Row = tuple[Step, str, str, str, str]  # step, available, paid, promotional, reserved

_DURATION = re.compile(r"^\+?(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> int:
    match = _DURATION.match(text)
    assert match, f"not a duration: {text!r}"
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def fmt(micros: int) -> str:
    return Money(micros).format()


@dataclass
class Account:
    """One account driven through the container's services, step by step."""

    c: Container
    id: str
    extend_steps: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, c: Container, timezone: str = "Asia/Kolkata") -> Account:
        account = c.accounts.create_account("Acme", timezone=timezone)
        return cls(c, account.id)

    @property
    def now(self) -> datetime:
        return self.c.clock.now()

    def balance(self) -> BalanceView:
        return self.c.queries.balance(self.id)

    def figures(self) -> tuple[str, str, str, str]:
        b = self.balance()
        assert b.available_micros == b.paid_micros + b.promotional_micros - b.reserved_micros
        return (
            fmt(b.available_micros),
            fmt(b.paid_micros),
            fmt(b.promotional_micros),
            fmt(b.reserved_micros),
        )

    def lots(self) -> list[str]:
        rows = self.c.queries.credit_lots(self.id, 1000, None)
        return [fmt(lot.remaining_micros) for _, lot in reversed(rows)]

    def version(self) -> int:
        return self.balance().version

    def do(self, step: Step) -> object:
        action, *args = step
        ledger = self.c.ledger
        if action == "credit paid":
            return ledger.add_credit(self.id, LotKind.PAID, Money.parse(args[0]))
        if action == "credit promo":
            expires = self.now + timedelta(seconds=seconds(args[1]))
            return ledger.add_credit(
                self.id, LotKind.PROMOTIONAL, Money.parse(args[0]), expires_at=expires
            )
        if action == "hold":
            ttl = seconds(args[2]) if len(args) > 2 else 300
            return ledger.place_hold(self.id, args[0], Money.parse(args[1]), ttl)
        if action == "extend":
            ttl = seconds(args[2]) if len(args) > 2 else 300
            n = self.extend_steps[args[0]] = self.extend_steps.get(args[0], 0) + 1
            return ledger.extend_hold(self.id, args[0], Money.parse(args[1]), ttl, str(n))
        if action == "capture":
            return ledger.capture_hold(self.id, args[0], Money.parse(args[1]))
        if action == "release":
            return ledger.release_hold(self.id, args[0])
        if action == "debit":
            return ledger.debit(self.id, args[0], Money.parse(args[1]))
        if action == "debit overrun":
            return ledger.debit(self.id, args[0], Money.parse(args[1]), allow_overrun=True)
        if action in ("refused debit", "refused hold"):
            before = (self.figures(), self.version(), self.lots())
            with pytest.raises(PaymentRequired) as err:
                self.do((action.removeprefix("refused "), *args))
            assert err.value.code == "insufficient_balance"
            assert (self.figures(), self.version(), self.lots()) == before, "refusal moved money"
            return err.value
        if action == "advance":
            return self.c.scheduler.advance(seconds(args[0]))
        if action == "lots":
            assert self.lots() == args[0].split(), "remaining on each lot, oldest first"
            return None
        raise AssertionError(f"unknown step {step!r}")

    def run(self, table: Sequence[Row]) -> None:
        for number, (step, *expected) in enumerate(table, 1):
            self.do(step)
            assert list(self.figures()) == expected, f"after step {number} {step}"
            assert verify(self.c.db) == [], f"after step {number} {step}"

    def forfeits(self) -> list[sa.Row]:  # type: ignore[type-arg]
        """Promotional forfeits: entries whose type mentions expiry, on a lot, not a hold."""
        return [e for e in self.entries("expir") if e.hold_id is None and e.lot_id is not None]

    def entries(self, kind_like: str | None = None) -> list[sa.Row]:  # type: ignore[type-arg]
        e = journal_entries
        query = sa.select(e).where(e.c.account_id == self.id).order_by(e.c.id)
        if kind_like is not None:
            query = query.where(e.c.kind.contains(kind_like))
        with self.c.db.read() as conn:
            return list(conn.execute(query))


@pytest.fixture
def acct(container: Container) -> Account:
    assert container.test_clock is not None, "these scenarios drive the test clock"
    assert container.clock.now() == START
    return Account.open(container)


@pytest.fixture(autouse=True)
def books_agree_after_each_scenario(container: Container) -> Iterator[None]:
    yield
    assert verify(container.db) == []


# -- spending order --------------------------------------------------------------------------

SPENDING_ORDER: list[Row] = [
    # step                                    available   paid      promo    reserved
    (("credit paid", "100.00"),               "100.00",  "100.00",  "0.00",  "0.00"),
    (("credit promo", "10.00", "+3d"),        "110.00",  "100.00", "10.00",  "0.00"),
    (("credit promo", "5.00", "+1d"),         "115.00",  "100.00", "15.00",  "0.00"),
    (("credit promo", "4.00", "+1d"),         "119.00",  "100.00", "19.00",  "0.00"),
    (("lots", "100.00 10.00 5.00 4.00"),      "119.00",  "100.00", "19.00",  "0.00"),
    # promotional first, soonest expiry first, then the older of two with the same expiry
    (("debit", "sms1", "6.00"),               "113.00",  "100.00", "13.00",  "0.00"),
    (("lots", "100.00 10.00 0.00 3.00"),      "113.00",  "100.00", "13.00",  "0.00"),
    (("debit", "sms2", "5.00"),               "108.00",  "100.00",  "8.00",  "0.00"),
    (("lots", "100.00 8.00 0.00 0.00"),       "108.00",  "100.00",  "8.00",  "0.00"),
    # promotional runs out, then paid
    (("debit", "sms3", "10.00"),               "98.00",   "98.00",  "0.00",  "0.00"),
    (("lots", "98.00 0.00 0.00 0.00"),         "98.00",   "98.00",  "0.00",  "0.00"),
]  # fmt: skip


def test_promotional_is_spent_before_paid_soonest_expiry_first_then_oldest(
    acct: Account,
) -> None:
    acct.run(SPENDING_ORDER)


PAID_OLDEST_FIRST: list[Row] = [
    (("credit paid", "3.00"),                  "3.00",   "3.00",  "0.00",  "0.00"),
    (("advance", "1h"),                        "3.00",   "3.00",  "0.00",  "0.00"),
    (("credit paid", "7.00"),                 "10.00",  "10.00",  "0.00",  "0.00"),
    (("debit", "sms1", "4.00"),                "6.00",   "6.00",  "0.00",  "0.00"),
    (("lots", "0.00 6.00"),                    "6.00",   "6.00",  "0.00",  "0.00"),
    (("credit promo", "2.00", "+1d"),          "8.00",   "6.00",  "2.00",  "0.00"),
    (("hold", "call1", "3.00"),                "5.00",   "6.00",  "2.00",  "3.00"),
    # the hold took the promotional 2.00 first: a 1.00 capture spends promotional money
    (("capture", "call1", "1.00"),             "7.00",   "6.00",  "1.00",  "0.00"),
    (("lots", "0.00 6.00 1.00"),               "7.00",   "6.00",  "1.00",  "0.00"),
]  # fmt: skip


def test_paid_lots_are_spent_oldest_first_and_holds_follow_the_same_order(
    acct: Account,
) -> None:
    acct.run(PAID_OLDEST_FIRST)


def test_soonest_expiry_first_holds_to_the_microsecond_in_any_year(acct: Account) -> None:
    # Past 2038 a float timestamp cannot tell these two instants apart; the order must.
    sooner = datetime.fromisoformat("2040-01-01T00:00:00.000002+00:00")
    later = sooner + timedelta(microseconds=1)
    for expires in (later, sooner):  # the later-expiring lot is the older one
        acct.c.ledger.add_credit(
            acct.id, LotKind.PROMOTIONAL, Money.parse("1.00"), expires_at=expires
        )
    acct.run(
        [
            (("debit", "sms1", "0.40"),            "1.60", "0.00", "1.60", "0.00"),
            (("lots", "1.00 0.60"),                "1.60", "0.00", "1.60", "0.00"),
        ]
    )  # fmt: skip


# -- holds -------------------------------------------------------------------------------------

HOLD_AND_PARTIAL_CAPTURE: list[Row] = [
    (("credit paid", "100.00"),               "100.00",  "100.00",  "0.00",  "0.00"),
    # a hold reduces available at once; paid stays until the call is captured
    (("hold", "call1", "15.00"),               "85.00",  "100.00",  "0.00", "15.00"),
    (("refused debit", "sms1", "85.01"),       "85.00",  "100.00",  "0.00", "15.00"),
    (("debit", "sms1", "5.00"),                "80.00",   "95.00",  "0.00", "15.00"),
    (("extend", "call1", "5.00"),              "75.00",   "95.00",  "0.00", "20.00"),
    # the call cost 12.50 of the 20.00 reserved: 7.50 comes back
    (("capture", "call1", "12.50"),            "82.50",   "82.50",  "0.00",  "0.00"),
    (("credit promo", "10.00", "+1d"),         "92.50",   "82.50", "10.00",  "0.00"),
    (("hold", "call2", "15.00"),               "77.50",   "82.50", "10.00", "15.00"),
    (("capture", "call2", "12.50"),            "80.00",   "80.00",  "0.00",  "0.00"),
    (("hold", "call3", "10.00"),               "70.00",   "80.00",  "0.00", "10.00"),
    (("capture", "call3", "10.00"),            "70.00",   "70.00",  "0.00",  "0.00"),
    (("hold", "call4", "10.00"),               "60.00",   "70.00",  "0.00", "10.00"),
    (("capture", "call4", "0.00"),             "70.00",   "70.00",  "0.00",  "0.00"),
]  # fmt: skip


def test_holds_reduce_available_and_partial_capture_releases_the_rest(acct: Account) -> None:
    acct.run(HOLD_AND_PARTIAL_CAPTURE)
    captures = acct.entries("capture")
    assert [fmt(-e.amount_micros) for e in captures] == ["12.50", "12.50", "10.00", "0.00"]


def test_extend_pushes_the_hold_expiry_from_now(acct: Account) -> None:
    acct.run(
        [
            (("credit paid", "10.00"),           "10.00", "10.00", "0.00", "0.00"),
            (("hold", "call1", "2.00", "2m"),     "8.00", "10.00", "0.00", "2.00"),
            (("advance", "90s"),                  "8.00", "10.00", "0.00", "2.00"),
            (("extend", "call1", "1.00", "2m"),   "7.00", "10.00", "0.00", "3.00"),
            # the first TTL has passed, the extended one has not
            (("advance", "90s"),                  "7.00", "10.00", "0.00", "3.00"),
            (("refused hold", "call2", "7.01"),   "7.00", "10.00", "0.00", "3.00"),
            (("advance", "30s"),                 "10.00", "10.00", "0.00", "0.00"),
        ]
    )  # fmt: skip
    (expired,) = acct.entries("hold_expired")
    assert from_micros(expired.created_at_us) == START + timedelta(seconds=90 + 120)


OVERRUN: list[Row] = [
    (("credit paid", "10.00"),                 "10.00",   "10.00",  "0.00",  "0.00"),
    (("hold", "call1", "10.00"),                "0.00",   "10.00",  "0.00", "10.00"),
    (("refused debit", "sms1", "0.01"),         "0.00",   "10.00",  "0.00", "10.00"),
    # the call ran over its hold: the excess is owed, explicitly
    (("capture", "call1", "12.50"),            "-2.50",   "-2.50",  "0.00",  "0.00"),
    (("refused hold", "call2", "0.01"),        "-2.50",   "-2.50",  "0.00",  "0.00"),
    (("refused debit", "sms2", "0.01"),        "-2.50",   "-2.50",  "0.00",  "0.00"),
    # a top-up settles what is owed first
    (("credit paid", "5.00"),                   "2.50",    "2.50",  "0.00",  "0.00"),
    (("lots", "0.00 2.50"),                     "2.50",    "2.50",  "0.00",  "0.00"),
    (("hold", "call2", "2.50"),                 "0.00",    "2.50",  "0.00",  "2.50"),
]  # fmt: skip


def test_capture_above_the_hold_is_an_overrun_settled_by_the_next_credit(
    acct: Account,
) -> None:
    acct.run(OVERRUN)
    (capture,) = acct.entries("capture")
    assert capture.amount_micros == -12_500_000
    assert capture.overdraft_delta_micros == 2_500_000
    assert capture.available_after_micros == -2_500_000
    credit = acct.entries("credit_paid")[-1]
    assert credit.amount_micros == 5_000_000 and credit.overdraft_delta_micros == -2_500_000


def test_overrun_with_free_money_left_spends_it_before_owing(acct: Account) -> None:
    acct.run(
        [
            (("credit paid", "10.00"),             "10.00", "10.00", "0.00", "0.00"),
            (("credit promo", "1.00", "+1d"),      "11.00", "10.00", "1.00", "0.00"),
            (("hold", "call1", "4.00"),             "7.00", "10.00", "1.00", "4.00"),
            (("capture", "call1", "12.00"),        "-1.00", "-1.00", "0.00", "0.00"),
            # promotional credit settles an overdraft too: free money never sits beside debt
            (("credit promo", "3.00", "+1d"),       "2.00",  "0.00", "2.00", "0.00"),
        ]
    )  # fmt: skip


def test_overrun_while_another_hold_is_open_is_settled_when_it_is_released(
    acct: Account,
) -> None:
    acct.run(
        [
            (("credit paid", "10.00"),             "10.00", "10.00", "0.00", "0.00"),
            (("hold", "call1", "4.00"),             "6.00", "10.00", "0.00", "4.00"),
            (("hold", "call2", "6.00"),             "0.00", "10.00", "0.00", "10.00"),
            (("capture", "call1", "5.00"),         "-1.00",  "5.00", "0.00", "6.00"),
            (("release", "call2"),                  "5.00",  "5.00", "0.00", "0.00"),
        ]
    )  # fmt: skip


RELEASE: list[Row] = [
    (("credit paid", "20.00"),                 "20.00",   "20.00",  "0.00",  "0.00"),
    (("credit promo", "5.00", "+1d"),          "25.00",   "20.00",  "5.00",  "0.00"),
    (("hold", "call1", "15.00"),               "10.00",   "20.00",  "5.00", "15.00"),
    (("release", "call1"),                     "25.00",   "20.00",  "5.00",  "0.00"),
    (("lots", "20.00 5.00"),                   "25.00",   "20.00",  "5.00",  "0.00"),
    # releasing again is a replay: the first answer, nothing moves
    (("release", "call1"),                     "25.00",   "20.00",  "5.00",  "0.00"),
]  # fmt: skip


def test_release_gives_the_whole_hold_back(acct: Account) -> None:
    acct.run(RELEASE)
    assert len(acct.entries("release")) == 1
    with pytest.raises(Conflict) as err:
        acct.do(("capture", "call1", "1.00"))
    assert err.value.code == "hold_closed"
    with pytest.raises(Conflict) as err:
        acct.do(("extend", "call1", "1.00"))
    assert err.value.code == "hold_closed"


HOLD_EXPIRY: list[Row] = [
    (("credit paid", "20.00"),                 "20.00",   "20.00",  "0.00",  "0.00"),
    (("hold", "call1", "15.00", "2m"),          "5.00",   "20.00",  "0.00", "15.00"),
    (("advance", "119s"),                       "5.00",   "20.00",  "0.00", "15.00"),
    # nobody closed the hold: it expires by itself at its TTL
    (("advance", "1s"),                        "20.00",   "20.00",  "0.00",  "0.00"),
    (("advance", "1h"),                        "20.00",   "20.00",  "0.00",  "0.00"),
    # the call's cost arrives late: charged once, from free money
    (("capture", "call1", "12.00"),             "8.00",    "8.00",  "0.00",  "0.00"),
    (("capture", "call1", "12.00"),             "8.00",    "8.00",  "0.00",  "0.00"),
]  # fmt: skip


def test_hold_expires_at_its_ttl_and_a_late_capture_is_charged_once(acct: Account) -> None:
    acct.run(HOLD_EXPIRY)
    (expired,) = acct.entries("hold_expired")
    assert from_micros(expired.created_at_us) == START + timedelta(minutes=2)
    assert expired.reserved_delta_micros == -15_000_000 and expired.amount_micros == 0
    (late,) = acct.entries("late_capture")
    assert late.amount_micros == -12_000_000
    with acct.c.db.read() as conn:
        hold = conn.execute(sa.select(holds).where(holds.c.reference == "call1")).one()
    assert (hold.status, hold.captured_micros) == ("expired", 12_000_000)
    assert hold.closed_at_us == to_micros(START + timedelta(minutes=2))
    with pytest.raises(Conflict) as err:
        acct.do(("capture", "call1", "12.01"))
    assert err.value.code == "idempotency_key_reused"
    with pytest.raises(Conflict) as err:
        acct.do(("release", "call1"))
    assert err.value.code == "hold_closed"


def test_a_hold_past_its_ttl_is_expired_even_before_the_sweeper_runs(acct: Account) -> None:
    """Outcomes never depend on the sweeper's timing: the clock moves past three holds'
    TTL with no due work run, and each hold command treats its hold as expired."""
    acct.run([
        (("credit paid", "100.00"),          "100.00", "100.00", "0.00",  "0.00"),
        (("hold", "late", "10.00", "1m"),     "90.00", "100.00", "0.00", "10.00"),
        (("hold", "ext", "10.00", "1m"),      "80.00", "100.00", "0.00", "20.00"),
        (("hold", "rel", "10.00", "1m"),      "70.00", "100.00", "0.00", "30.00"),
    ])  # fmt: skip
    acct.c.clock.advance(61)  # the clock alone: no sweeper, no scheduler
    with pytest.raises(Conflict) as err:
        acct.do(("extend", "ext", "5.00"))
    assert err.value.code == "hold_closed"
    late = acct.do(("capture", "late", "4.00"))
    assert isinstance(late, HoldResult) and late.status == "expired"
    released = acct.do(("release", "rel"))
    assert isinstance(released, HoldResult) and released.status == "expired"
    assert acct.figures() == ("86.00", "96.00", "0.00", "10.00")
    kinds = [e.kind for e in acct.entries()][-3:]
    assert kinds == ["hold_expired", "late_capture", "hold_expired"]
    assert acct.do(("release", "rel")) == released  # a replay answers the same
    acct.do(("advance", "0s"))  # the sweeper now expires only the one left open
    assert acct.figures() == ("96.00", "96.00", "0.00", "0.00")


def test_a_late_capture_beyond_available_is_an_overrun(acct: Account) -> None:
    acct.run(
        [
            (("credit paid", "10.00"),             "10.00", "10.00", "0.00",  "0.00"),
            (("hold", "call1", "10.00", "1m"),      "0.00", "10.00", "0.00", "10.00"),
            (("advance", "2m"),                    "10.00", "10.00", "0.00",  "0.00"),
            (("debit", "sms1", "8.00"),             "2.00",  "2.00", "0.00",  "0.00"),
            (("capture", "call1", "5.00"),         "-3.00", "-3.00", "0.00",  "0.00"),
            (("credit paid", "1.00"),              "-2.00", "-2.00", "0.00",  "0.00"),
        ]
    )  # fmt: skip


# -- promotional expiry ------------------------------------------------------------------------

PROMO_EXPIRY: list[Row] = [
    (("credit paid", "10.00"),                 "10.00",   "10.00",  "0.00",  "0.00"),
    (("credit promo", "5.00", "+1d"),          "15.00",   "10.00",  "5.00",  "0.00"),
    (("debit", "sms1", "2.00"),                "13.00",   "10.00",  "3.00",  "0.00"),
    (("advance", "23h"),                       "13.00",   "10.00",  "3.00",  "0.00"),
    # the unspent 3.00 is forfeited at the expiry instant, by a journal entry
    (("advance", "2h"),                        "10.00",   "10.00",  "0.00",  "0.00"),
    (("lots", "10.00 0.00"),                   "10.00",   "10.00",  "0.00",  "0.00"),
    # and never spent after it
    (("debit", "sms2", "1.00"),                 "9.00",    "9.00",  "0.00",  "0.00"),
    (("lots", "9.00 0.00"),                     "9.00",    "9.00",  "0.00",  "0.00"),
]  # fmt: skip


def test_promotional_credit_is_forfeited_at_its_expiry_with_a_journal_entry(
    acct: Account,
) -> None:
    acct.run(PROMO_EXPIRY)
    (forfeit,) = acct.forfeits()
    assert forfeit.amount_micros == -3_000_000
    assert from_micros(forfeit.created_at_us) == START + timedelta(days=1)
    assert forfeit.lot_id is not None
    # a forfeit is not usage
    b = acct.balance()
    assert (b.today_usage_micros, b.month_usage_micros) == (1_000_000, 3_000_000)


def test_expired_promotional_credit_is_never_spent_even_before_the_sweeper_runs(
    acct: Account,
) -> None:
    acct.run(
        [
            (("credit paid", "10.00"),             "10.00", "10.00", "0.00", "0.00"),
            (("credit promo", "5.00", "+1h"),      "15.00", "10.00", "5.00", "0.00"),
        ]
    )  # fmt: skip
    # the clock moves, but no sweeper runs: the next command forfeits first
    assert acct.c.test_clock is not None
    acct.c.test_clock.set(START + timedelta(hours=1))
    acct.do(("debit", "sms1", "1.00"))
    assert acct.lots() == ["9.00", "0.00"]
    (forfeit,) = acct.forfeits()
    assert forfeit.amount_micros == -5_000_000
    assert from_micros(forfeit.created_at_us) == START + timedelta(hours=1)
    assert acct.figures() == ("9.00", "9.00", "0.00", "0.00")


def test_a_forfeit_noticed_late_is_stamped_with_the_expiry_instant(acct: Account) -> None:
    """The server was down over the expiry: the next command forfeits, and the entry says
    when the credit expired (and its account-local day), not when it was noticed."""
    acct.run(
        [
            (("credit paid", "10.00"),             "10.00", "10.00", "0.00", "0.00"),
            (("credit promo", "5.00", "+1h"),      "15.00", "10.00", "5.00", "0.00"),
        ]
    )  # fmt: skip
    assert acct.c.test_clock is not None
    acct.c.test_clock.set(START + timedelta(days=3))  # no sweeper ran meanwhile
    acct.do(("debit", "sms1", "1.00"))
    (forfeit,) = acct.forfeits()
    assert from_micros(forfeit.created_at_us) == START + timedelta(hours=1)
    assert forfeit.local_date == "2026-11-28"  # 11:00 in Kolkata, the day it expired
    debit = acct.c.queries.ledger_page(acct.id, 1, None)[0]
    assert from_micros(debit.created_at_us) == START + timedelta(days=3)  # the rest: now
    assert acct.figures() == ("9.00", "9.00", "0.00", "0.00")


def test_reading_the_balance_after_expiry_shows_the_forfeit(acct: Account) -> None:
    acct.do(("credit promo", "5.00", "+1h"))
    assert acct.c.test_clock is not None
    acct.c.test_clock.set(START + timedelta(hours=1, microseconds=1))
    assert acct.figures() == ("0.00", "0.00", "0.00", "0.00")
    assert len(acct.forfeits()) == 1


def test_one_microsecond_before_expiry_promotional_credit_is_still_spendable(
    acct: Account,
) -> None:
    acct.do(("credit promo", "5.00", "+1h"))
    assert acct.c.test_clock is not None
    acct.c.test_clock.set(START + timedelta(hours=1) - timedelta(microseconds=1))
    acct.do(("debit", "sms1", "5.00"))
    assert acct.figures() == ("0.00", "0.00", "0.00", "0.00")
    assert acct.forfeits() == []


PROMO_RETURNED_AFTER_EXPIRY: list[Row] = [
    (("credit paid", "5.00"),                   "5.00",    "5.00",  "0.00",  "0.00"),
    (("credit promo", "10.00", "+1h"),         "15.00",    "5.00", "10.00",  "0.00"),
    (("hold", "call1", "8.00", "2h"),           "7.00",    "5.00", "10.00",  "8.00"),
    # the free 2.00 expires; the 8.00 reserved for the call stays reserved
    (("advance", "1h"),                         "5.00",    "5.00",  "8.00",  "8.00"),
    # the call failed: the 8.00 goes back to a lot that has expired, and is forfeited at once
    (("release", "call1"),                      "5.00",    "5.00",  "0.00",  "0.00"),
    (("lots", "5.00 0.00"),                     "5.00",    "5.00",  "0.00",  "0.00"),
]  # fmt: skip


def test_promotional_money_returned_to_an_expired_lot_is_forfeited_at_once(
    acct: Account,
) -> None:
    acct.run(PROMO_RETURNED_AFTER_EXPIRY)
    forfeits = acct.forfeits()
    assert [f.amount_micros for f in forfeits] == [-2_000_000, -8_000_000]
    assert from_micros(forfeits[0].created_at_us) == START + timedelta(hours=1)
    assert forfeits[1].created_at_us == forfeits[0].created_at_us  # the clock did not move


def test_promotional_money_returned_by_a_hold_expiry_after_the_lot_expired_is_forfeited(
    acct: Account,
) -> None:
    acct.run(
        [
            (("credit promo", "10.00", "+1h"),     "10.00", "0.00", "10.00",  "0.00"),
            (("hold", "call1", "10.00", "90m"),     "0.00", "0.00", "10.00", "10.00"),
            (("advance", "1h"),                     "0.00", "0.00", "10.00", "10.00"),
            (("advance", "30m"),                    "0.00", "0.00",  "0.00",  "0.00"),
            (("capture", "call1", "0.50"),         "-0.50", "-0.50", "0.00",  "0.00"),
        ]
    )  # fmt: skip
    (forfeit,) = acct.forfeits()
    assert from_micros(forfeit.created_at_us) == START + timedelta(minutes=90)


def test_capture_after_expiry_spends_only_what_was_reserved_and_forfeits_the_rest(
    acct: Account,
) -> None:
    acct.run(
        [
            (("credit paid", "5.00"),               "5.00", "5.00", "0.00",  "0.00"),
            (("credit promo", "10.00", "+1h"),     "15.00", "5.00", "10.00", "0.00"),
            (("hold", "call1", "8.00", "2h"),       "7.00", "5.00", "10.00", "8.00"),
            (("advance", "1h"),                     "5.00", "5.00", "8.00",  "8.00"),
            # the call was reserved before the expiry, so its cost comes from that money
            (("capture", "call1", "3.00"),          "5.00", "5.00", "0.00",  "0.00"),
        ]
    )  # fmt: skip
    assert [f.amount_micros for f in acct.forfeits()] == [-2_000_000, -5_000_000]


# -- refusals, overruns, replays ---------------------------------------------------------------


def test_a_refused_debit_changes_nothing(acct: Account) -> None:
    acct.do(("credit paid", "1.00"))
    entries = len(acct.entries())
    version = acct.version()
    with pytest.raises(PaymentRequired) as err:
        acct.c.ledger.debit(acct.id, "sms1", Money.parse("1.01"))
    assert err.value.code == "insufficient_balance"
    assert err.value.status == 402
    assert (len(acct.entries()), acct.version()) == (entries, version)
    assert acct.figures() == ("1.00", "1.00", "0.00", "0.00")
    # the reference was not used up by the refusal
    result = acct.c.ledger.debit(acct.id, "sms1", Money.parse("1.00"))
    assert isinstance(result, DebitResult) and result.available_after_micros == 0


def test_debit_with_allow_overrun_owes_the_shortfall(acct: Account) -> None:
    acct.run(
        [
            (("credit paid", "1.00"),               "1.00",  "1.00", "0.00", "0.00"),
            (("credit promo", "0.50", "+1d"),       "1.50",  "1.00", "0.50", "0.00"),
            (("debit overrun", "cdr1", "4.00"),    "-2.50", "-2.50", "0.00", "0.00"),
            (("debit overrun", "cdr2", "1.00"),    "-3.50", "-3.50", "0.00", "0.00"),
            (("credit paid", "10.00"),              "6.50",  "6.50", "0.00", "0.00"),
        ]
    )  # fmt: skip
    first, second = (
        acct.c.ledger.debit(acct.id, ref, Money.parse(amount), allow_overrun=True)
        for ref, amount in (("cdr1", "4.00"), ("cdr2", "1.00"))
    )
    assert (first.overrun_micros, first.available_after_micros) == (2_500_000, -2_500_000)
    assert (second.overrun_micros, second.available_after_micros) == (1_000_000, -3_500_000)
    assert acct.figures() == ("6.50", "6.50", "0.00", "0.00")


def test_replays_return_the_first_result_and_move_nothing(acct: Account) -> None:
    ledger, aid = acct.c.ledger, acct.id
    credit = ledger.add_credit(aid, LotKind.PAID, Money.parse("50.00"), idempotency_key="top1")
    promo_expiry = acct.now + timedelta(days=7)
    promo = ledger.add_credit(
        aid, LotKind.PROMOTIONAL, Money.parse("5.00"), expires_at=promo_expiry,
        idempotency_key="promo1", description="welcome",
    )  # fmt: skip
    hold = ledger.place_hold(aid, "call1", Money.parse("10.00"), 300)
    extend = ledger.extend_hold(aid, "call1", Money.parse("2.00"), 300, "1")
    debit = ledger.debit(aid, "sms1", Money.parse("0.25"))
    capture = ledger.capture_hold(aid, "call1", Money.parse("7.00"))
    hold2 = ledger.place_hold(aid, "call2", Money.parse("1.00"), 300)
    release = ledger.release_hold(aid, "call2")
    figures, version, entries = acct.figures(), acct.version(), len(acct.entries())
    assert figures == ("47.75", "47.75", "0.00", "0.00")

    acct.c.test_clock.advance(60)  # type: ignore[union-attr]
    replays: list[tuple[object, object]] = [
        (credit, ledger.add_credit(
            aid, LotKind.PAID, Money.parse("50.00"), idempotency_key="top1"
        )),
        (promo, ledger.add_credit(
            aid, LotKind.PROMOTIONAL, Money.parse("5.00"), expires_at=promo_expiry,
            idempotency_key="promo1", description="welcome",
        )),
        (hold, ledger.place_hold(aid, "call1", Money.parse("10.00"), 300)),
        (extend, ledger.extend_hold(aid, "call1", Money.parse("2.00"), 300, "1")),
        (debit, ledger.debit(aid, "sms1", Money.parse("0.25"))),
        (capture, ledger.capture_hold(aid, "call1", Money.parse("7.00"))),
        (hold2, ledger.place_hold(aid, "call2", Money.parse("1.00"), 300)),
        (release, ledger.release_hold(aid, "call2")),
    ]  # fmt: skip
    for first, again in replays:
        assert again == first
    assert isinstance(credit, CreditResult) and isinstance(hold, HoldResult)
    assert (acct.figures(), acct.version(), len(acct.entries())) == (figures, version, entries)


def test_same_key_with_a_different_payload_is_a_conflict(acct: Account) -> None:
    ledger, aid = acct.c.ledger, acct.id
    ledger.add_credit(aid, LotKind.PAID, Money.parse("50.00"), idempotency_key="top1")
    ledger.place_hold(aid, "call1", Money.parse("10.00"), 300)
    ledger.extend_hold(aid, "call1", Money.parse("2.00"), 300, "1")
    ledger.debit(aid, "sms1", Money.parse("0.25"))
    figures, version = acct.figures(), acct.version()
    conflicting: list[Callable[[], object]] = [
        lambda: ledger.add_credit(aid, LotKind.PAID, Money.parse("50.01"), idempotency_key="top1"),
        lambda: ledger.add_credit(
            aid, LotKind.PAID, Money.parse("50.00"), idempotency_key="top1", description="x"
        ),
        lambda: ledger.add_credit(
            aid, LotKind.PROMOTIONAL, Money.parse("50.00"), idempotency_key="top1",
            expires_at=acct.now + timedelta(days=1),
        ),
        lambda: ledger.place_hold(aid, "call1", Money.parse("10.01"), 300),
        lambda: ledger.place_hold(aid, "call1", Money.parse("10.00"), 301),
        lambda: ledger.extend_hold(aid, "call1", Money.parse("3.00"), 300, "1"),
        lambda: ledger.debit(aid, "sms1", Money.parse("0.26")),
        lambda: ledger.debit(aid, "sms1", Money.parse("0.25"), allow_overrun=True),
    ]  # fmt: skip
    for attempt in conflicting:
        with pytest.raises(Conflict) as err:
            attempt()
        assert err.value.code == "idempotency_key_reused"
    ledger.capture_hold(aid, "call1", Money.parse("3.00"))
    with pytest.raises(Conflict) as err:
        ledger.capture_hold(aid, "call1", Money.parse("4.00"))
    assert err.value.code == "idempotency_key_reused"
    assert acct.figures() == ("46.75", "46.75", "0.00", "0.00")
    assert acct.version() == version + 1
    assert figures == ("37.75", "49.75", "0.00", "12.00")


# -- usage in the account's time zone ------------------------------------------------------------

Usage = tuple[Step, str, str]  # step, today's usage, this month's usage

# START is 2026-11-28 10:00 in Asia/Kolkata (UTC+05:30)
USAGE_KOLKATA: list[Usage] = [
    # step                                   today     month
    (("credit paid", "100.00"),               "0.00",   "0.00"),
    (("debit", "sms1", "1.00"),               "1.00",   "1.00"),
    (("hold", "call1", "5.00"),               "1.00",   "1.00"),  # a hold is not usage
    (("capture", "call1", "2.50"),            "3.50",   "3.50"),
    (("hold", "call2", "5.00"),               "3.50",   "3.50"),
    (("release", "call2"),                    "3.50",   "3.50"),  # nor is a release
    (("advance", "839m"),                     "3.50",   "3.50"),  # 23:59 local
    (("debit", "sms2", "0.50"),               "4.00",   "4.00"),
    (("advance", "1m"),                       "0.00",   "4.00"),  # local midnight, 29 Nov
    (("debit", "sms3", "0.25"),               "0.25",   "4.25"),
    # UTC midnight is 05:30 local: not a new day here
    (("advance", "329m"),                     "0.25",   "4.25"),  # 05:29 local
    (("advance", "2m"),                       "0.25",   "4.25"),  # 05:31 local
    (("debit", "sms4", "0.25"),               "0.50",   "4.50"),
    # 30 Nov 23:59:59 local, then 1 Dec 00:00 local (30 Nov 18:30 UTC): a new month
    (("advance", "152939s"),                  "0.00",   "4.50"),
    (("debit", "sms5", "1.00"),               "1.00",   "5.50"),
    (("advance", "1s"),                       "0.00",   "0.00"),
    (("debit", "sms6", "2.00"),               "2.00",   "2.00"),
]  # fmt: skip


def run_usage(acct: Account, table: Sequence[Usage]) -> None:
    for number, (step, today, month) in enumerate(table, 1):
        acct.do(step)
        b = acct.balance()
        assert (fmt(b.today_usage_micros), fmt(b.month_usage_micros)) == (today, month), (
            f"after step {number} {step} at {acct.now.isoformat()}"
        )


def test_today_and_month_usage_roll_over_at_local_midnight_and_month_start(
    acct: Account,
) -> None:
    run_usage(acct, USAGE_KOLKATA)
    assert acct.now == datetime.fromisoformat("2026-11-30T18:30:00+00:00")


def test_usage_follows_each_accounts_own_time_zone(container: Container) -> None:
    # 04:30 UTC is 23:30 the day before in New York (UTC-5 in November)
    ny = Account.open(container, timezone="America/New_York")
    run_usage(
        ny,
        [
            (("credit paid", "10.00"),          "0.00", "0.00"),
            (("debit", "sms1", "1.00"),          "1.00", "1.00"),
            (("advance", "29m"),                 "1.00", "1.00"),  # 23:59 local, 27 Nov
            (("advance", "1m"),                  "0.00", "1.00"),  # 00:00 local, 28 Nov
            (("debit", "sms2", "2.00"),          "2.00", "3.00"),
        ],
    )  # fmt: skip
    assert ny.entries("debit")[0].local_date == "2026-11-27"
    assert ny.entries("debit")[1].local_date == "2026-11-28"


def test_a_late_capture_counts_on_the_day_it_is_charged(acct: Account) -> None:
    run_usage(
        acct,
        [
            (("credit paid", "10.00"),           "0.00", "0.00"),
            (("hold", "call1", "5.00", "1h"),     "0.00", "0.00"),
            (("advance", "14h"),                  "0.00", "0.00"),  # 29 Nov, 00:00 local
            (("capture", "call1", "4.00"),        "4.00", "4.00"),
        ],
    )  # fmt: skip
    assert [e.local_date for e in acct.entries("capture")] == ["2026-11-29"]


# -- verify finds corruption ---------------------------------------------------------------------


def test_verify_reports_a_corrupted_cached_balance(acct: Account) -> None:
    acct.run(HOLD_AND_PARTIAL_CAPTURE)
    assert verify(acct.c.db) == []
    with acct.c.db.write() as conn:
        conn.execute(
            balances.update()
            .where(balances.c.account_id == acct.id)
            .values(paid_micros=balances.c.paid_micros + 1)
        )
    problems = verify(acct.c.db)
    assert problems, "a corrupted balance must be reported"
    assert all(acct.id in p for p in problems)
    assert any("paid + promotional" in p for p in problems)
    assert any("paid (from lots)" in p for p in problems)
    assert verify(acct.c.db, account_id=acct.id) == problems
    # put it back so the books agree again
    with acct.c.db.write() as conn:
        conn.execute(
            balances.update()
            .where(balances.c.account_id == acct.id)
            .values(paid_micros=balances.c.paid_micros - 1)
        )
    assert verify(acct.c.db) == []

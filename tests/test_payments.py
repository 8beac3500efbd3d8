"""Payments and auto-recharge through the services, on both engines, under the test clock:
credit only when the gateway says succeeded, once per payment whatever is retried; one
auto-recharge per crossing; declines back off; timeouts retry with the same key; the daily
maximum holds; the books stay verifiable."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from usagewatch.adapters.db.schema import payments as payments_table
from usagewatch.adapters.payments import SimulatedGateway
from usagewatch.bootstrap import Container
from usagewatch.domain.errors import Conflict, UsageWatchError
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.domain.payments import AutoRechargeRule
from usagewatch.service.verify import verify

ACC = "acme"
NEXT_LOCAL_MIDNIGHT = 14 * 3600  # the test clock starts at 10:00 Asia/Kolkata


def m(text: str) -> Money:
    return Money.parse(text)


def gateway(c: Container) -> SimulatedGateway:
    assert isinstance(c.payments.gateway, SimulatedGateway)
    return c.payments.gateway


@pytest.fixture
def c(container: Container) -> Container:
    container.accounts.create_account(ACC, ACC)
    container.ledger.add_credit(ACC, LotKind.PAID, m("100.00"), idempotency_key="seed")
    return container


_seq = iter(range(1_000_000))


def spend(c: Container, amount: str) -> None:
    c.ledger.debit(ACC, f"use-{next(_seq)}", m(amount))


def available(c: Container) -> str:
    return Money(c.queries.balance(ACC).available_micros).format()


def autos(c: Container) -> list[tuple[str, str]]:
    """(status, amount) of the account's auto payments, oldest first."""
    rows = c.payments.list(ACC, 1000, None)
    return [(r.status, Money(r.amount_micros).format()) for r in reversed(rows) if r.kind == "auto"]


def events(c: Container) -> list[str]:
    return [n.row.event for n in reversed(c.notifications.list(ACC, 1000, None))]


def rule(threshold: str = "50.00", amount: str = "200.00", per_day: int = 3) -> AutoRechargeRule:
    return AutoRechargeRule(True, m(threshold), m(amount), per_day)


# -- manual payments ---------------------------------------------------------------------------
def test_a_payment_that_succeeds_adds_paid_credit_once(c: Container) -> None:
    payment = c.payments.pay(ACC, m("250.00"), "pay-1")
    assert (payment.status, payment.kind, payment.attempts) == ("succeeded", "manual", 1)
    assert payment.credit_lot_id is not None and payment.next_attempt_at_us is None
    assert available(c) == "350.00"
    replay = c.payments.pay(ACC, m("250.00"), "pay-1")
    assert (replay.id, replay.status, replay.credit_lot_id) == (
        payment.id,
        "succeeded",
        payment.credit_lot_id,
    )
    assert available(c) == "350.00" and len(gateway(c).charges) == 1 and gateway(c).calls == 1
    with pytest.raises(Conflict) as caught:
        c.payments.pay(ACC, m("251.00"), "pay-1")
    assert caught.value.code == "idempotency_key_reused"
    assert verify(c.db) == []


def test_a_declined_payment_adds_nothing(c: Container) -> None:
    gateway(c).outcome = "decline"
    payment = c.payments.pay(ACC, m("250.00"), "pay-1")
    assert (payment.status, payment.credit_lot_id) == ("declined", None)
    assert payment.error and "declined" in payment.error
    assert available(c) == "100.00" and gateway(c).charges == []
    c.scheduler.advance(3600)  # nothing left to do
    assert c.payments.get(ACC, payment.id).attempts == 1 and gateway(c).calls == 1
    assert verify(c.db) == []


def test_a_timed_out_payment_is_retried_with_its_key_until_it_succeeds(c: Container) -> None:
    gateway(c).outcome = "timeout"
    payment = c.payments.pay(ACC, m("250.00"), "pay-1")
    assert (payment.status, payment.attempts) == ("pending", 1)
    assert payment.next_attempt_at_us is not None
    assert c.test_clock is not None
    c.scheduler.advance(30)  # the first retry, still no answer
    assert c.payments.get(ACC, payment.id).attempts == 2
    assert available(c) == "100.00"
    gateway(c).outcome = "succeed"
    c.scheduler.advance(60)  # the second retry
    done = c.payments.get(ACC, payment.id)
    assert (done.status, done.attempts, done.error) == ("succeeded", 3, None)
    assert available(c) == "350.00"
    assert [ch.idempotency_key for ch in gateway(c).charges] == [payment.gateway_key]
    assert events(c) == ["payment_succeeded"]  # the requester saw only "pending"
    c.scheduler.advance(3600)
    assert gateway(c).calls == 3
    assert verify(c.db) == []


def test_a_payment_never_answered_fails_after_its_attempts(c: Container) -> None:
    gateway(c).outcome = "timeout"
    payment = c.payments.pay(ACC, m("10.00"), "pay-1")
    c.scheduler.advance(6 * 3600)
    failed = c.payments.get(ACC, payment.id)
    assert (failed.status, failed.attempts, failed.next_attempt_at_us) == ("failed", 8, None)
    assert failed.error and payment.gateway_key in failed.error
    assert gateway(c).calls == 8 and available(c) == "100.00"
    assert events(c) == ["payment_failed"]


def test_a_crash_between_credit_and_mark_is_repaired_without_crediting_twice(
    c: Container,
) -> None:
    """The gateway said succeeded and the credit was added, then the process died before the
    payment was marked: the job asks again (same key, same answer) and the credit's key
    makes the second add a replay."""
    gateway(c).outcome = "timeout"
    payment = c.payments.pay(ACC, m("40.00"), "pay-1")
    gateway(c).outcome = "succeed"
    result = gateway(c).charge(ACC, m("40.00"), payment.gateway_key)
    c.ledger.add_credit(  # what the dead process had done
        ACC,
        LotKind.PAID,
        m("40.00"),
        idempotency_key=f"payment:{payment.gateway_key}",
        description=f"payment pay_{payment.id}",
    )
    assert available(c) == "140.00"
    c.scheduler.advance(30)
    done = c.payments.get(ACC, payment.id)
    assert done.status == "succeeded" and available(c) == "140.00"
    assert done.gateway_reference == result.gateway_reference
    assert verify(c.db) == []


# -- auto-recharge -----------------------------------------------------------------------------
def test_one_recharge_per_crossing_and_credit_when_it_succeeds(c: Container) -> None:
    c.payments.put_rule(ACC, rule())
    assert autos(c) == []  # 100 is not below 50
    spend(c, "30.00")
    assert autos(c) == []
    spend(c, "30.00")  # 70 -> 40: crosses
    spend(c, "10.00")  # still below: it is on its way
    spend(c, "10.00")
    assert autos(c) == [("pending", "200.00")]
    view = c.payments.rule(ACC)
    assert view.pending_payment_id is not None and view.recharges_today == 1
    c.scheduler.run_due()
    assert autos(c) == [("succeeded", "200.00")]
    assert available(c) == "220.00"
    assert events(c) == ["auto_recharge_succeeded"]
    spend(c, "100.00")  # 120: not below
    assert len(autos(c)) == 1
    spend(c, "100.00")  # 20: the next crossing
    assert autos(c) == [("succeeded", "200.00"), ("pending", "200.00")]
    c.scheduler.run_due()
    assert available(c) == "220.00"
    assert len(gateway(c).charges) == 2
    assert verify(c.db) == []


def test_the_notice_says_what_happened(c: Container) -> None:
    c.payments.put_rule(ACC, rule())
    spend(c, "60.00")
    c.scheduler.run_due()
    notice = c.notifications.list(ACC, 10, None)[0].row
    assert notice.event == "auto_recharge_succeeded"
    assert "INR 200.00" in notice.message and "INR 240.00" in notice.message
    assert "INR 50.00" in notice.message
    assert notice.data["available_balance"] == "240.00"


def test_saving_a_rule_below_the_threshold_starts_a_recharge(c: Container) -> None:
    c.payments.put_rule(ACC, rule(threshold="150.00"))
    assert autos(c) == [("pending", "200.00")]
    c.payments.put_rule(ACC, rule(threshold="160.00"))  # saved again: still one
    assert autos(c) == [("pending", "200.00")]
    c.scheduler.run_due()
    assert available(c) == "300.00"


def test_a_disabled_rule_does_nothing(c: Container) -> None:
    c.payments.put_rule(ACC, AutoRechargeRule(False, m("50.00"), m("200.00"), 3))
    spend(c, "90.00")
    assert autos(c) == [] and c.payments.rule(ACC).rule is not None


def test_a_decline_backs_off_for_an_hour_then_tries_again(c: Container) -> None:
    gateway(c).outcome = "decline"
    c.payments.put_rule(ACC, rule())
    spend(c, "60.00")  # 40
    c.scheduler.run_due()
    assert autos(c) == [("declined", "200.00")]
    assert events(c) == ["auto_recharge_failed"]
    notice = c.notifications.list(ACC, 1, None)[0].row
    assert "declined" in notice.message and "Add Credits" in notice.message
    assert "INR 40.00" in notice.message
    assert c.payments.rule(ACC).paused_until_us is not None
    spend(c, "10.00")  # still below, backing off: nothing new
    assert len(autos(c)) == 1
    gateway(c).outcome = "succeed"
    c.scheduler.advance(3599)
    assert len(autos(c)) == 1
    c.scheduler.advance(1)  # the back-off ends: the job looks again, and it is below
    assert autos(c) == [("declined", "200.00"), ("succeeded", "200.00")]
    assert available(c) == "230.00" and c.payments.rule(ACC).paused_until_us is None
    assert verify(c.db) == []


def test_after_a_decline_a_top_up_and_a_new_crossing_try_at_once(c: Container) -> None:
    gateway(c).outcome = "decline"
    c.payments.put_rule(ACC, rule())
    spend(c, "60.00")
    c.scheduler.run_due()
    gateway(c).outcome = "succeed"
    c.ledger.add_credit(ACC, LotKind.PAID, m("100.00"))  # 140: above again
    assert len(autos(c)) == 1
    spend(c, "100.00")  # 40: a new crossing, backing off or not
    assert autos(c) == [("declined", "200.00"), ("pending", "200.00")]
    c.scheduler.run_due()
    assert available(c) == "240.00"


def test_the_daily_maximum_holds_until_the_next_local_day(c: Container) -> None:
    # A recharge too small to lift the balance above the threshold: each one that lands
    # starts the next, until the day's maximum.
    c.payments.put_rule(ACC, rule(threshold="1000.00", amount="10.00", per_day=2))
    c.scheduler.run_due()
    assert autos(c) == [("succeeded", "10.00"), ("succeeded", "10.00")]
    assert available(c) == "120.00"
    assert events(c)[-1] == "auto_recharge_limit_reached"
    spend(c, "5.00")
    spend(c, "5.00")
    assert len(autos(c)) == 2
    view = c.payments.rule(ACC)
    assert view.recharges_today == 2 and view.paused_until_us is not None
    c.scheduler.advance(NEXT_LOCAL_MIDNIGHT - 1)
    assert len(autos(c)) == 2
    c.scheduler.advance(1)  # a new local day: two more
    assert len(autos(c)) == 4 and available(c) == "130.00"
    assert events(c).count("auto_recharge_limit_reached") == 2
    assert verify(c.db) == []


def test_declines_do_not_count_towards_the_daily_maximum(c: Container) -> None:
    gateway(c).outcome = "decline"
    c.payments.put_rule(ACC, rule(per_day=1))
    spend(c, "60.00")
    c.scheduler.run_due()
    gateway(c).outcome = "succeed"
    c.payments.put_rule(ACC, rule(per_day=1))  # saving ends the back-off: try again now
    c.scheduler.run_due()
    assert autos(c) == [("declined", "200.00"), ("succeeded", "200.00")]


def test_an_unanswered_recharge_is_retried_then_succeeds_once(c: Container) -> None:
    gateway(c).outcome = "timeout"
    c.payments.put_rule(ACC, rule())
    spend(c, "60.00")
    c.scheduler.run_due()
    assert autos(c) == [("pending", "200.00")]
    spend(c, "10.00")  # on its way: no second one
    assert len(autos(c)) == 1
    gateway(c).outcome = "succeed"
    c.scheduler.advance(30)
    assert autos(c) == [("succeeded", "200.00")] and available(c) == "230.00"
    [payment] = c.payments.list(ACC, 10, None)[:1]
    assert payment.attempts == 2 and len(gateway(c).charges) == 1
    assert verify(c.db) == []


def test_a_charge_refused_for_money_does_not_trigger(c: Container) -> None:
    c.payments.put_rule(ACC, rule())
    with pytest.raises(UsageWatchError):
        spend(c, "100.01")  # refused: nothing moved, so no crossing
    assert autos(c) == []


def test_the_database_allows_one_pending_auto_recharge_per_account(c: Container) -> None:
    c.payments.put_rule(ACC, rule(threshold="150.00"))
    row: dict[str, Any] = {
        "account_id": ACC,
        "kind": "auto",
        "amount_micros": 1,
        "status": "pending",
        "attempts": 0,
        "gateway_key": "another",
        "local_date": "2026-11-28",
        "created_at_us": 0,
        "updated_at_us": 0,
        "next_attempt_at_us": 0,
    }
    with pytest.raises(sa.exc.IntegrityError), c.db.write() as conn:
        conn.execute(payments_table.insert().values(**row))


def test_verify_pairs_each_succeeded_payment_with_its_credit(c: Container) -> None:
    payment = c.payments.pay(ACC, m("25.00"), "pay-1")
    assert verify(c.db) == []
    with c.db.write() as conn:
        conn.execute(
            payments_table.update()
            .where(payments_table.c.id == payment.id)
            .values(amount_micros=26_000_000)
        )
    [problem] = verify(c.db)
    assert f"pay_{payment.id}" in problem

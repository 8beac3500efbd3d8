"""Auto-recharge decisions, retry delays, rule checks and the simulated gateway: pure, no
database. The decision table reads like the rule's documentation (README, "Auto-recharge")."""

from __future__ import annotations

import threading

import pytest

from usagewatch.adapters.payments import SimulatedGateway, gateway_from_settings
from usagewatch.domain.errors import Invalid
from usagewatch.domain.money import Money
from usagewatch.domain.payments import (
    AutoRechargeRule,
    GatewayStatus,
    Recharge,
    RechargeFacts,
    check_chargeable,
    check_rule,
    decide,
    retry_delay_seconds,
)

NOW = 1_000_000_000
LATER = NOW + 3_600_000_000
RULE = AutoRechargeRule(True, Money.parse("100.00"), Money.parse("500.00"), 2)

# before, after (available), paused_until, pending, started today -> decision
TABLE = [
    ("150.00", "120.00", None, False, 0, Recharge.NOT_BELOW),
    ("150.00", "100.00", None, False, 0, Recharge.NOT_BELOW),  # at the threshold: not below
    ("150.00", "99.99", None, False, 0, Recharge.START),  # a crossing
    ("99.99", "80.00", None, False, 0, Recharge.START),  # already below, nothing on its way
    ("150.00", "80.00", None, True, 0, Recharge.IN_FLIGHT),  # never two at once
    ("90.00", "80.00", None, True, 1, Recharge.IN_FLIGHT),
    ("90.00", "80.00", LATER, False, 1, Recharge.PAUSED),  # backing off after a decline
    ("150.00", "80.00", LATER, False, 1, Recharge.START),  # a top-up, then a new crossing
    ("90.00", "80.00", NOW, False, 1, Recharge.START),  # the back-off has ended
    ("90.00", "80.00", None, False, 2, Recharge.DAILY_MAX),
    ("150.00", "80.00", LATER, False, 2, Recharge.DAILY_MAX),  # the maximum holds regardless
    ("90.00", "-5.00", None, False, 1, Recharge.START),  # below zero (an overrun) too
]


@pytest.mark.parametrize(("before", "after", "paused", "pending", "today", "expected"), TABLE)
def test_when_a_recharge_starts(
    before: str, after: str, paused: int | None, pending: bool, today: int, expected: Recharge
) -> None:
    facts = RechargeFacts(
        rule=RULE,
        available_before=Money.parse(before),
        available_after=Money.parse(after),
        paused_until_us=paused,
        now_us=NOW,
        pending=pending,
        started_today=today,
    )
    assert decide(facts) is expected


def test_a_disabled_rule_never_starts_one() -> None:
    rule = AutoRechargeRule(False, Money.parse("100.00"), Money.parse("500.00"), 2)
    facts = RechargeFacts(rule, Money.parse("150"), Money.parse("0"), None, NOW, False, 0)
    assert decide(facts) is Recharge.DISABLED


def test_retry_delays_double_up_to_an_hour() -> None:
    assert [retry_delay_seconds(n, 30) for n in range(1, 10)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip
    assert retry_delay_seconds(1000, 30) == 3600


@pytest.mark.parametrize(
    ("threshold", "amount", "per_day", "code", "field"),
    [
        ("0", "10", 3, "amount_not_positive", "threshold"),
        ("-1", "10", 3, "amount_not_positive", "threshold"),
        ("10", "0", 3, "amount_not_positive", "amount"),
        ("10", "-0.000001", 3, "amount_not_positive", "amount"),
        ("10", "1000000000.000001", 3, "amount_too_large", "amount"),
        ("1000000000000.000001", "10", 3, "amount_too_large", "threshold"),
        ("10", "10", 0, "invalid_max_recharges_per_day", "max_recharges_per_day"),
        ("10", "10", 101, "invalid_max_recharges_per_day", "max_recharges_per_day"),
    ],
)
def test_rules_that_make_no_sense_are_refused(
    threshold: str, amount: str, per_day: int, code: str, field: str
) -> None:
    rule = AutoRechargeRule(True, Money.parse(threshold), Money.parse(amount), per_day)
    with pytest.raises(Invalid) as caught:
        check_rule(rule)
    assert (caught.value.code, caught.value.field) == (code, field)


def test_a_sensible_rule_passes() -> None:
    rule = AutoRechargeRule(True, Money.parse("0.000001"), Money.parse("1000000000"), 100)
    assert check_rule(rule) is rule


# -- the simulated gateway --------------------------------------------------------------------
def test_the_simulated_gateway_charges_a_key_once() -> None:
    gateway = SimulatedGateway("succeed")
    first = gateway.charge("acme", Money.parse("10"), "k1")
    again = gateway.charge("acme", Money.parse("10"), "k1")
    assert first.status is GatewayStatus.SUCCEEDED and again == first
    assert first.gateway_reference and first.gateway_reference.startswith("sim_ch_")
    assert len(gateway.charges) == 1 and gateway.calls == 2
    gateway.outcome = "decline"  # a final answer stays final
    assert gateway.charge("acme", Money.parse("10"), "k1") == first
    other = gateway.charge("acme", Money.parse("11"), "k1")  # same key, another charge
    assert other.status is GatewayStatus.DECLINED and len(gateway.charges) == 1


def test_a_timed_out_key_is_decided_when_asked_again() -> None:
    gateway = SimulatedGateway("timeout")
    assert gateway.charge("acme", Money.parse("10"), "k").status is GatewayStatus.PENDING
    assert gateway.charges == []
    gateway.outcome = "succeed"
    assert gateway.charge("acme", Money.parse("10"), "k").status is GatewayStatus.SUCCEEDED
    assert gateway.charge("acme", Money.parse("10"), "k").status is GatewayStatus.SUCCEEDED
    assert len(gateway.charges) == 1


def test_a_declined_key_stays_declined() -> None:
    gateway = SimulatedGateway("decline")
    declined = gateway.charge("acme", Money.parse("10"), "k")
    assert declined.status is GatewayStatus.DECLINED and "declined" in declined.message
    gateway.outcome = "succeed"
    assert gateway.charge("acme", Money.parse("10"), "k") == declined
    assert gateway.charges == []


def test_concurrent_calls_with_one_key_charge_once() -> None:
    gateway = SimulatedGateway("succeed")
    threads = [
        threading.Thread(target=gateway.charge, args=("acme", Money.parse("5"), "same"))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(gateway.charges) == 1 and gateway.calls == 16


def test_gateways_from_settings() -> None:
    assert isinstance(gateway_from_settings("simulated", "decline"), SimulatedGateway)
    with pytest.raises(ValueError):
        gateway_from_settings("acme-pay", "succeed")
    with pytest.raises(ValueError):
        SimulatedGateway("maybe")


@pytest.mark.parametrize(
    ("currency", "ok", "finer"),
    [("INR", "10.01", "10.001"), ("JPY", "100", "100.5"), ("KWD", "1.005", "1.0005")],
)
def test_a_card_is_charged_in_whole_minor_units(currency: str, ok: str, finer: str) -> None:
    assert check_chargeable(Money.parse(ok), currency) == Money.parse(ok)
    with pytest.raises(Invalid) as refused:
        check_chargeable(Money.parse(finer), currency)
    assert refused.value.code == "amount_finer_than_currency"

"""Payments and auto-recharge: the payment gateway port, the auto-recharge rule and the pure
decisions around it (when a recharge starts, when a payment is tried again).

Nothing here talks to a database or a network: the service layer reads the facts under the
account lock, asks these functions, and writes what they decide.

A payment is one charge intent towards the gateway. It carries one gateway idempotency key
for its whole life: every retry of it (after a timeout) sends the same key, so the gateway
charges it at most once. A new attempt to take money (the next auto-recharge after a
decline) is a new payment with a new key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from usagewatch.domain.errors import Invalid
from usagewatch.domain.money import AMOUNT_MICROS_MAX, BALANCE_MICROS_MAX, Money

RECHARGES_PER_DAY_MAX = 100
RECHARGES_PER_DAY_DEFAULT = 3
RETRY_DELAY_SECONDS_MAX = 3600


class PaymentKind(StrEnum):
    MANUAL = "manual"  # "Add Credits": POST …/payments
    AUTO = "auto"  # started by the auto-recharge rule


class PaymentStatus(StrEnum):
    PENDING = "pending"  # sent (or about to be sent); the gateway has not given a final answer
    SUCCEEDED = "succeeded"  # charged, and the paid credit added
    DECLINED = "declined"  # the gateway refused it; nothing was charged
    FAILED = "failed"  # no final answer after every retry; reconcile with the provider


class GatewayStatus(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    PENDING = "pending"  # a timeout, or the provider is still processing: ask again later


@dataclass(frozen=True, slots=True)
class GatewayResult:
    status: GatewayStatus
    gateway_reference: str | None  # the provider's id of the charge, when it has one
    message: str  # why, in words a billing person can act on (shown in notices)


class PaymentGateway(Protocol):
    """The port a payment provider's adapter implements (the built-in one is
    `usagewatch.adapters.payments.SimulatedGateway`).

    `charge` takes `amount` from the account's stored payment method and answers:
    - `succeeded`: the money was taken (a final answer);
    - `declined`: the provider refused it, nothing was taken (a final answer; `message`
      says why: card expired, insufficient funds, ...);
    - `pending`: no final answer yet (the provider is still processing, or the call timed
      out). usagewatch asks again later with the same `idempotency_key`.

    The adapter MUST honour `idempotency_key`: a second call with a key already seen returns
    the first call's final answer and never charges again (providers such as Stripe, Adyen
    or Razorpay accept such a key per request). A network error or timeout may be raised
    as an exception or returned as `pending`: both mean "unknown, ask again". The adapter
    never raises for a decline. It is called outside any database transaction.
    """

    def charge(self, account_id: str, amount: Money, idempotency_key: str) -> GatewayResult: ...


# -- the auto-recharge rule ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AutoRechargeRule:
    enabled: bool
    threshold: Money  # recharge when available falls below this
    amount: Money  # paid credit bought per recharge
    max_recharges_per_day: int = RECHARGES_PER_DAY_DEFAULT  # account-local day


# ISO 4217 minor units of the currencies that do not use two decimals (the rest use two).
_MINOR_UNITS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}


def check_chargeable(amount: Money, currency: str, field: str = "amount") -> Money:
    """A card is charged in whole minor units of its currency (INR: paise): an amount to
    charge that is finer is refused, not rounded (balances and prices may be finer)."""
    step = 10 ** (6 - _MINOR_UNITS.get(currency, 2))
    if amount.micros % step:
        raise Invalid(
            "amount_finer_than_currency",
            f"{currency} is charged in steps of {Money(step).format()}; {amount.format()} is finer",
            field,
        )
    return amount


def check_rule(rule: AutoRechargeRule) -> AutoRechargeRule:
    """422 for a rule that makes no sense; returns it unchanged."""
    if not rule.threshold.is_positive():
        raise Invalid("amount_not_positive", "threshold must be greater than zero", "threshold")
    if rule.threshold.micros > BALANCE_MICROS_MAX:
        raise Invalid("amount_too_large", "threshold is too large", "threshold")
    if not rule.amount.is_positive():
        raise Invalid("amount_not_positive", "amount must be greater than zero", "amount")
    if rule.amount.micros > AMOUNT_MICROS_MAX:
        raise Invalid("amount_too_large", "amount exceeds 1,000,000,000", "amount")
    if not 1 <= rule.max_recharges_per_day <= RECHARGES_PER_DAY_MAX:
        raise Invalid(
            "invalid_max_recharges_per_day",
            f"max_recharges_per_day is a whole number from 1 to {RECHARGES_PER_DAY_MAX} "
            "(to stop recharging, set enabled to false)",
            "max_recharges_per_day",
        )
    return rule


@dataclass(frozen=True, slots=True)
class RechargeFacts:
    """What the decision needs, read under the account lock."""

    rule: AutoRechargeRule
    available_before: Money  # when the command began (equal to after outside a charge)
    available_after: Money
    paused_until_us: int | None  # a decline's back-off, or the day's maximum reached
    now_us: int
    pending: bool  # an auto recharge is already on its way
    started_today: int  # auto recharges of this account-local day that were not declined


class Recharge(StrEnum):
    START = "start"
    NOT_BELOW = "not_below"  # nothing to do
    DISABLED = "disabled"
    IN_FLIGHT = "in_flight"  # one is on its way; the next starts when it has landed
    PAUSED = "paused"  # backing off after a decline (or the day's maximum)
    DAILY_MAX = "daily_max"  # the day's maximum is reached: pause until the next local day


def decide(f: RechargeFacts) -> Recharge:
    """Should an auto recharge start now?

    Level-triggered, one at a time: whenever money moved and available is below the
    threshold, a recharge starts unless one is already on its way (its money would lift the
    balance; if it will not lift it above the threshold, the next one starts once it has
    landed), the rule is backing off after a decline, or the day's maximum is reached.
    A back-off ends early at a new crossing (available at or above the threshold before the
    command, below after): only a top-up can have lifted it there since the decline.
    """
    if not f.rule.enabled:
        return Recharge.DISABLED
    threshold = f.rule.threshold
    if f.available_after >= threshold:
        return Recharge.NOT_BELOW
    if f.pending:
        return Recharge.IN_FLIGHT
    crossing = f.available_before >= threshold
    if f.paused_until_us is not None and f.paused_until_us > f.now_us and not crossing:
        return Recharge.PAUSED
    if f.started_today >= f.rule.max_recharges_per_day:
        return Recharge.DAILY_MAX
    return Recharge.START


def retry_delay_seconds(attempts: int, base_seconds: int) -> int:
    """How long after its `attempts`-th gateway call a pending payment is asked again:
    base, 2 x base, 4 x base, ... at most an hour."""
    assert attempts >= 1 and base_seconds >= 1
    delay: int = base_seconds * 2 ** min(attempts - 1, 20)
    return min(delay, RETRY_DELAY_SECONDS_MAX)

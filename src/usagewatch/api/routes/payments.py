"""Payments ("Add Credits" through the payment gateway) and the auto-recharge rule."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, Field

from usagewatch.adapters.db.payments_store import PaymentRow
from usagewatch.api.auth import MANAGE, READ, allow, container
from usagewatch.api.pagination import (
    after_param,
    decode_int_cursor,
    fetch_size,
    limit_param,
    page,
)
from usagewatch.api.schemas import MoneyIn, MoneyOut, Strict, instant, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.domain.errors import Malformed
from usagewatch.domain.payments import RECHARGES_PER_DAY_DEFAULT, AutoRechargeRule
from usagewatch.service.payments import RuleView, parse_public_id, public_id

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["payments and auto-recharge"])
IDEMPOTENCY_KEY_LENGTH_MAX = 255


# -- payments --------------------------------------------------------------------------------
class PaymentIn(Strict):
    amount: MoneyIn = Field(description="paid credit to buy, in the account's currency")


class PaymentOut(BaseModel):
    payment_id: str
    kind: Literal["manual", "auto"] = Field(description="manual (Add Credits) or auto-recharge")
    amount: MoneyOut
    status: Literal["pending", "succeeded", "declined", "failed"]
    credit_id: str | None = Field(description="the paid credit lot, once succeeded")
    attempts: int = Field(description="gateway calls so far")
    error: str | None = Field(description="why it was declined or failed; the last problem")
    gateway_reference: str | None = Field(description="the provider's id of the charge")
    gateway_idempotency_key: str = Field(description="the key sent with every gateway call")
    next_attempt_at: str | None = Field(description="when a pending payment is asked again")
    created_at: str
    updated_at: str


def payment_out(row: PaymentRow) -> PaymentOut:
    return PaymentOut(
        payment_id=public_id(row.id),
        kind=row.kind,
        amount=money(row.amount_micros),
        status=row.status,
        credit_id=row.credit_lot_id,
        attempts=row.attempts,
        error=row.error,
        gateway_reference=row.gateway_reference,
        gateway_idempotency_key=row.gateway_key,
        next_attempt_at=instant(row.next_attempt_at_us),
        created_at=instant(row.created_at_us) or "",
        updated_at=instant(row.updated_at_us) or "",
    )


def _required_key(value: str | None) -> str:
    if value is None:
        raise Malformed(
            "missing_idempotency_key", "send an Idempotency-Key header with every payment"
        )
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise Malformed("invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
    return value


@router.post(
    "/payments",
    status_code=201,
    response_model=PaymentOut,
    summary="Add Credits: charge the payment method (owner, admin)",
    description="Charges the account's payment method through the payment gateway and adds "
    "paid credit only when the charge succeeds. `status` is `succeeded` (with `credit_id`), "
    "`declined` (nothing charged; `error` says why) or `pending` (the gateway has not "
    "answered yet: it is asked again with the same key, and the outcome appears in `GET "
    "…/payments`). The `Idempotency-Key` header is required: a replay with the same body "
    "answers with the payment as it stands now and charges nothing; the same key with "
    "another amount is a 409.",
)
def create_payment(
    account_id: str,
    body: PaymentIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> PaymentOut:
    key = _required_key(idempotency_key)
    return payment_out(c.payments.pay(account_id, body.amount, key))


@router.get(
    "/payments",
    summary="Manual and automatic payments, newest first, with their outcome",
)
def list_payments(
    account_id: str,
    limit: int = Depends(limit_param),
    after: str | None = Depends(after_param),
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> dict[str, Any]:
    found = c.payments.list(account_id, fetch_size(limit), decode_int_cursor(after))
    rows, cursor = page(found, limit, lambda row: row.id)
    return {"data": [payment_out(row) for row in rows], "next_cursor": cursor}


@router.get("/payments/{payment_id}", response_model=PaymentOut, summary="A payment")
def get_payment(
    account_id: str,
    payment_id: str,
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> PaymentOut:
    return payment_out(c.payments.get(account_id, parse_public_id(payment_id)))


# -- auto-recharge ---------------------------------------------------------------------------
class AutoRechargeIn(Strict):
    enabled: bool
    threshold: MoneyIn = Field(description="recharge when the available balance falls below")
    amount: MoneyIn = Field(description="paid credit bought by each recharge")
    max_recharges_per_day: int = Field(
        RECHARGES_PER_DAY_DEFAULT, description="1-100, per account-local day"
    )


class AutoRechargeOut(BaseModel):
    enabled: bool
    threshold: MoneyOut | None = Field(description="null until a rule is saved")
    amount: MoneyOut | None
    max_recharges_per_day: int
    recharges_today: int = Field(description="auto-recharges of today not declined")
    pending_payment_id: str | None = Field(description="the auto-recharge on its way, if any")
    paused_until: str | None = Field(
        description="no new auto-recharge before this (after a decline, or the daily maximum)"
    )
    updated_at: str | None


def auto_recharge_out(view: RuleView) -> AutoRechargeOut:
    rule = view.rule
    return AutoRechargeOut(
        enabled=rule.enabled if rule else False,
        threshold=rule.threshold.format() if rule else None,
        amount=rule.amount.format() if rule else None,
        max_recharges_per_day=rule.max_recharges_per_day if rule else RECHARGES_PER_DAY_DEFAULT,
        recharges_today=view.recharges_today,
        pending_payment_id=public_id(view.pending_payment_id)
        if view.pending_payment_id is not None
        else None,
        paused_until=instant(view.paused_until_us),
        updated_at=instant(view.updated_at_us),
    )


@router.get("/auto-recharge", response_model=AutoRechargeOut, summary="The auto-recharge rule")
def get_auto_recharge(
    account_id: str, _: Principal = Depends(allow(READ)), c: Container = Depends(container)
) -> AutoRechargeOut:
    return auto_recharge_out(c.payments.rule(account_id))


@router.put(
    "/auto-recharge",
    response_model=AutoRechargeOut,
    summary="Set the auto-recharge rule (owner, admin)",
    description="When the available balance falls below `threshold`, `amount` of paid "
    "credit is bought through the payment gateway, at most `max_recharges_per_day` times "
    "per account-local day, one at a time. Applies at once: saved enabled while the "
    "balance is below the threshold, a recharge starts now. Saving ends a back-off after a "
    "decline.",
)
def put_auto_recharge(
    account_id: str,
    body: AutoRechargeIn,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> AutoRechargeOut:
    rule = AutoRechargeRule(
        enabled=body.enabled,
        threshold=body.threshold,
        amount=body.amount,
        max_recharges_per_day=body.max_recharges_per_day,
    )
    return auto_recharge_out(c.payments.put_rule(account_id, rule))

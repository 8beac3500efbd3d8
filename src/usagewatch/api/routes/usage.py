"""Rates and usage: what things cost, and charging SMS as they are sent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from usagewatch.api.auth import OPERATOR, READ, allow, container
from usagewatch.api.schemas import MoneyIn, MoneyOut, Strict, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.rating import RateCard
from usagewatch.service.rates import format_rates
from usagewatch.service.usage import SmsResult

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["rates and usage"])
PLATFORM = frozenset({Role.PLATFORM})


# -- rates -----------------------------------------------------------------------------------
class VoiceRatesIn(Strict):
    pulse_seconds: int | None = Field(None, ge=1, le=3600)
    outbound_per_pulse: MoneyIn | None = None
    inbound_per_pulse: MoneyIn | None = None


class SmsRatesIn(Strict):
    transactional: MoneyIn | None = None
    promotional: MoneyIn | None = None
    service: MoneyIn | None = None


class WhatsAppRatesIn(Strict):
    marketing: MoneyIn | None = None
    utility: MoneyIn | None = None
    authentication: MoneyIn | None = None
    service: MoneyIn | None = None


class RatesIn(Strict):
    voice: VoiceRatesIn | None = None
    sms: SmsRatesIn | None = None
    whatsapp: WhatsAppRatesIn | None = None
    number_rental_monthly: MoneyIn | None = None
    agent_seat_monthly: MoneyIn | None = None


def _rates_out(card: RateCard) -> dict[str, Any]:
    return format_rates(card.as_dict())


@router.get("/rates", summary="The account's rate card (platform defaults where unset)")
def get_rates(
    account_id: str, _: Principal = Depends(allow(READ)), c: Container = Depends(container)
) -> dict[str, Any]:
    c.accounts.get_account(account_id)
    return _rates_out(c.rates.card(account_id))


@router.put(
    "/rates",
    summary="Set the account's prices (admin)",
    description="The body becomes the account's overrides: entries left out use the "
    "platform defaults. Prices are per pulse, per SMS unit, per conversation, per month.",
)
def put_rates(
    account_id: str,
    body: RatesIn,
    _: Principal = Depends(allow(OPERATOR)),
    c: Container = Depends(container),
) -> dict[str, Any]:
    overrides = body.model_dump(exclude_none=True)
    return _rates_out(c.rates.replace_overrides(account_id, overrides))


# -- SMS -------------------------------------------------------------------------------------
class SmsIn(Strict):
    sms_sid: str = Field(min_length=1, max_length=128)
    type: str = Field(description="transactional, promotional or service")
    to: str = Field(min_length=1, max_length=32)
    from_: str | None = Field(None, alias="from", max_length=32)
    body: str | None = Field(None, description="units follow GSM-7/UCS-2 segmentation")
    units: int | None = Field(None, description="instead of body")
    consumer: str | None = Field(None, max_length=128)
    campaign_id: str | None = Field(None, max_length=64)


class SmsOut(BaseModel):
    sms_sid: str
    type: str
    units: int
    price: MoneyOut
    status: str


class SmsStatusIn(Strict):
    status: str


def _sms_out(result: SmsResult) -> SmsOut:
    return SmsOut(
        sms_sid=result.sms_sid,
        type=result.sms_type,
        units=result.units,
        price=money(result.price_micros),
        status=result.status,
    )


@router.post(
    "/sms",
    status_code=201,
    response_model=SmsOut,
    summary="Charge an outbound SMS (platform)",
    description="402 `insufficient_balance` when the available balance cannot cover it. "
    "The sms_sid makes it idempotent.",
)
def charge_sms(
    account_id: str,
    body: SmsIn,
    _: Principal = Depends(allow(PLATFORM)),
    c: Container = Depends(container),
) -> SmsOut:
    result = c.usage.charge_sms(
        account_id,
        body.sms_sid,
        body.type,
        to=body.to,
        from_=body.from_,
        body=body.body,
        units=body.units,
        consumer=body.consumer,
        campaign_id=body.campaign_id,
    )
    return _sms_out(result)


@router.post(
    "/sms/{sms_sid}/status", response_model=SmsOut, summary="Record an SMS delivery report"
)
def sms_status(
    account_id: str,
    sms_sid: str,
    body: SmsStatusIn,
    _: Principal = Depends(allow(PLATFORM)),
    c: Container = Depends(container),
) -> SmsOut:
    return _sms_out(c.usage.sms_status(account_id, sms_sid, body.status))

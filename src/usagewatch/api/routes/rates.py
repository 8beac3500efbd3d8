"""Rate cards: what things cost (platform defaults under per-account overrides)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import Field

from usagewatch.api.auth import OPERATOR, READ, allow, container
from usagewatch.api.schemas import MoneyIn, Strict
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.domain.rating import RateCard
from usagewatch.service.rates import format_rates

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["rates"])


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

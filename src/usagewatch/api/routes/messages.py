"""SMS and WhatsApp conversations, charged as they are sent."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from usagewatch.api.auth import container, container_of, platform_only
from usagewatch.api.lean import Body, in_thread, respond
from usagewatch.api.schemas import MoneyOut, Strict, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.service.usage import SmsResult

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["messages"])
# The charging routes are `async def`: they check the input on the event loop and hand the
# charge to the ledger, which sends it from the loop when it can and otherwise runs it in a
# worker thread (LedgerService.run_charge_async); a plain `def` route would cost two thread
# hops more (the call, then validating the response model). They read their body and write
# their response themselves (api/lean.py).


# -- SMS -------------------------------------------------------------------------------------
class SmsIn(Strict):
    sms_sid: str = Field(min_length=1, max_length=128)
    type: str = Field(description="transactional, promotional or service")
    to: str = Field(min_length=1, max_length=32, description="an optional '+' and 3-15 digits")
    from_: str | None = Field(
        None,
        alias="from",
        max_length=32,
        description="a number like `to`, or an alphanumeric sender ID (1-11 characters)",
    )
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


SMS_IN = Body(SmsIn)


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
    description="402 with the denying code when a limit does not allow it: "
    "`insufficient_balance`, `daily_cap_reached`, `weekly_cap_reached`, `monthly_cap_reached`, "
    "`campaign_budget_exhausted`, `campaign_paused`. The sms_sid makes it idempotent. "
    "422 `invalid_number` when `to` or `from` is not a number (or `from` a sender ID).",
    openapi_extra=SMS_IN.openapi,
)
async def charge_sms(account_id: str, request: Request) -> Response:
    body = await SMS_IN.read(request, account_id, platform_only)
    c = container_of(request)
    charge = c.usage.sms_charge(
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
    result = await c.ledger.run_charge_async(charge, in_thread)
    return respond(request, _sms_out(result))


@router.post(
    "/sms/{sms_sid}/status", response_model=SmsOut, summary="Record an SMS delivery report"
)
def sms_status(
    account_id: str,
    sms_sid: str,
    body: SmsStatusIn,
    _: Principal = Depends(platform_only),
    c: Container = Depends(container),
) -> SmsOut:
    return _sms_out(c.usage.sms_status(account_id, sms_sid, body.status))


# -- WhatsApp --------------------------------------------------------------------------------
class ConversationIn(Strict):
    conversation_id: str = Field(min_length=1, max_length=128)
    category: str = Field(description="marketing, utility, authentication or service")
    consumer: str | None = Field(None, max_length=128)
    campaign_id: str | None = Field(None, max_length=64)


CONVERSATION_IN = Body(ConversationIn)


class ConversationOut(BaseModel):
    conversation_id: str
    category: str
    price: MoneyOut


@router.post(
    "/whatsapp/conversations",
    status_code=201,
    response_model=ConversationOut,
    summary="Charge a WhatsApp conversation (platform)",
    description="Priced by category; 402 with the denying code when a limit does not allow "
    "it (as for SMS). The conversation_id makes it idempotent.",
    openapi_extra=CONVERSATION_IN.openapi,
)
async def charge_conversation(account_id: str, request: Request) -> Response:
    body = await CONVERSATION_IN.read(request, account_id, platform_only)
    c = container_of(request)
    charge = c.usage.whatsapp_charge(
        account_id,
        body.conversation_id,
        body.category,
        consumer=body.consumer,
        campaign_id=body.campaign_id,
    )
    result = await c.ledger.run_charge_async(charge, in_thread)
    out = ConversationOut(
        conversation_id=result.conversation_id,
        category=result.category,
        price=money(result.price_micros),
    )
    return respond(request, out)

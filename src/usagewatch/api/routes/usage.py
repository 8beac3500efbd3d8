"""Rates and usage: what things cost, and charging SMS as they are sent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from usagewatch.adapters.db.usage_store import UsageRecord
from usagewatch.api.auth import MANAGE, OPERATOR, READ, allow, container
from usagewatch.api.pagination import decode_int_cursor, encode_cursor, limit_param
from usagewatch.api.schemas import InstantIn, MoneyIn, MoneyOut, Strict, instant, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.rating import RateCard
from usagewatch.service.calls import CallResult
from usagewatch.service.rates import format_rates
from usagewatch.service.subscriptions import SubscriptionView
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


# -- calls -----------------------------------------------------------------------------------
class CallIn(Strict):
    call_sid: str = Field(min_length=1, max_length=128)
    direction: str = Field(description="outbound or inbound")
    from_: str | None = Field(None, alias="from", max_length=32)
    to: str | None = Field(None, max_length=32)
    consumer: str | None = Field(None, max_length=128)
    campaign_id: str | None = Field(None, max_length=64)


class CallEndIn(Strict):
    status: str = Field(description="completed, failed, busy, no-answer or canceled")
    duration_seconds: int


class CallAuthorizationOut(BaseModel):
    call_sid: str
    status: str
    max_duration_seconds: int
    reserved_amount: MoneyOut
    reserved_until: str | None


class CallEndOut(BaseModel):
    call_sid: str
    status: str
    duration_seconds: int
    pulses: int
    price: MoneyOut


class CallOut(BaseModel):
    call_sid: str
    direction: str
    status: str
    from_: str | None = Field(serialization_alias="from")
    to: str | None
    consumer: str | None
    campaign_id: str | None
    duration_seconds: int | None
    pulses: int
    price: MoneyOut
    started_at: str
    updated_at: str


def _authorization_out(result: CallResult) -> CallAuthorizationOut:
    return CallAuthorizationOut(
        call_sid=result.call_sid,
        status=result.status,
        max_duration_seconds=result.max_duration_seconds,
        reserved_amount=money(result.reserved_micros),
        reserved_until=instant(result.reserved_until_us),
    )


@router.post(
    "/calls",
    status_code=201,
    response_model=CallAuthorizationOut,
    summary="Authorize a call (platform)",
    description="`max_duration_seconds` is the most the balance allows right now, priced by "
    "the same pulse rule that settles the call; the hold covers the first reservation "
    "window. 402 `insufficient_balance` for an outbound call that cannot pay one pulse.",
)
def authorize_call(
    account_id: str,
    body: CallIn,
    _: Principal = Depends(allow(PLATFORM)),
    c: Container = Depends(container),
) -> CallAuthorizationOut:
    result = c.calls.authorize(
        account_id,
        body.call_sid,
        body.direction,
        from_=body.from_,
        to=body.to,
        consumer=body.consumer,
        campaign_id=body.campaign_id,
    )
    return _authorization_out(result)


@router.post(
    "/calls/{call_sid}/extend",
    response_model=CallAuthorizationOut,
    summary="Hold the next reservation window (platform); 402 means disconnect",
)
def extend_call(
    account_id: str,
    call_sid: str,
    _: Principal = Depends(allow(PLATFORM)),
    c: Container = Depends(container),
) -> CallAuthorizationOut:
    return _authorization_out(c.calls.extend(account_id, call_sid))


@router.post(
    "/calls/{call_sid}/end",
    response_model=CallEndOut,
    summary="End a call: price it in pulses, capture, release the rest (platform)",
)
def end_call(
    account_id: str,
    call_sid: str,
    body: CallEndIn,
    _: Principal = Depends(allow(PLATFORM)),
    c: Container = Depends(container),
) -> CallEndOut:
    result = c.calls.end(account_id, call_sid, body.status, body.duration_seconds)
    return CallEndOut(
        call_sid=result.call_sid,
        status=result.status,
        duration_seconds=result.duration_seconds or 0,
        pulses=result.pulses,
        price=money(result.price_micros),
    )


def _call_out(r: UsageRecord) -> CallOut:
    return CallOut(
        call_sid=r.natural_id,
        direction=r.sub_type,
        status=r.status,
        from_=r.from_number,
        to=r.to_number,
        consumer=r.consumer,
        campaign_id=r.campaign_id,
        duration_seconds=r.duration_seconds,
        pulses=r.quantity,
        price=money(r.price_micros),
        started_at=instant(r.occurred_at_us) or "",
        updated_at=instant(r.updated_at_us) or "",
    )


@router.get("/calls/{call_sid}", response_model=CallOut, summary="A call's record")
def get_call(
    account_id: str,
    call_sid: str,
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> CallOut:
    return _call_out(c.calls.get(account_id, call_sid))


@router.get("/calls", summary="Calls, newest first (in progress and ended)")
def list_calls(
    account_id: str,
    limit: int = Depends(limit_param),
    after: str | None = None,
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> dict[str, object]:
    records = c.calls.list(account_id, limit, decode_int_cursor(after))
    cursor = encode_cursor(records[-1].id or 0) if len(records) == limit else None
    return {"data": [_call_out(r) for r in records], "next_cursor": cursor}


# -- WhatsApp --------------------------------------------------------------------------------
class ConversationIn(Strict):
    conversation_id: str = Field(min_length=1, max_length=128)
    category: str = Field(description="marketing, utility, authentication or service")
    consumer: str | None = Field(None, max_length=128)
    campaign_id: str | None = Field(None, max_length=64)


class ConversationOut(BaseModel):
    conversation_id: str
    category: str
    price: MoneyOut


@router.post(
    "/whatsapp/conversations",
    status_code=201,
    response_model=ConversationOut,
    summary="Charge a WhatsApp conversation (platform)",
    description="Priced by category; 402 `insufficient_balance` when money is short. The "
    "conversation_id makes it idempotent.",
)
def charge_conversation(
    account_id: str,
    body: ConversationIn,
    _: Principal = Depends(allow(PLATFORM)),
    c: Container = Depends(container),
) -> ConversationOut:
    result = c.usage.charge_whatsapp(
        account_id,
        body.conversation_id,
        body.category,
        consumer=body.consumer,
        campaign_id=body.campaign_id,
    )
    return ConversationOut(
        conversation_id=result.conversation_id,
        category=result.category,
        price=money(result.price_micros),
    )


# -- numbers and agent seats -------------------------------------------------------------------
class NumberIn(Strict):
    number: str = Field(min_length=3, max_length=32, pattern=r"^\+?[0-9]{3,31}$")


class AgentIn(Strict):
    agent_id: str = Field(min_length=1, max_length=64)


class SessionIn(Strict):
    started_at: InstantIn
    ended_at: InstantIn


class SubscriptionOut(BaseModel):
    id: str = Field(description="the number, or the agent id")
    status: str
    started_at: str
    ended_at: str | None
    next_charge_at: str | None
    price: MoneyOut = Field(description="charged now for the current month (on start)")


def _subscription_out(view: SubscriptionView) -> SubscriptionOut:
    return SubscriptionOut(
        id=view.item,
        status=view.status,
        started_at=instant(view.started_at_us) or "",
        ended_at=instant(view.ended_at_us),
        next_charge_at=instant(view.next_charge_at_us),
        price=money(view.price_micros),
    )


MONTHLY = (
    "Charged now for the current account-local month (402 when short) and again at the "
    "start of every month while active, exactly once per month."
)


@router.post(
    "/numbers",
    status_code=201,
    response_model=SubscriptionOut,
    summary="Start renting a virtual number",
    description=MONTHLY,
)
def start_number(
    account_id: str,
    body: NumberIn,
    _: Principal = Depends(allow(PLATFORM | MANAGE)),
    c: Container = Depends(container),
) -> SubscriptionOut:
    return _subscription_out(c.subscriptions.start(account_id, "number", body.number))


@router.delete(
    "/numbers/{number}",
    response_model=SubscriptionOut,
    summary="Stop renting a number (no refund for the current month)",
)
def end_number(
    account_id: str,
    number: str,
    _: Principal = Depends(allow(PLATFORM | MANAGE)),
    c: Container = Depends(container),
) -> SubscriptionOut:
    return _subscription_out(c.subscriptions.end(account_id, "number", number))


@router.get("/numbers", summary="Rented numbers, active and ended")
def list_numbers(
    account_id: str, _: Principal = Depends(allow(READ)), c: Container = Depends(container)
) -> dict[str, object]:
    c.accounts.get_account(account_id)
    views = c.subscriptions.list(account_id, "number")
    return {"data": [_subscription_out(v) for v in views], "next_cursor": None}


@router.post(
    "/agents",
    status_code=201,
    response_model=SubscriptionOut,
    summary="Start a contact-center agent seat",
    description=MONTHLY,
)
def start_agent(
    account_id: str,
    body: AgentIn,
    _: Principal = Depends(allow(PLATFORM | MANAGE)),
    c: Container = Depends(container),
) -> SubscriptionOut:
    return _subscription_out(c.subscriptions.start(account_id, "agent_seat", body.agent_id))


@router.delete(
    "/agents/{agent_id}",
    response_model=SubscriptionOut,
    summary="End an agent seat (no refund for the current month)",
)
def end_agent(
    account_id: str,
    agent_id: str,
    _: Principal = Depends(allow(PLATFORM | MANAGE)),
    c: Container = Depends(container),
) -> SubscriptionOut:
    return _subscription_out(c.subscriptions.end(account_id, "agent_seat", agent_id))


@router.get("/agents", summary="Agent seats, active and ended")
def list_agents(
    account_id: str, _: Principal = Depends(allow(READ)), c: Container = Depends(container)
) -> dict[str, object]:
    c.accounts.get_account(account_id)
    views = c.subscriptions.list(account_id, "agent_seat")
    return {"data": [_subscription_out(v) for v in views], "next_cursor": None}


@router.post(
    "/agents/{agent_id}/sessions",
    status_code=201,
    summary="Record an agent's working session (agent hours; costs nothing)",
)
def record_session(
    account_id: str,
    agent_id: str,
    body: SessionIn,
    _: Principal = Depends(allow(PLATFORM)),
    c: Container = Depends(container),
) -> dict[str, object]:
    seconds = c.subscriptions.record_session(account_id, agent_id, body.started_at, body.ended_at)
    return {"agent_id": agent_id, "duration_seconds": seconds}


# -- batch -------------------------------------------------------------------------------------
class BatchIn(Strict):
    events: list[Any] = Field(
        description="1 to 10,000 completed usage events, each {kind: call|sms|whatsapp, the "
        "fields of its single endpoint, occurred_at; a call also status and duration_seconds}"
    )


@router.post(
    "/usage/batch",
    summary="Ingest completed usage (platform)",
    description="Usage that already happened: charged even when money is short (the "
    "shortfall is an explicit overrun that blocks outbound until a top-up). One result per "
    "event, in order: applied (with price), duplicate (seen before: charged once, ever) or "
    "rejected (with an error). All valid events are applied in one transaction.",
)
def ingest_batch(
    account_id: str,
    body: BatchIn,
    _: Principal = Depends(allow(PLATFORM)),
    c: Container = Depends(container),
) -> dict[str, object]:
    results = c.batch.ingest(account_id, body.events)
    out: list[dict[str, object]] = []
    for r in results:
        item: dict[str, object] = {"id": r.id, "status": r.status}
        if r.price_micros is not None:
            item["price"] = money(r.price_micros)
        if r.error_code is not None:
            item["error"] = {"code": r.error_code, "message": r.error_message}
        out.append(item)
    return {"results": out}

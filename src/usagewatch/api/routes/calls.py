"""Calls: authorize, extend, end, read."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from usagewatch.api.auth import READ, allow, container, container_of, platform_only
from usagewatch.api.lean import Body, in_thread, respond
from usagewatch.api.pagination import (
    after_param,
    decode_int_cursor,
    fetch_size,
    limit_param,
    page,
)
from usagewatch.api.schemas import MoneyOut, Strict, instant, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.service.calls import CallResult, CallView

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["calls"])


# -- calls -----------------------------------------------------------------------------------
class CallIn(Strict):
    call_sid: str = Field(min_length=1, max_length=128)
    direction: str = Field(description="outbound or inbound")
    from_: str | None = Field(
        None, alias="from", max_length=32, description="an optional '+' and 3-15 digits"
    )
    to: str | None = Field(None, max_length=32, description="an optional '+' and 3-15 digits")
    consumer: str | None = Field(None, max_length=128)
    campaign_id: str | None = Field(None, max_length=64)


class CallEndIn(Strict):
    status: str = Field(description="completed, failed, busy, no-answer or canceled")
    duration_seconds: int


CALL_IN = Body(CallIn)
CALL_END_IN = Body(CallEndIn)


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
    reserved_amount: MoneyOut = Field(description="what the call's hold reserves now")
    hold_status: Literal["open", "captured", "released", "expired"] | None = Field(
        description="open while the call may run on what it holds; expired when no end "
        "arrived in time (the money went back; a late end is still charged, once); null "
        "when the call held nothing (an inbound call at zero balance)"
    )
    hold_expires_at: str | None = Field(
        description="while the hold is open: when it lapses without an extend or an end "
        "(the reservation window plus the grace period)"
    )


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
    description="`max_duration_seconds` is the most that every limit at once allows right "
    "now (balance, daily, weekly and monthly caps, campaign budget, per-call cap), priced by "
    "the "
    "same pulse rule that settles the call; the hold covers the first reservation window. "
    "402 with the denying code (`insufficient_balance`, `daily_cap_reached`, "
    "`weekly_cap_reached`, `monthly_cap_reached`, `campaign_budget_exhausted`, `campaign_paused`, "
    "`per_call_cap_reached`) when not one pulse is allowed; 422 `invalid_number` when "
    "`from` or `to` is not a number.",
    openapi_extra=CALL_IN.openapi,
)
async def authorize_call(account_id: str, request: Request) -> Response:
    body = await CALL_IN.read(request, account_id, platform_only)
    result = await in_thread(
        container_of(request).calls.authorize,
        account_id,
        body.call_sid,
        body.direction,
        from_=body.from_,
        to=body.to,
        consumer=body.consumer,
        campaign_id=body.campaign_id,
    )
    return respond(request, _authorization_out(result))


@router.post(
    "/calls/{call_sid}/extend",
    response_model=CallAuthorizationOut,
    summary="Hold the next reservation window (platform); 402 means disconnect",
    description="402 with the code of the limit reached (`insufficient_balance`, "
    "`daily_cap_reached`, `weekly_cap_reached`, `monthly_cap_reached`, "
    "`campaign_budget_exhausted`, `per_call_cap_reached`, `call_duration_max_reached`): "
    "the call must end now.",
)
async def extend_call(
    account_id: str,
    call_sid: str,
    _: Principal = Depends(platform_only),
    c: Container = Depends(container),
) -> CallAuthorizationOut:
    return _authorization_out(await run_in_threadpool(c.calls.extend, account_id, call_sid))


@router.post(
    "/calls/{call_sid}/end",
    response_model=CallEndOut,
    summary="End a call: price it in pulses, capture, release the rest (platform)",
    description="A completed call costs whole pulses of its duration (a partial pulse rounds "
    "up); any other status costs nothing. A duration past the call's max_duration_seconds "
    "(a late disconnect) is still charged in full: the excess comes from the free balance and "
    "any shortfall is an overrun (negative available balance, outbound stopped) that the next "
    "credit settles first. The same end again returns the first result.",
    openapi_extra=CALL_END_IN.openapi,
)
async def end_call(account_id: str, call_sid: str, request: Request) -> Response:
    body = await CALL_END_IN.read(request, account_id, platform_only)
    result = await in_thread(
        container_of(request).calls.end, account_id, call_sid, body.status, body.duration_seconds
    )
    out = CallEndOut(
        call_sid=result.call_sid,
        status=result.status,
        duration_seconds=result.duration_seconds or 0,
        pulses=result.pulses,
        price=money(result.price_micros),
    )
    return respond(request, out)


def _call_out(view: CallView) -> CallOut:
    r, hold = view.record, view.hold
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
        reserved_amount=money(view.reserved_micros),
        hold_status=hold.status if hold else None,
        hold_expires_at=instant(hold.expires_at_us) if hold and hold.status == "open" else None,
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
    after: str | None = Depends(after_param),
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> dict[str, object]:
    found = c.calls.list(account_id, fetch_size(limit), decode_int_cursor(after))
    records, cursor = page(found, limit, lambda v: v.record.id or 0)
    return {"data": [_call_out(r) for r in records], "next_cursor": cursor}

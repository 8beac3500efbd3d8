"""Spending limits, their dry run, and campaign budgets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from usagewatch.api.auth import MANAGE, READ, allow, container
from usagewatch.api.pagination import (
    after_param,
    decode_cursor,
    fetch_size,
    limit_param,
    page,
)
from usagewatch.api.schemas import MoneyIn, MoneyOut, Strict, instant, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.domain.limits import Limits
from usagewatch.domain.money import Money
from usagewatch.service.limits import CampaignView, LimitsView, Simulation

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["limits and campaigns"])


# -- spending limits ---------------------------------------------------------------------------
class LimitsIn(Strict):
    enabled: bool
    daily_cap: MoneyIn | None = Field(None, description="per account-local day; null = none")
    weekly_cap: MoneyIn | None = Field(
        None,
        description="per account-local ISO week, Monday to Sunday; null = none. Left out of "
        "a PUT, the weekly cap stays as it is (it came after the other caps: a client written "
        "before it does not remove it)",
    )
    monthly_cap: MoneyIn | None = Field(None, description="per calendar month; null = none")
    per_call_max_duration_seconds: int | None = Field(
        None, description="at least one pulse; null = none"
    )
    per_call_max_cost: MoneyIn | None = Field(None, description="a call's whole cost; null = none")

    def limits(self) -> Limits:
        return Limits(
            enabled=self.enabled,
            daily_cap=self.daily_cap,
            weekly_cap=self.weekly_cap,
            monthly_cap=self.monthly_cap,
            per_call_max_duration_seconds=self.per_call_max_duration_seconds,
            per_call_max_cost=self.per_call_max_cost,
        )


class LimitsOut(BaseModel):
    enabled: bool
    daily_cap: MoneyOut | None
    monthly_cap: MoneyOut | None
    per_call_max_duration_seconds: int | None
    per_call_max_cost: MoneyOut | None
    spent_today: MoneyOut = Field(description="charged today (account-local day)")
    spent_this_month: MoneyOut
    reserved_amount: MoneyOut = Field(description="held for calls in progress; counts too")
    daily_paused_until: str | None = Field(description="set while the daily cap pauses outbound")
    monthly_paused_until: str | None
    updated_at: str | None
    weekly_cap: MoneyOut | None
    spent_this_week: MoneyOut = Field(description="charged since Monday 00:00 (account-local)")
    weekly_paused_until: str | None = Field(description="set while the weekly cap pauses")


def _money_or_none(amount: Money | None) -> str | None:
    return amount.format() if amount is not None else None


def limits_out(view: LimitsView) -> LimitsOut:
    limits = view.limits
    return LimitsOut(
        enabled=limits.enabled,
        daily_cap=_money_or_none(limits.daily_cap),
        monthly_cap=_money_or_none(limits.monthly_cap),
        per_call_max_duration_seconds=limits.per_call_max_duration_seconds,
        per_call_max_cost=_money_or_none(limits.per_call_max_cost),
        spent_today=money(view.charged_today_micros),
        spent_this_month=money(view.charged_this_month_micros),
        reserved_amount=money(view.reserved_micros),
        daily_paused_until=instant(view.daily_paused_until_us),
        monthly_paused_until=instant(view.monthly_paused_until_us),
        updated_at=instant(view.updated_at_us),
        weekly_cap=_money_or_none(limits.weekly_cap),
        spent_this_week=money(view.charged_this_week_micros),
        weekly_paused_until=instant(view.weekly_paused_until_us),
    )


@router.get("/spending-limits", response_model=LimitsOut, summary="The spending limits")
def get_limits(
    account_id: str, _: Principal = Depends(allow(READ)), c: Container = Depends(container)
) -> LimitsOut:
    return limits_out(c.limits.get(account_id))


@router.put(
    "/spending-limits",
    response_model=LimitsOut,
    summary="Set the spending limits (owner, admin)",
    description="Caps are money in the account's currency; null removes one. Changes apply "
    "to the next decision, and end a pause that a cap caused (a cap still exceeded pauses "
    "again at the next request).",
)
def put_limits(
    account_id: str,
    body: LimitsIn,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> LimitsOut:
    keep = "weekly_cap" not in body.model_fields_set
    return limits_out(c.limits.put(account_id, body.limits(), keep_weekly_cap=keep))


class SimulationIn(LimitsIn):
    enabled: bool = True


class SimulatedDay(BaseModel):
    date: str
    actual_spend: MoneyOut
    simulated_spend: MoneyOut
    blocked_spend: MoneyOut
    blocked_calls: int
    shortened_calls: int
    blocked_messages: int
    paused_at: str | None = Field(description="account-local time outbound would have paused")
    pause_reason: str | None
    paused_hours: str | None = Field(description="hours paused that day, one decimal")


class ProposedLimits(BaseModel):
    daily_cap: MoneyOut | None
    weekly_cap: MoneyOut | None
    monthly_cap: MoneyOut | None
    per_call_max_duration_seconds: int | None
    per_call_max_cost: MoneyOut | None


class SimulationOut(BaseModel):
    period: dict[str, str]
    limits: ProposedLimits
    actual_spend: MoneyOut
    simulated_spend: MoneyOut
    blocked_spend: MoneyOut
    blocked_calls: int
    shortened_calls: int
    blocked_messages: int
    paused_days: int
    days: list[SimulatedDay]


def simulation_out(sim: Simulation, proposed: Limits) -> SimulationOut:
    result = sim.result
    days = []
    for date in sorted(result.days):
        day = result.days[date]
        hours = None
        if day.paused_at is not None:
            midnight = day.paused_at.replace(hour=0, minute=0, second=0, microsecond=0)
            elapsed = (day.paused_at - midnight).total_seconds()
            hours = f"{(86_400 - elapsed) / 3600:.1f}"
        days.append(
            SimulatedDay(
                date=date,
                actual_spend=money(day.actual_micros),
                simulated_spend=money(day.simulated_micros),
                blocked_spend=money(day.blocked_micros),
                blocked_calls=day.blocked_calls,
                shortened_calls=day.shortened_calls,
                blocked_messages=day.blocked_messages,
                paused_at=day.paused_at.isoformat(timespec="seconds") if day.paused_at else None,
                pause_reason=day.pause_reason,
                paused_hours=hours,
            )
        )
    return SimulationOut(
        period={"from": sim.first_date, "to": sim.last_date, "timezone": sim.timezone},
        limits=ProposedLimits(
            daily_cap=_money_or_none(proposed.daily_cap),
            weekly_cap=_money_or_none(proposed.weekly_cap),
            monthly_cap=_money_or_none(proposed.monthly_cap),
            per_call_max_duration_seconds=proposed.per_call_max_duration_seconds,
            per_call_max_cost=_money_or_none(proposed.per_call_max_cost),
        ),
        actual_spend=money(result.total("actual_micros")),
        simulated_spend=money(result.total("simulated_micros")),
        blocked_spend=money(result.total("blocked_micros")),
        blocked_calls=result.total("blocked_calls"),
        shortened_calls=result.total("shortened_calls"),
        blocked_messages=result.total("blocked_messages"),
        paused_days=sum(1 for d in result.days.values() if d.paused_at is not None),
        days=days,
    )


@router.post(
    "/spending-limits/simulate",
    response_model=SimulationOut,
    summary="Dry run: what proposed limits would have done over the last 30 days",
    description="Replays the account's real priced usage of the last 30 account-local days "
    "(today included) through the gate's rules with the proposed limits: the days and hours "
    "outbound would have paused, the spend, and the calls and messages that would have been "
    "blocked or cut short. Changes nothing. A call is judged when it starts, as if its whole "
    "cost were held then.",
)
def simulate_limits(
    account_id: str,
    body: SimulationIn,
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> SimulationOut:
    limits = body.limits()
    if "weekly_cap" not in body.model_fields_set:  # as a PUT of this body would
        limits = replace(limits, weekly_cap=c.limits.get(account_id).limits.weekly_cap)
    return simulation_out(c.limits.simulate(account_id, limits), limits)


# -- campaigns -------------------------------------------------------------------------------
class CampaignIn(Strict):
    campaign_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    budget: MoneyIn


class CampaignPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    budget: MoneyIn | None = None
    status: Literal["active", "paused"] | None = None


class CampaignOut(BaseModel):
    campaign_id: str
    name: str
    budget: MoneyOut
    spent: MoneyOut = Field(description="charged usage carrying this campaign_id")
    reserved: MoneyOut = Field(description="held for the campaign's calls in progress")
    remaining: MoneyOut = Field(description="budget - spent - reserved (may be negative)")
    status: str
    paused_reason: str | None
    created_at: str
    updated_at: str


def campaign_out(view: CampaignView) -> CampaignOut:
    c = view.campaign
    return CampaignOut(
        campaign_id=c.campaign_id,
        name=c.name,
        budget=money(c.budget_micros),
        spent=money(c.spent_micros),
        reserved=money(view.held_micros),
        remaining=money(c.budget_micros - c.spent_micros - view.held_micros),
        status=c.status,
        paused_reason=c.paused_reason,
        created_at=instant(c.created_at_us) or "",
        updated_at=instant(c.updated_at_us) or "",
    )


@router.post(
    "/campaigns",
    status_code=201,
    response_model=CampaignOut,
    summary="Give a campaign a budget (owner, admin)",
    description="Usage carrying this `campaign_id` (calls, SMS, WhatsApp, batch) counts, "
    "including what it spent before the budget existed. A budget at or below that is "
    "accepted and pauses the campaign at once (`campaign_budget_exhausted`).",
)
def create_campaign(
    account_id: str,
    body: CampaignIn,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> CampaignOut:
    view = c.limits.create_campaign(account_id, body.campaign_id, body.name, body.budget)
    return campaign_out(view)


@router.get("/campaigns", summary="List campaigns with their budgets")
def list_campaigns(
    account_id: str,
    limit: int = Depends(limit_param),
    after: str | None = Depends(after_param),
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> dict[str, Any]:
    c.accounts.get_account(account_id)
    found = c.limits.list_campaigns(account_id, fetch_size(limit), decode_cursor(after))
    views, cursor = page(found, limit, lambda view: view.campaign.campaign_id)
    return {"data": [campaign_out(v) for v in views], "next_cursor": cursor}


CampaignIdPath = PathParam(max_length=64)


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, summary="A campaign")
def get_campaign(
    account_id: str,
    campaign_id: str = CampaignIdPath,
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> CampaignOut:
    return campaign_out(c.limits.get_campaign(account_id, campaign_id))


@router.patch(
    "/campaigns/{campaign_id}",
    response_model=CampaignOut,
    summary="Change a campaign's name, budget or status (owner, admin)",
    description="Raising the budget of a campaign its budget paused resumes it; `status: "
    "active` resumes a paused campaign (a spent budget pauses it again at the next charge); "
    "`status: paused` pauses it (`paused_reason: paused_by_user`).",
)
def patch_campaign(
    account_id: str,
    body: CampaignPatch,
    campaign_id: str = CampaignIdPath,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> CampaignOut:
    view = c.limits.update_campaign(
        account_id, campaign_id, name=body.name, budget=body.budget, status=body.status
    )
    return campaign_out(view)

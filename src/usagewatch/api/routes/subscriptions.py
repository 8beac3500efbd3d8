"""Number rentals and agent seats (monthly), and agent sessions."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from usagewatch.api.auth import MANAGE, PLATFORM, READ, allow, container, platform_only
from usagewatch.api.pagination import after_param, decode_cursor, fetch_size, limit_param, page
from usagewatch.api.schemas import InstantIn, MoneyOut, Strict, instant, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.service.subscriptions import SubscriptionView

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["numbers and agent seats"])


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


def _routes(kind: str, path: str, noun: str, body_model: type[NumberIn] | type[AgentIn]) -> None:
    """Start, end and list routes for one kind of monthly subscription."""
    field = "number" if body_model is NumberIn else "agent_id"

    def start(
        account_id: str,
        body: NumberIn | AgentIn,
        _: Principal = Depends(allow(PLATFORM | MANAGE)),
        c: Container = Depends(container),
    ) -> SubscriptionOut:
        return _subscription_out(c.subscriptions.start(account_id, kind, getattr(body, field)))

    # This kind's body model (the module's annotations are strings, so set it directly).
    start.__annotations__["body"] = body_model
    router.post(
        f"/{path}",
        status_code=201,
        response_model=SubscriptionOut,
        summary=f"Start {noun}",
        description=MONTHLY,
        name=f"start_{kind}",
    )(start)

    @router.delete(
        f"/{path}/{{item}}",
        response_model=SubscriptionOut,
        summary=f"End {noun} (no refund for the current month)",
        name=f"end_{kind}",
    )
    def end(
        account_id: str,
        item: str,
        _: Principal = Depends(allow(PLATFORM | MANAGE)),
        c: Container = Depends(container),
    ) -> SubscriptionOut:
        return _subscription_out(c.subscriptions.end(account_id, kind, item))

    @router.get(f"/{path}", summary=f"List {noun}s, active and ended, by id", name=f"list_{kind}")
    def list_all(
        account_id: str,
        limit: int = Depends(limit_param),
        after: str | None = Depends(after_param),
        _: Principal = Depends(allow(READ)),
        c: Container = Depends(container),
    ) -> dict[str, object]:
        c.accounts.get_account(account_id)
        found = c.subscriptions.list(account_id, kind, fetch_size(limit), decode_cursor(after))
        views, cursor = page(found, limit, lambda v: v.item)
        return {"data": [_subscription_out(v) for v in views], "next_cursor": cursor}


_routes("number", "numbers", "a virtual number rental", NumberIn)
_routes("agent_seat", "agents", "a contact-center agent seat", AgentIn)


@router.post(
    "/agents/{agent_id}/sessions",
    status_code=201,
    summary="Record an agent's working session (agent hours; costs nothing)",
)
def record_session(
    account_id: str,
    agent_id: str,
    body: SessionIn,
    _: Principal = Depends(platform_only),
    c: Container = Depends(container),
) -> dict[str, object]:
    seconds = c.subscriptions.record_session(account_id, agent_id, body.started_at, body.ended_at)
    return {"agent_id": agent_id, "duration_seconds": seconds}

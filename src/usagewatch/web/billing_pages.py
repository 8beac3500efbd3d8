"""The billing pages: Usage (chart, breakdown, top consumers, trend, exports), Spending
Limits (caps, campaigns, dry run), Credits, Notifications (with every delivery), API keys
(Alerts are in `alert_pages.py`; Auto-recharge and Add Credits in `payment_pages.py`). Each
reads and writes through the same services and request models as the JSON API, so a page
can never disagree with it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from usagewatch.adapters.db.schema import SERVICES
from usagewatch.api.routes import limits as limits_api
from usagewatch.api.routes import reports as reports_api
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.clock import local_date
from usagewatch.domain.errors import UsageWatchError
from usagewatch.domain.money import Money
from usagewatch.service.reports import TrendRow, parse_period, parse_service
from usagewatch.web.auth_pages import dashboard
from usagewatch.web.context import Dashboard
from usagewatch.web.sessions import Session

router = APIRouter(include_in_schema=False)
DEFAULT_DAYS = 30
SERVICE_LABELS = {
    "voice": "Voice",
    "sms": "SMS",
    "whatsapp": "WhatsApp",
    "number": "ExoPhone numbers",
    "agent_seat": "Contact center seats",
}
KEY_ROLES = ("viewer", "platform", "owner")
DASH = "\u2013"  # en dash, for ranges of days
CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "dashboard": "Dashboard", "webhook": "Webhook"}


def _principal(session: Session) -> Principal:
    role = Role.ADMIN if session.is_admin else Role(session.role or "viewer")
    return Principal(role, None if session.is_admin else session.account_id, None)


def _problem(exc: Exception) -> str:
    if isinstance(exc, UsageWatchError):
        return exc.message
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
    raise exc


def _blank_to_none(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def form_count(value: str | None) -> int | str | None:
    """A form's text for a whole-number field, as the API takes it: a JSON integer when it
    is ASCII digits (request bodies are typed strictly), else the text itself (blank: None),
    which the API's model refuses with `validation_error` on the field. `str.isdigit`
    alone would let "²" through to `int`, which raises."""
    value = _blank_to_none(value)
    if value is not None and value.isascii() and value.isdigit():
        return int(value)
    return value


# -- Usage -------------------------------------------------------------------------------------
@router.get("/billing/usage")
async def usage_page(
    request: Request,
    from_: str | None = None,
    to: str | None = None,
    service: str | None = None,
) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    params = request.query_params
    first, last = params.get("from") or from_, params.get("to") or to
    error = None
    try:
        if not first or not last:
            account = await run_in_threadpool(d.c.accounts.get_account, session.account_id or "")
            today = local_date(d.c.clock.now(), account.timezone)
            last = last or today.isoformat()
            first = (
                first or (date.fromisoformat(last) - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
            )
        period = parse_period(first, last)
        svc = parse_service(_blank_to_none(service))
    except (UsageWatchError, ValueError) as exc:
        error = exc.message if isinstance(exc, UsageWatchError) else str(exc)
        account = await run_in_threadpool(d.c.accounts.get_account, session.account_id or "")
        today = local_date(d.c.clock.now(), account.timezone)
        period = parse_period(
            (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(), today.isoformat()
        )
        svc = None
    data = await run_in_threadpool(_usage_data, d, session.account_id or "", period, svc)
    return await d.page(
        request,
        "usage.html",
        session,
        title="Usage",
        period=period,
        service=svc,
        services=SERVICES,
        service_labels=SERVICE_LABELS,
        error=error,
        **data,
    )


def _usage_data(d: Dashboard, account_id: str, period: Any, svc: str | None) -> dict[str, Any]:
    c = d.c
    rows = c.reports.daily(account_id, period, svc)
    dates = period.dates()
    at = {day: i for i, day in enumerate(dates)}
    series: dict[str, list[int]] = {}
    for row in rows:
        series.setdefault(row.service, [0] * len(dates))[at[row.date]] = row.cost_micros
    shown = [s for s in SERVICES if s in series]
    chart = {
        "dates": dates,
        "series": [
            {
                "service": s,
                "label": SERVICE_LABELS[s],
                "costs": [Money(micros).format() for micros in series[s]],
            }
            for s in shown
        ],
    }
    # The chart's figures as a table (for a screen reader, or to read exact amounts): the
    # days with usage, a column per service shown, and the day's total.
    daily_table = [
        {
            "date": day,
            "costs": [series[s][i] for s in shown],
            "total": sum(series[s][i] for s in shown),
        }
        for i, day in enumerate(dates)
        if any(series[s][i] for s in shown)
    ]
    return {
        "chart": chart,
        "daily_table": daily_table,
        "breakdown": c.reports.services(account_id, period),
        "pulse_seconds": c.rates.card(account_id).pulse_seconds,
        "consumers": c.reports.top_consumers(account_id, period, 10),
        "trend": _trend_rows(c.reports.trend(account_id, 6)),
        "statements": c.statements.list(account_id, 12, None),
    }


def _trend_rows(rows: list[TrendRow]) -> list[dict[str, Any]]:
    """The trend as the page shows it: months named in words, the month to date with its
    like-for-like change (against the same days of the month before), and without the
    months before the account's first usage (always at least the current month)."""
    while len(rows) > 1 and rows[0].cost_micros == 0:
        rows = rows[1:]
    shown: list[dict[str, Any]] = []
    for row in rows:
        first = date.fromisoformat(row.month + "-01")
        before_ends = first - timedelta(days=1)  # the last day of the month before
        change, note, versus = row.change_percent, "", f"{before_ends:%B}"
        if row.month_to_date:
            through = date.fromisoformat(row.through)
            note = f"1{DASH}{through.day} {through:%b}, month to date"
            change = row.change_percent_same_days
            versus = f"1{DASH}{min(through.day, before_ends.day)} {before_ends:%b}"
        shown.append(
            {
                "label": first.strftime("%B %Y"),
                "note": note,
                "cost_micros": row.cost_micros,
                "change": change,
                "versus": versus,
            }
        )
    return shown


@router.get("/dashboard/exports/usage")
async def export_usage(request: Request) -> Response:
    """The Export buttons: the API's export, authenticated by the session."""
    d = dashboard(request)
    session = await d.signed_in(request)
    q = request.query_params
    return await run_in_threadpool(
        reports_api.export_usage,
        session.account_id or "",
        _blank_to_none(q.get("from")),
        _blank_to_none(q.get("to")),
        _blank_to_none(q.get("service")),
        _blank_to_none(q.get("format")),
        _principal(session),
        d.c,
    )


@router.get("/dashboard/statements/{statement_id}/{fmt}")
async def statement_file(request: Request, statement_id: str, fmt: str) -> Response:
    """A monthly statement's CSV or PDF: the API's, authenticated by the session."""
    d = dashboard(request)
    session = await d.signed_in(request)
    return await run_in_threadpool(
        reports_api.statement_file,
        session.account_id or "",
        statement_id,
        fmt,
        _principal(session),
        d.c,
    )


# -- Spending limits and campaigns ----------------------------------------------------------
def _limits_body(form: dict[str, str]) -> dict[str, Any]:
    return {
        "enabled": form.get("enabled") == "on",
        "daily_cap": _blank_to_none(form.get("daily_cap")),
        "weekly_cap": _blank_to_none(form.get("weekly_cap")),
        "monthly_cap": _blank_to_none(form.get("monthly_cap")),
        "per_call_max_duration_seconds": form_count(form.get("per_call_max_duration_seconds")),
        "per_call_max_cost": _blank_to_none(form.get("per_call_max_cost")),
    }


async def _limits_page(
    d: Dashboard, request: Request, session: Session, status_code: int = 200, **values: Any
) -> Response:
    account_id = session.account_id or ""

    def read() -> tuple[Any, list[Any]]:
        view = limits_api.limits_out(d.c.limits.get(account_id))
        campaigns = [
            limits_api.campaign_out(view)
            for view in d.c.limits.list_campaigns(account_id, 200, None)
        ]
        return view, campaigns

    view, campaigns = await run_in_threadpool(read)
    values.setdefault("form", None)
    values.setdefault("error", None)
    values.setdefault("notice", None)
    values.setdefault("simulation", None)
    response = await d.page(
        request,
        "limits.html",
        session,
        title="Spending Limits",
        limits=view,
        campaigns=campaigns,
        **values,
    )
    response.status_code = status_code
    return response


@router.get("/billing/spending-limits")
async def limits_page(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    return await _limits_page(d, request, session)


@router.post("/billing/spending-limits")
async def save_limits(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if session.role not in ("owner", "admin"):
        return await _limits_page(d, request, session, 403, error="Only owners may change limits.")
    try:
        body = limits_api.LimitsIn.model_validate(_limits_body(form))
        await run_in_threadpool(d.c.limits.put, session.account_id or "", body.limits())
    except (UsageWatchError, ValidationError) as exc:
        return await _limits_page(d, request, session, 422, error=_problem(exc), form=form)
    return RedirectResponse("/billing/spending-limits?saved=1", status_code=303)


@router.post("/billing/spending-limits/preview")
async def preview_limits(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    try:
        body = limits_api.SimulationIn.model_validate({**_limits_body(form), "enabled": True})
        proposed = body.limits()
        sim = await run_in_threadpool(d.c.limits.simulate, session.account_id or "", proposed)
    except (UsageWatchError, ValidationError) as exc:
        return await _limits_page(d, request, session, 422, error=_problem(exc), form=form)
    out = limits_api.simulation_out(sim, proposed)
    return await _limits_page(d, request, session, simulation=out, form=form)


@router.post("/billing/campaigns")
async def create_campaign(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if session.role not in ("owner", "admin"):
        return await _limits_page(d, request, session, 403, error="Only owners manage campaigns.")
    try:
        body = limits_api.CampaignIn.model_validate(
            {k: form.get(k, "").strip() for k in ("campaign_id", "name", "budget")}
        )
        await run_in_threadpool(
            d.c.limits.create_campaign,
            session.account_id or "",
            body.campaign_id,
            body.name,
            body.budget,
        )
    except (UsageWatchError, ValidationError) as exc:
        return await _limits_page(d, request, session, 422, error=_problem(exc))
    return RedirectResponse("/billing/spending-limits#campaigns", status_code=303)


@router.post("/billing/campaigns/{campaign_id}")
async def change_campaign(request: Request, campaign_id: str) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if session.role not in ("owner", "admin"):
        return await _limits_page(d, request, session, 403, error="Only owners manage campaigns.")
    patch = {
        "budget": _blank_to_none(form.get("budget")),
        "status": _blank_to_none(form.get("status")),
    }
    try:
        body = limits_api.CampaignPatch.model_validate({k: v for k, v in patch.items() if v})
        await run_in_threadpool(
            lambda: d.c.limits.update_campaign(
                session.account_id or "",
                campaign_id,
                name=None,
                budget=body.budget,
                status=body.status,
            )
        )
    except (UsageWatchError, ValidationError) as exc:
        return await _limits_page(d, request, session, 422, error=_problem(exc))
    return RedirectResponse("/billing/spending-limits#campaigns", status_code=303)


# -- Credits, notifications ----------------------------------------------------------------
@router.get("/billing/credits")
async def credits_page(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    account_id = session.account_id or ""
    lots = await run_in_threadpool(d.c.queries.credit_lots, account_id, 100, None)
    entries = await run_in_threadpool(d.c.queries.ledger_page, account_id, 50, None)
    return await d.page(
        request,
        "credits.html",
        session,
        title="Credits",
        lots=[lot for _, lot in lots],
        entries=entries,
    )


@router.get("/notifications")
async def notifications_page(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    rows = await run_in_threadpool(d.c.notifications.list, session.account_id or "", 100, None)
    return await d.page(
        request,
        "notifications.html",
        session,
        title="Notifications",
        rows=rows,
        channel_labels=CHANNEL_LABELS,
    )


# -- API keys (owners and the operator) ------------------------------------------------------
async def _keys_page(
    d: Dashboard, request: Request, session: Session, status_code: int = 200, **values: Any
) -> Response:
    keys = []
    if session.role in ("owner", "admin"):
        keys = await run_in_threadpool(d.c.accounts.list_api_keys, session.account_id or "")
    values.setdefault("issued", None)
    values.setdefault("error", None)
    response = await d.page(
        request, "api_keys.html", session, title="API Keys", keys=keys, roles=KEY_ROLES, **values
    )
    response.status_code = status_code
    return response


@router.get("/settings/api-keys")
async def keys_page(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    return await _keys_page(d, request, session)


@router.post("/settings/api-keys")
async def create_key(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if session.role not in ("owner", "admin"):
        return await _keys_page(d, request, session, 403, error="Only owners manage API keys.")
    try:
        issued = await run_in_threadpool(
            d.c.accounts.create_api_key,
            session.account_id or "",
            form.get("role", ""),
            _principal(session),
        )
    except UsageWatchError as exc:
        return await _keys_page(d, request, session, 422, error=exc.message)
    return await _keys_page(d, request, session, 201, issued=issued)


@router.post("/settings/api-keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    await d.form(request, session)
    if session.role not in ("owner", "admin"):
        return await _keys_page(d, request, session, 403, error="Only owners manage API keys.")
    try:
        await run_in_threadpool(d.c.accounts.revoke_api_key, session.account_id or "", key_id)
    except UsageWatchError as exc:
        return await _keys_page(d, request, session, 404, error=exc.message)
    return RedirectResponse("/settings/api-keys", status_code=303)

"""Billing > Alerts: the alerts with their state, Add Alert, edit and delete, the recommended
levels in one click, the billing recipients of system notices and the webhook secret.

The forms are validated by the JSON API's request models (`AlertIn`, `AlertPatch`,
`RecommendedIn`, `SettingsIn`) and saved by the same `AlertService` calls, so a page and
the API accept and refuse exactly the same alerts, with the same error codes — which the
form shows next to the field they belong to."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from usagewatch.adapters.db.schema import SERVICES
from usagewatch.api.errors import validation_code
from usagewatch.api.routes import alerts as alerts_api
from usagewatch.domain import alerts as rules
from usagewatch.domain.errors import UsageWatchError
from usagewatch.domain.money import Money
from usagewatch.web.auth_pages import dashboard
from usagewatch.web.billing_pages import CHANNEL_LABELS, SERVICE_LABELS, _blank_to_none
from usagewatch.web.context import Dashboard, Form
from usagewatch.web.sessions import Session

router = APIRouter(include_in_schema=False)

FREQUENCY_LABELS = {"once": "Once", "every_24_hours": "Every 24 hours"}
TYPE_LABELS = {"low_balance": "Low balance", "usage": "Usage threshold"}
PERIOD_LABELS = {"day": "Today's usage", "month": "This month's usage"}
SAVED = {
    "created": "Alert saved.",
    "updated": "Alert updated.",
    "deleted": "Alert deleted.",
    "recommended": "The recommended levels were added: Warning 30%, Urgent 15%, Critical 5%.",
    "settings": "Notification settings saved.",
    "rotated": "The webhook secret was rotated: deliveries are signed with the new one.",
}
# The API's `field` (a dotted path) -> the form field its error is shown next to.
FIELD_OF = {
    "threshold_percent_of_average_monthly_usage": "threshold",
    "recipients": "emails",
    "recipients.emails": "emails",
    "recipients.phones": "phones",
    "threshold_kind": "threshold",
    "email": "emails",  # check_email names the field "email"
}
SPLIT = re.compile(r"[\s,;]+")


def problem(exc: Exception) -> tuple[str, str, str | None]:
    """(code, message, field) of a refused form, exactly as the API would answer."""
    if isinstance(exc, UsageWatchError):
        return exc.code, exc.message, exc.field
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        code, message = validation_code(first)
        loc = [str(part) for part in first.get("loc", ())]
        return code, message, ".".join(loc) or None
    raise exc


# Pydantic's wording for a form's commonest slips, in words for people.
PLAIN = {
    "string_too_short": "Enter a value.",
    "missing": "Enter a value.",
    "string_too_long": "Too long: at most {max_length} characters.",
    "int_parsing": "Enter a whole number.",
    "int_type": "Enter a whole number.",
}


def field_errors(exc: Exception, aliases: dict[str, str] | None = None) -> dict[str, str]:
    """{form field: "message (code)"}, the first problem of every field at fault (a
    validation error lists them all); an error without a field goes under "form"."""
    if isinstance(exc, ValidationError):
        found: dict[str, str] = {}
        for error in exc.errors():
            code, message = validation_code(error)
            plain = PLAIN.get(str(error.get("type", "")))
            if plain is not None:
                message = plain.format(**(error.get("ctx") or {}))
            where = ".".join(str(part) for part in error.get("loc", ())) or None
            found.setdefault(_form_field(where, aliases), f"{message} ({code})")
        return found
    code, message, where = problem(exc)
    return {_form_field(where, aliases): f"{message} ({code})"}


def _form_field(where: str | None, aliases: dict[str, str] | None) -> str:
    if not where:
        return "form"
    # "recipients.phones.1" -> "recipients.phones" -> "phones"; "channels.0" -> "channels"
    parts = where.split(".")
    while parts and parts[-1].isdigit():
        parts.pop()
    key = ".".join(parts)
    return (aliases or FIELD_OF).get(key, key)


def split_list(text: str | None) -> list[str]:
    return [item for item in SPLIT.split(text or "") if item]


def alert_body(form: Form, alert_type: str) -> dict[str, Any]:
    """The API's alert body from the Add Alert / edit form."""
    body: dict[str, Any] = {
        "name": (form.get("name") or "").strip(),
        "channels": form.getlist("channels"),
        "recipients": {
            "emails": split_list(form.get("emails")),
            "phones": split_list(form.get("phones")),
        },
        "webhook_url": _blank_to_none(form.get("webhook_url")),
        "frequency": form.get("frequency") or "once",
        "action": _blank_to_none(form.get("action")),
        "threshold": None,
        "threshold_percent_of_average_monthly_usage": None,
        "period": None,
        "service": None,
    }
    value = _blank_to_none(form.get("threshold"))
    if form.get("threshold_kind") == "percent":
        body["threshold_percent_of_average_monthly_usage"] = value.rstrip("% ") if value else None
    else:
        body["threshold"] = value.replace(",", "") if value else None
    if alert_type == "usage":
        body["period"] = form.get("period") or None
        body["service"] = _blank_to_none(form.get("service"))
    return body


def _form_values(alert: Any) -> dict[str, Any]:
    """An alert as the form's values (for editing)."""
    out = alerts_api.alert_out(alert)
    percent = out.threshold_percent_of_average_monthly_usage
    return {
        "name": out.name,
        "type": out.type,
        "threshold_kind": "percent" if percent is not None else "amount",
        "threshold": percent if percent is not None else (out.threshold or ""),
        "period": out.period or "day",
        "service": out.service or "",
        "channels": out.channels,
        "emails": ", ".join(out.recipients.get("emails", [])),
        "phones": ", ".join(out.recipients.get("phones", [])),
        "webhook_url": out.webhook_url or "",
        "frequency": out.frequency,
        "action": out.action or "",
    }


def _posted_values(form: Form) -> dict[str, Any]:
    values: dict[str, Any] = {k: v for k, v in form.items() if k != "csrf_token"}
    values["channels"] = form.getlist("channels")
    return values


NEW_ALERT = {
    "name": "",
    "type": "low_balance",
    "threshold_kind": "amount",
    "threshold": "",
    "period": "day",
    "service": "",
    "channels": ["dashboard"],
    "emails": "",
    "phones": "",
    "webhook_url": "",
    "frequency": "once",
    "action": "",
}


async def _alerts_page(
    d: Dashboard,
    request: Request,
    session: Session,
    status_code: int = 200,
    **values: Any,
) -> Response:
    account_id = session.account_id or ""

    def read() -> dict[str, Any]:
        rows = sorted(  # oldest first; the recommended levels (made together) 30%, 15%, 5%
            d.c.alerts.all(account_id),
            key=lambda a: (
                a.created_at_us,
                -(a.threshold_percent_bp or 0),
                -(a.threshold_micros or 0),
                a.name,
            ),
        )
        alerts = [alerts_api.alert_out(a) for a in rows]
        triggered = {a.id: a.last_triggered_at_us for a in rows}
        settings = alerts_api.settings_out(d.c.alerts.settings(account_id))
        average = d.c.alerts.average_monthly_usage(account_id)
        estimates = {  # what each percentage threshold amounts to now ("≈", to the cent)
            a.id: rules.percent_of(average, a.threshold_percent_bp).rounded().micros
            for a in rows
            if a.threshold_percent_bp is not None and average is not None
        }
        return {
            "alerts": alerts,
            "triggered_us": triggered,
            "settings": settings,
            "average_micros": Money(average).rounded().micros if average is not None else None,
            "estimates": estimates,
        }

    data = await run_in_threadpool(read)
    recommended_names = {
        f"{level}: {percent}% of average monthly usage" for level, percent, _ in rules.RECOMMENDED
    }
    have = {a.name for a in data["alerts"]}
    values.setdefault("editing", None)
    values.setdefault("alert_form", dict(NEW_ALERT))
    values.setdefault("errors", {})
    values.setdefault("settings_form", None)
    values.setdefault("settings_errors", {})
    values.setdefault("secret", None)
    values.setdefault("secret_error", None)
    values.setdefault("error", None)
    values.setdefault("notice", SAVED.get(request.query_params.get("saved") or ""))
    response = await d.page(
        request,
        "alerts.html",
        session,
        title="Alerts",
        recommended_present=recommended_names <= have,
        recommended=rules.RECOMMENDED,
        channel_labels=CHANNEL_LABELS,
        frequency_labels=FREQUENCY_LABELS,
        type_labels=TYPE_LABELS,
        period_labels=PERIOD_LABELS,
        services=SERVICES,
        service_labels=SERVICE_LABELS,
        **data,
        **values,
    )
    response.status_code = status_code
    return response


def _refuse_viewer(session: Session) -> bool:
    return session.role not in ("owner", "admin")


VIEWER_ERROR = "Viewers can read alerts; only owners and operators can change them."


@router.get("/billing/alerts")
async def alerts_page(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    return await _alerts_page(d, request, session)


@router.post("/billing/alerts")
async def create_alert(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if _refuse_viewer(session):
        return await _alerts_page(d, request, session, 403, error=VIEWER_ERROR)
    alert_type = form.get("type") or ""
    try:
        body = alerts_api.AlertIn.model_validate(
            {"type": alert_type, **alert_body(form, alert_type)}
        )
        created = await run_in_threadpool(d.c.alerts.create, session.account_id or "", body.spec())
    except (UsageWatchError, ValidationError) as exc:
        return await _alerts_page(
            d,
            request,
            session,
            422,
            alert_form=_posted_values(form),
            errors=field_errors(exc),
        )
    return RedirectResponse(f"/billing/alerts?saved=created#alert-{created.id}", status_code=303)


@router.post("/billing/alerts/recommended")
async def create_recommended(request: Request) -> Response:
    """One click for the brief's three levels: to the dashboard inbox, and by email and SMS
    to the billing recipients when the account has them."""
    d = dashboard(request)
    session = await d.signed_in(request)
    await d.form(request, session)
    if _refuse_viewer(session):
        return await _alerts_page(d, request, session, 403, error=VIEWER_ERROR)
    account_id = session.account_id or ""

    def create() -> None:
        settings = d.c.alerts.settings(account_id)
        channels = ["dashboard"]
        if settings.emails:
            channels.append("email")
        if settings.phones:
            channels.append("sms")
        body = alerts_api.RecommendedIn.model_validate(
            {
                "channels": channels,
                "recipients": {"emails": settings.emails, "phones": settings.phones},
            }
        )
        d.c.alerts.recommended(
            account_id, list(body.channels), body.recipients.emails, body.recipients.phones
        )

    try:
        await run_in_threadpool(create)
    except (UsageWatchError, ValidationError) as exc:
        return await _alerts_page(d, request, session, 422, error=problem(exc)[1])
    return RedirectResponse("/billing/alerts?saved=recommended#alerts", status_code=303)


@router.get("/billing/alerts/{alert_id}/edit")
async def edit_alert_page(request: Request, alert_id: str) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    try:
        alert = await run_in_threadpool(d.c.alerts.get, session.account_id or "", alert_id[:40])
    except UsageWatchError as exc:
        return await _alerts_page(d, request, session, 404, error=exc.message)
    return await _alerts_page(d, request, session, editing=alert.id, alert_form=_form_values(alert))


@router.post("/billing/alerts/{alert_id}")
async def update_alert(request: Request, alert_id: str) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if _refuse_viewer(session):
        return await _alerts_page(d, request, session, 403, error=VIEWER_ERROR)
    account_id = session.account_id or ""
    try:
        alert = await run_in_threadpool(d.c.alerts.get, account_id, alert_id[:40])
        body = alerts_api.AlertPatch.model_validate(alert_body(form, alert.type))
        await run_in_threadpool(
            d.c.alerts.update, account_id, alert.id, alerts_api.patch_changes(body)
        )
    except (UsageWatchError, ValidationError) as exc:
        code, message, _ = problem(exc)
        if code == "alert_not_found":
            return await _alerts_page(d, request, session, 404, error=message)
        values = _posted_values(form)
        values["type"] = alert.type
        return await _alerts_page(
            d, request, session, 422, editing=alert.id, alert_form=values, errors=field_errors(exc)
        )
    return RedirectResponse(f"/billing/alerts?saved=updated#alert-{alert.id}", status_code=303)


@router.post("/billing/alerts/{alert_id}/delete")
async def delete_alert(request: Request, alert_id: str) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    await d.form(request, session)
    if _refuse_viewer(session):
        return await _alerts_page(d, request, session, 403, error=VIEWER_ERROR)
    try:
        await run_in_threadpool(d.c.alerts.delete, session.account_id or "", alert_id[:40])
    except UsageWatchError as exc:
        return await _alerts_page(d, request, session, 404, error=exc.message)
    return RedirectResponse("/billing/alerts?saved=deleted#alerts", status_code=303)


# -- notification settings and the webhook secret ------------------------------------------
SETTINGS_FIELDS = {"emails": "settings_emails", "phones": "settings_phones"}


@router.post("/billing/notification-settings")
async def save_settings(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if _refuse_viewer(session):
        return await _alerts_page(d, request, session, 403, error=VIEWER_ERROR)
    try:
        body = alerts_api.SettingsIn.model_validate(
            {
                "emails": split_list(form.get("emails")),
                "phones": split_list(form.get("phones")),
                "webhook_url": _blank_to_none(form.get("webhook_url")),
            }
        )
        await run_in_threadpool(
            d.c.alerts.put_settings,
            session.account_id or "",
            body.emails,
            body.phones,
            body.webhook_url,
        )
    except (UsageWatchError, ValidationError) as exc:
        return await _alerts_page(
            d,
            request,
            session,
            422,
            settings_form={k: form.get(k, "") for k in ("emails", "phones", "webhook_url")},
            settings_errors=field_errors(exc, {"email": "emails"}),
        )
    return RedirectResponse("/billing/alerts?saved=settings#settings", status_code=303)


@router.post("/billing/webhook-secret")
async def reveal_secret(request: Request) -> Response:
    """Show the webhook signing secret (a post, so it never sits in a URL or history)."""
    d = dashboard(request)
    session = await d.signed_in(request)
    await d.form(request, session)
    if _refuse_viewer(session):
        return await _alerts_page(d, request, session, 403, secret_error=VIEWER_ERROR)
    secret = await run_in_threadpool(d.c.alerts.webhook_secret, session.account_id or "")
    return await _alerts_page(d, request, session, secret=secret)


@router.post("/billing/webhook-secret/rotate")
async def rotate_secret(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if _refuse_viewer(session):
        return await _alerts_page(d, request, session, 403, secret_error=VIEWER_ERROR)
    if form.get("confirm") != "yes":
        return await _alerts_page(
            d,
            request,
            session,
            422,
            secret_error="Tick the box to confirm: receivers must switch to the new secret.",
        )
    settings = await run_in_threadpool(d.c.alerts.rotate_secret, session.account_id or "")
    return await _alerts_page(
        d, request, session, secret=settings.webhook_secret, notice=SAVED["rotated"]
    )

"""Billing > Auto-recharge: the rule (enabled, threshold, amount, daily maximum) with where it
stands, Add Credits (a manual payment through the payment gateway) and every payment with
its outcome.

Add Credits charges a card, so its form carries an idempotency key made when the form is
rendered: a double click, a resent post or a reload of the answer all reach
`PaymentService.pay` with the same key and charge once (the API's `Idempotency-Key`). The
answer is a redirect (post/redirect/get), so reloading it never posts again."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from usagewatch.api.routes import payments as payments_api
from usagewatch.domain.errors import UsageWatchError
from usagewatch.domain.payments import RECHARGES_PER_DAY_DEFAULT, AutoRechargeRule
from usagewatch.service.payments import parse_public_id, public_id
from usagewatch.web.alert_pages import field_errors, problem
from usagewatch.web.auth_pages import dashboard
from usagewatch.web.billing_pages import _blank_to_none, form_count
from usagewatch.web.context import Dashboard
from usagewatch.web.sessions import Session

router = APIRouter(include_in_schema=False)
PAYMENTS_SHOWN = 50
KEY_PREFIX = "dash-"
VIEWER_ERROR = "Viewers can see payments; only owners and operators add credits or change the rule."
STATUS_TEXT = {
    "succeeded": "Payment {id} succeeded: {amount} of paid credit was added.",
    "declined": "Payment {id} was declined: {error}. Nothing was charged.",
    "pending": "Payment {id} is waiting for the payment gateway; its outcome will show below "
    "and in Notifications.",
    "failed": "Payment {id} failed: {error}.",
}


def new_payment_key() -> str:
    """A fresh idempotency key for one rendering of the Add Credits form."""
    return KEY_PREFIX + secrets.token_urlsafe(18)


async def _recharge_page(
    d: Dashboard, request: Request, session: Session, status_code: int = 200, **values: Any
) -> Response:
    account_id = session.account_id or ""

    def read() -> dict[str, Any]:
        view = d.c.payments.rule(account_id)
        rule = payments_api.auto_recharge_out(view)
        rows = d.c.payments.list(account_id, PAYMENTS_SHOWN, None)
        return {
            "rule": rule,
            "payments": [payments_api.payment_out(r) for r in rows],
            "payment_times": {public_id(r.id): r.created_at_us for r in rows},
            "paused_until_us": view.paused_until_us,
        }

    data = await run_in_threadpool(read)
    values.setdefault("rule_form", None)
    values.setdefault("rule_errors", {})
    values.setdefault("pay_form", None)
    values.setdefault("pay_errors", {})
    values.setdefault("error", None)
    values.setdefault("notice", None)
    shown = request.query_params.get("payment")
    if shown and values["notice"] is None:
        values["notice"] = await run_in_threadpool(_payment_notice, d, account_id, shown)
    if request.query_params.get("saved") == "rule" and values["notice"] is None:
        values["notice"] = "Auto-recharge rule saved."
    response = await d.page(
        request,
        "auto_recharge.html",
        session,
        title="Auto-recharge",
        payment_key=new_payment_key(),
        default_per_day=RECHARGES_PER_DAY_DEFAULT,
        **data,
        **values,
    )
    response.status_code = status_code
    return response


def _payment_notice(d: Dashboard, account_id: str, shown: str) -> str | None:
    try:
        row = payments_api.payment_out(d.c.payments.get(account_id, parse_public_id(shown[:24])))
    except UsageWatchError:
        return None
    return STATUS_TEXT[row.status].format(
        id=row.payment_id, amount=row.amount, error=row.error or "no reason given"
    )


@router.get("/billing/auto-recharge")
async def auto_recharge_page(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    return await _recharge_page(d, request, session)


@router.post("/billing/auto-recharge")
async def save_rule(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if session.role not in ("owner", "admin"):
        return await _recharge_page(d, request, session, 403, error=VIEWER_ERROR)
    raw: dict[str, Any] = {"enabled": form.get("enabled") == "on"}
    for name in ("threshold", "amount", "max_recharges_per_day"):
        value = _blank_to_none(form.get(name))
        if value is not None:  # absent: "missing_field", as the API says
            value = value.replace(",", "")
            raw[name] = form_count(value) if name == "max_recharges_per_day" else value
    try:
        body = payments_api.AutoRechargeIn.model_validate(raw)
        rule = AutoRechargeRule(
            enabled=body.enabled,
            threshold=body.threshold,
            amount=body.amount,
            max_recharges_per_day=body.max_recharges_per_day,
        )
        await run_in_threadpool(d.c.payments.put_rule, session.account_id or "", rule)
    except (UsageWatchError, ValidationError) as exc:
        return await _recharge_page(
            d,
            request,
            session,
            422,
            rule_form={k: v for k, v in form.items() if k != "csrf_token"},
            rule_errors=field_errors(exc, {}),
        )
    return RedirectResponse("/billing/auto-recharge?saved=rule#rule", status_code=303)


@router.post("/billing/payments")
async def add_credits(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if session.role not in ("owner", "admin"):
        return await _recharge_page(d, request, session, 403, error=VIEWER_ERROR)
    key = form.get("idempotency_key", "")
    if not key.startswith(KEY_PREFIX) or not 8 <= len(key) <= 64:
        return await _recharge_page(
            d,
            request,
            session,
            400,
            error="This form has no payment key: reload the page and try again.",
        )
    amount = _blank_to_none(form.get("amount"))
    try:
        body = payments_api.PaymentIn.model_validate(
            {"amount": amount.replace(",", "")} if amount else {}
        )
        row = await run_in_threadpool(d.c.payments.pay, session.account_id or "", body.amount, key)
    except (UsageWatchError, ValidationError) as exc:
        code, message, _ = problem(exc)
        if code == "idempotency_key_reused":
            message = (
                "This form was already sent with another amount, so nothing was charged "
                "now. Check the payments below, then use the fresh form."
            )
            return await _recharge_page(d, request, session, 409, error=message)
        return await _recharge_page(
            d,
            request,
            session,
            422,
            pay_form={"amount": form.get("amount", "")},
            pay_errors=field_errors(exc, {}),
        )
    return RedirectResponse(
        f"/billing/auto-recharge?payment={public_id(row.id)}#payments",
        status_code=303,
    )

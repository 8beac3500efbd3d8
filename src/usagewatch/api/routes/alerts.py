"""Alerts, the notifications inbox with every delivery attempt, notification settings and
the webhook secret."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from usagewatch.adapters.db.alerts_store import AlertRow, SettingsRow
from usagewatch.api.auth import MANAGE, READ, allow, container
from usagewatch.api.pagination import (
    after_param,
    decode_int_cursor,
    decode_pair_cursor,
    fetch_size,
    limit_param,
    page,
    pair_key,
)
from usagewatch.api.schemas import MoneyIn, MoneyOut, Strict, instant
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.domain.money import Money
from usagewatch.service.alerts import AlertSpec, percent_text

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["alerts and notifications"])

Channel = Literal["email", "sms", "dashboard", "webhook"]


class Recipients(Strict):
    emails: list[str] = Field(default_factory=list, max_length=20)
    phones: list[str] = Field(default_factory=list, max_length=20, description="E.164")


class AlertIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    type: Literal["low_balance", "usage"]
    threshold: MoneyIn | None = Field(None, description="an amount; or the percentage below")
    threshold_percent_of_average_monthly_usage: str | None = Field(
        None, description='e.g. "30": average of the last three complete months'
    )
    period: Literal["day", "month"] | None = Field(None, description="usage alerts only")
    service: str | None = Field(None, description="usage alerts: one service, else all")
    channels: list[Channel] = Field(min_length=1)
    recipients: Recipients = Field(default_factory=Recipients)
    webhook_url: str | None = Field(None, max_length=2000)
    frequency: Literal["once", "every_24_hours"] = "once"
    action: str | None = Field(None, max_length=200, description="what to do, in every notice")

    def spec(self) -> AlertSpec:
        return AlertSpec(
            name=self.name,
            type=self.type,
            channels=list(self.channels),
            frequency=self.frequency,
            threshold=self.threshold,
            threshold_percent=self.threshold_percent_of_average_monthly_usage,
            period=self.period,
            service=self.service,
            emails=self.recipients.emails,
            phones=self.recipients.phones,
            webhook_url=self.webhook_url,
            action=self.action,
        )


class AlertPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    threshold: MoneyIn | None = None
    threshold_percent_of_average_monthly_usage: str | None = None
    period: Literal["day", "month"] | None = None
    service: str | None = None
    channels: list[Channel] | None = Field(None, min_length=1)
    recipients: Recipients | None = None
    webhook_url: str | None = Field(None, max_length=2000)
    frequency: Literal["once", "every_24_hours"] | None = None
    action: str | None = Field(None, max_length=200)


class AlertOut(BaseModel):
    alert_id: str
    name: str
    type: str
    threshold: MoneyOut | None
    threshold_percent_of_average_monthly_usage: str | None
    period: str | None
    service: str | None
    channels: list[str]
    recipients: dict[str, list[str]]
    webhook_url: str | None
    frequency: str
    action: str | None
    state: str = Field(description="armed | triggered")
    last_triggered_at: str | None
    created_at: str


def alert_out(alert: AlertRow) -> AlertOut:
    return AlertOut(
        alert_id=alert.id,
        name=alert.name,
        type=alert.type,
        threshold=Money(alert.threshold_micros).format()
        if alert.threshold_micros is not None
        else None,
        threshold_percent_of_average_monthly_usage=percent_text(alert.threshold_percent_bp)
        if alert.threshold_percent_bp is not None
        else None,
        period=alert.period,
        service=alert.service,
        channels=alert.channels,
        recipients=alert.recipients,
        webhook_url=alert.webhook_url,
        frequency=alert.frequency,
        action=alert.action,
        state=alert.state,
        last_triggered_at=instant(alert.last_triggered_at_us),
        created_at=instant(alert.created_at_us) or "",
    )


@router.post(
    "/alerts",
    status_code=201,
    response_model=AlertOut,
    summary="Add an alert (owner, admin)",
    description="Low balance (fires when the available balance goes below the threshold; "
    "a `once` alert re-arms when it is back above threshold + 10%, at least 1.00) or usage "
    "(today's or this month's usage, optionally of one service, reaches the threshold; "
    "re-arms each new period). `every_24_hours` repeats while the condition holds. A "
    "condition that already holds fires at once.",
)
def create_alert(
    account_id: str,
    body: AlertIn,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> AlertOut:
    return alert_out(c.alerts.create(account_id, body.spec()))


def _default_channels() -> list[Channel]:
    return ["dashboard"]


class RecommendedIn(Strict):
    channels: list[Channel] = Field(default_factory=_default_channels, min_length=1)
    recipients: Recipients = Field(default_factory=Recipients)


@router.post(
    "/alerts/recommended",
    status_code=201,
    summary="Create the recommended levels: Warning 30%, Urgent 15%, Critical 5% (owner, admin)",
    description="Three low-balance alerts at 30%, 15% and 5% of average monthly usage, each "
    "with the brief's suggested action in its message.",
)
def create_recommended(
    account_id: str,
    body: RecommendedIn | None = None,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> dict[str, Any]:
    body = body if body is not None else RecommendedIn()  # no body at all: every default
    created = c.alerts.recommended(
        account_id, list(body.channels), body.recipients.emails, body.recipients.phones
    )
    return {"data": [alert_out(a) for a in created]}


@router.get("/alerts", summary="List alerts with their state, oldest first")
def list_alerts(
    account_id: str,
    limit: int = Depends(limit_param),
    after: str | None = Depends(after_param),
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> dict[str, Any]:
    c.accounts.get_account(account_id)
    found = c.alerts.list_page(account_id, fetch_size(limit), decode_pair_cursor(after))
    rows, cursor = page(found, limit, lambda a: pair_key(a.created_at_us, a.id))
    return {"data": [alert_out(a) for a in rows], "next_cursor": cursor}


AlertIdPath = PathParam(max_length=40)


@router.get("/alerts/{alert_id}", response_model=AlertOut, summary="An alert")
def get_alert(
    account_id: str,
    alert_id: str = AlertIdPath,
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> AlertOut:
    return alert_out(c.alerts.get(account_id, alert_id))


@router.patch(
    "/alerts/{alert_id}", response_model=AlertOut, summary="Change an alert (owner, admin)"
)
def patch_alert(
    account_id: str,
    body: AlertPatch,
    alert_id: str = AlertIdPath,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> AlertOut:
    return alert_out(c.alerts.update(account_id, alert_id, patch_changes(body)))


def patch_changes(body: AlertPatch) -> dict[str, Any]:
    """The fields a PATCH sent, named as `AlertService.update` takes them (the dashboard's
    edit form goes through here too)."""
    changes: dict[str, Any] = {}
    for key, value in body.model_dump(exclude_unset=True).items():
        if key == "threshold_percent_of_average_monthly_usage":
            changes["threshold_percent"] = value
        elif key == "threshold":
            changes["threshold"] = body.threshold
        elif key == "recipients":
            changes["emails"] = value.get("emails", [])
            changes["phones"] = value.get("phones", [])
        else:
            changes[key] = value
    return changes


@router.delete("/alerts/{alert_id}", status_code=204, summary="Delete an alert (owner, admin)")
def delete_alert(
    account_id: str,
    alert_id: str = AlertIdPath,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> Response:
    c.alerts.delete(account_id, alert_id)
    return Response(status_code=204)


# -- notifications ---------------------------------------------------------------------------
class AttemptOut(BaseModel):
    attempt: int
    outcome: str
    detail: str | None
    at: str


class DeliveryOut(BaseModel):
    channel: str
    target: str
    status: str = Field(description="pending | sent | failed")
    attempts: list[AttemptOut]
    last_error: str | None


class NotificationOut(BaseModel):
    id: str
    event: str
    title: str
    message: str
    data: dict[str, Any]
    alert_id: str | None
    created_at: str
    deliveries: list[DeliveryOut]


@router.get(
    "/notifications",
    summary="The account's notices, newest first, with every delivery attempt",
    description="Alerts fired, balance at zero, caps reached, outbound resumed, campaigns "
    "paused or resumed, promotional credit expiring, auto-recharge outcomes; per channel "
    "and recipient, each attempt and its outcome.",
)
def list_notifications(
    account_id: str,
    limit: int = Depends(limit_param),
    after: str | None = Depends(after_param),
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> dict[str, Any]:
    c.accounts.get_account(account_id)
    found = c.notifications.list(account_id, fetch_size(limit), decode_int_cursor(after))
    views, cursor = page(found, limit, lambda v: v.row.id)
    data = [
        NotificationOut(
            id=f"ntf_{v.row.id}",
            event=v.row.event,
            title=v.row.title,
            message=v.row.message,
            data=v.row.data,
            alert_id=v.row.alert_id,
            created_at=instant(v.row.created_at_us) or "",
            deliveries=[
                DeliveryOut(
                    channel=d["channel"],
                    target=d["target"],
                    status=d["status"],
                    last_error=d["last_error"],
                    attempts=[
                        AttemptOut(
                            attempt=a["attempt"],
                            outcome=a["outcome"],
                            detail=a["detail"],
                            at=instant(a["at_us"]) or "",
                        )
                        for a in d["attempts"]
                    ],
                )
                for d in v.deliveries
            ],
        )
        for v in views
    ]
    return {"data": data, "next_cursor": cursor}


# -- notification settings and the webhook secret --------------------------------------------
class SettingsIn(Strict):
    emails: list[str] = Field(default_factory=list, max_length=20)
    phones: list[str] = Field(default_factory=list, max_length=20)
    webhook_url: str | None = Field(None, max_length=2000)


class SettingsOut(BaseModel):
    emails: list[str]
    phones: list[str]
    webhook_url: str | None


def settings_out(row: SettingsRow) -> SettingsOut:
    return SettingsOut(emails=row.emails, phones=row.phones, webhook_url=row.webhook_url)


@router.get(
    "/notification-settings",
    response_model=SettingsOut,
    summary="Where system notices go (billing recipients)",
)
def get_settings(
    account_id: str, _: Principal = Depends(allow(READ)), c: Container = Depends(container)
) -> SettingsOut:
    return settings_out(c.alerts.settings(account_id))


@router.put(
    "/notification-settings",
    response_model=SettingsOut,
    summary="Set where system notices go (owner, admin)",
    description="System notices (balance at zero, cap reached, campaign paused, outbound "
    "resumed, promotional credit expiring, auto-recharge outcomes) go to these emails, "
    "phones and webhook, and always to the dashboard inbox.",
)
def put_settings(
    account_id: str,
    body: SettingsIn,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> SettingsOut:
    return settings_out(
        c.alerts.put_settings(account_id, body.emails, body.phones, body.webhook_url)
    )


class SecretOut(BaseModel):
    secret: str = Field(description="whsec_…: the HMAC-SHA256 key of webhook-signature")


@router.get(
    "/webhook-secret", response_model=SecretOut, summary="The webhook signing secret (owner)"
)
def get_secret(
    account_id: str, _: Principal = Depends(allow(MANAGE)), c: Container = Depends(container)
) -> SecretOut:
    return SecretOut(secret=c.alerts.webhook_secret(account_id))


@router.post(
    "/webhook-secret/rotate",
    response_model=SecretOut,
    summary="Rotate the webhook signing secret (owner)",
    description="Deliveries from now on are signed with the new secret.",
)
def rotate_secret(
    account_id: str, _: Principal = Depends(allow(MANAGE)), c: Container = Depends(container)
) -> SecretOut:
    return SecretOut(secret=c.alerts.rotate_secret(account_id).webhook_secret)

"""Notification events and their delivery.

A notification (a cap reached, an alert fired, a campaign paused, outbound resumed, ...) is
written in the same transaction as the change that caused it, together with one delivery
row per channel and recipient: the outbox. After commit, the delivery worker sends each one
(email over SMTP, SMS through the HTTP gateway, a signed webhook) and records every attempt;
a failure is retried with exponential backoff until `delivery_max_attempts`. The dashboard
channel is the inbox itself (`GET …/notifications`): delivered when written.

Where notices go: an alert's notices to the alert's channels and recipients; system notices
(no alert) to the account's notification settings (`PUT …/notification-settings`), and
always to the dashboard.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.channels import Channels, DeliveryError
from usagewatch.adapters.db import alerts_store, limits_store
from usagewatch.adapters.db.alerts_store import AlertRow, SettingsRow
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.limits_store import NotificationRow
from usagewatch.adapters.db.schema import statements
from usagewatch.domain import webhooks
from usagewatch.domain.clock import Clock, from_micros, to_micros

log = logging.getLogger(__name__)

# Every event type, with its title. Messages are composed where the event happens.
EVENTS = {
    "daily_cap_reached": "Daily spending cap reached: outbound paused",
    "weekly_cap_reached": "Weekly spending cap reached: outbound paused",
    "monthly_cap_reached": "Monthly spending cap reached: outbound paused",
    "outbound_resumed": "Outbound calls and messages resumed",
    "campaign_paused": "Campaign paused",
    "campaign_resumed": "Campaign resumed",
    "balance_zero": "Balance at zero: outbound stopped",
    "low_balance": "Low balance",
    "usage_threshold": "Usage threshold reached",
    "promotional_credit_expiring": "Promotional credit expiring soon",
    "monthly_statement": "Your monthly usage statement",
    "test": "Test notice",
    "auto_recharge_succeeded": "Auto-recharge added credit",
    "auto_recharge_failed": "Auto-recharge failed: add credit or update the payment method",
    "auto_recharge_limit_reached": "Auto-recharge reached its daily maximum",
    "payment_succeeded": "Payment succeeded: credit added",
    "payment_failed": "Payment failed: no credit added",
}

LEASE_SECONDS = 60
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
CLAIM_BATCH = 50


@dataclass(frozen=True, slots=True)
class Notice:
    event: str
    message: str
    data: dict[str, Any]


def default_settings(account_id: str, now_us: int) -> SettingsRow:
    return SettingsRow(account_id, [], [], None, webhooks.new_secret(), now_us)


def record(
    conn: Connection,
    account_id: str,
    notice: Notice,
    now_us: int,
    *,
    alert: AlertRow | None = None,
    dedupe_key: str | None = None,
) -> int | None:
    """Write a notification event and its deliveries inside the caller's transaction.
    Returns its id, or None when `dedupe_key` says it already happened."""
    title = EVENTS[notice.event]
    if alert is not None:
        title = f"{title}: {alert.name}"
    notification_id = limits_store.insert_notification(
        conn,
        account_id,
        notice.event,
        title,
        notice.message,
        notice.data,
        now_us,
        dedupe_key=dedupe_key,
        alert_id=alert.id if alert is not None else None,
    )
    if notification_id is None:
        return None
    settings = alerts_store.read_settings(conn, account_id)
    targets: list[tuple[str, str]] = []
    if alert is not None:
        channels, recipients = alert.channels, alert.recipients
        if "email" in channels:
            targets += [("email", e) for e in recipients.get("emails", [])]
        if "sms" in channels:
            targets += [("sms", p) for p in recipients.get("phones", [])]
        webhook_url = alert.webhook_url or (settings.webhook_url if settings else None)
        if "webhook" in channels and webhook_url:
            targets.append(("webhook", webhook_url))
        dashboard = "dashboard" in channels
    else:
        if settings is not None:
            targets += [("email", e) for e in settings.emails]
            targets += [("sms", p) for p in settings.phones]
            if settings.webhook_url:
                targets.append(("webhook", settings.webhook_url))
        dashboard = True
    if settings is None and any(channel == "webhook" for channel, _ in targets):
        alerts_store.write_settings(conn, default_settings(account_id, now_us))  # the secret
    rows = [
        {
            "account_id": account_id,
            "notification_id": notification_id,
            "channel": channel,
            "target": target,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at_us": now_us,
            "last_error": None,
            "created_at_us": now_us,
            "updated_at_us": now_us,
        }
        for channel, target in targets
    ]
    if dashboard:  # the inbox is this row: delivered as it is written
        rows.append(
            {
                "account_id": account_id,
                "notification_id": notification_id,
                "channel": "dashboard",
                "target": "inbox",
                "status": "sent",
                "attempts": 1,
                "next_attempt_at_us": None,
                "last_error": None,
                "created_at_us": now_us,
                "updated_at_us": now_us,
            }
        )
    alerts_store.insert_deliveries(conn, rows)
    return notification_id


@dataclass(frozen=True, slots=True)
class NotificationView:
    row: NotificationRow
    deliveries: list[dict[str, Any]]


class Notifications:
    """The inbox, and the delivery worker (a scheduler job: it runs in the server's
    sweeper, in `usagewatch worker`, and under the test clock's advance)."""

    def __init__(self, db: Database, clock: Clock, channels: Channels, max_attempts: int) -> None:
        self.db = db
        self.clock = clock
        self.channels = channels
        self.max_attempts = max_attempts

    def list(self, account_id: str, limit: int, before_id: int | None) -> list[NotificationView]:
        with self.db.read() as conn:
            rows = limits_store.list_notifications(conn, account_id, limit, before_id)
            sent = alerts_store.deliveries_of(conn, [r.id for r in rows])
        return [NotificationView(r, sent.get(r.id, [])) for r in rows]

    # -- the worker ------------------------------------------------------------------------
    def run_due(self) -> int:
        now_us = to_micros(self.clock.now())
        with self.db.write() as conn:
            claimed = alerts_store.claim_due(conn, now_us, LEASE_SECONDS * 1_000_000, CLAIM_BATCH)
        for item in claimed:
            self._deliver(item, now_us)
        return len(claimed)

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            due = alerts_store.next_delivery_due(conn)
        return from_micros(due) if due is not None else None

    def _deliver(self, item: alerts_store.Claimed, now_us: int) -> None:
        with self.db.read() as conn:
            note = alerts_store.notification_of(conn, item.notification_id)
            settings = alerts_store.read_settings(conn, item.account_id)
        try:
            if item.channel == "email":
                detail = self.channels.email(
                    item.target,
                    f"[usagewatch] {note.title}",
                    note.message,
                    _attachments(self.db, note),
                )
            elif item.channel == "sms":
                detail = self.channels.sms(
                    item.target, f"{note.title}. {note.message}"[:600], str(item.id)
                )
            else:  # webhook
                if settings is None:
                    raise DeliveryError("no webhook secret")  # settings exist once a URL does
                payload = {
                    "type": note.event,
                    "timestamp": from_micros(note.created_at_us).isoformat().replace("+00:00", "Z"),
                    "data": {
                        "account_id": note.account_id,
                        "notification_id": f"ntf_{note.id}",
                        "title": note.title,
                        "message": note.message,
                        "details": json.loads(note.data_json),
                    },
                }
                detail = self.channels.webhook(
                    item.target,
                    settings.webhook_secret,
                    f"msg_{note.id}_{item.id}",
                    now_us // 1_000_000,
                    payload,
                )
        except DeliveryError as exc:
            self._finish(item, now_us, error=str(exc))
        except Exception as exc:  # a bug in a channel must not stop the worker
            log.exception("delivery %s failed unexpectedly", item.id)
            self._finish(item, now_us, error=f"internal: {type(exc).__name__}")
        else:
            self._finish(item, now_us, detail=detail)

    def _finish(
        self, item: alerts_store.Claimed, now_us: int, detail: str = "", error: str | None = None
    ) -> None:
        with self.db.write() as conn:
            if error is None:
                alerts_store.finish_delivery(conn, item.id, "sent", None, None, now_us)
                alerts_store.insert_attempt(conn, item.id, item.attempts, "sent", detail, now_us)
                return
            alerts_store.insert_attempt(conn, item.id, item.attempts, "error", error, now_us)
            if item.attempts >= self.max_attempts:
                alerts_store.finish_delivery(conn, item.id, "failed", None, error, now_us)
            else:
                delay = min(BACKOFF_BASE_SECONDS * 2 ** (item.attempts - 1), BACKOFF_MAX_SECONDS)
                next_at = now_us + delay * 1_000_000
                alerts_store.finish_delivery(conn, item.id, "pending", next_at, error, now_us)


def _attachments(db: Database, note: Any) -> list[tuple[str, str, bytes]]:
    """A monthly statement's email carries its CSV and PDF."""
    if note.event != "monthly_statement":
        return []
    statement_id = json.loads(note.data_json)["statement_id"]
    s = statements.c
    with db.read() as conn:
        row = conn.execute(
            sa.select(s.month, s.csv, s.pdf).where(
                s.account_id == note.account_id, s.id == statement_id
            )
        ).one_or_none()
    if row is None:
        return []
    stem = f"usagewatch-{note.account_id}-{row.month}"
    return [
        (f"{stem}.csv", "text/csv", bytes(row.csv)),
        (f"{stem}.pdf", "application/pdf", bytes(row.pdf)),
    ]

"""Notification events: what happened to an account that a person should know about (a cap
reached, a campaign paused, outbound resumed). Each is written in the same transaction as
the change that caused it, so it exists exactly when the change does; the account's inbox
(`GET …/notifications`) lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from usagewatch.adapters.db import limits_store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.limits_store import NotificationRow

# Every event type, with its title. Messages are composed where the event happens.
EVENTS = {
    "daily_cap_reached": "Daily spending cap reached: outbound paused",
    "monthly_cap_reached": "Monthly spending cap reached: outbound paused",
    "outbound_resumed": "Outbound calls and messages resumed",
    "campaign_paused": "Campaign paused",
    "campaign_resumed": "Campaign resumed",
    "auto_recharge_succeeded": "Auto-recharge added credit",
    "auto_recharge_failed": "Auto-recharge failed: add credit or update the payment method",
    "auto_recharge_limit_reached": "Auto-recharge reached its daily maximum",
    "payment_succeeded": "Payment succeeded: credit added",
    "payment_failed": "Payment failed: no credit added",
}


@dataclass(frozen=True, slots=True)
class Notice:
    event: str
    message: str
    data: dict[str, Any]


def record(conn: Connection, account_id: str, notice: Notice, now_us: int) -> int:
    """Write a notification event inside the caller's transaction."""
    title = EVENTS[notice.event]
    return limits_store.insert_notification(
        conn, account_id, notice.event, title, notice.message, notice.data, now_us
    )


class Notifications:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, account_id: str, limit: int, before_id: int | None) -> list[NotificationRow]:
        with self.db.read() as conn:
            return limits_store.list_notifications(conn, account_id, limit, before_id)

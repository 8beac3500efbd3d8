"""Alerts: low-balance and usage-threshold alerts, evaluated inside every command that moved
money (a ledger trigger, so a notice exists exactly when the change does), repeated or
re-armed by time (a scheduler job that follows the test clock); system notices for a
balance at zero and promotional credit about to expire; the account's notification
settings and webhook secret."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from usagewatch.adapters.channels import UnsafeUrl, check_webhook_url
from usagewatch.adapters.db import alerts_store, store
from usagewatch.adapters.db.alerts_store import AlertRow, SettingsRow
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import SERVICES, credit_lots, notifications
from usagewatch.domain import alerts as rules
from usagewatch.domain import webhooks
from usagewatch.domain.accounts import check_email
from usagewatch.domain.clock import (
    Clock,
    from_micros,
    local_date,
    next_day_start,
    next_month_start,
    to_micros,
)
from usagewatch.domain.errors import Invalid, NotFound
from usagewatch.domain.ledger import USAGE_KINDS
from usagewatch.domain.money import BALANCE_MICROS_MAX, Money
from usagewatch.domain.numbers import PHONE
from usagewatch.service import notifications as notices
from usagewatch.service.ledger import Command, LedgerService, new_id
from usagewatch.service.notifications import Notice

USAGE_ENTRY_KINDS = frozenset(kind.value for kind in USAGE_KINDS)
RECIPIENTS_MAX = 20
ALERTS_PER_ACCOUNT_MAX = 50
SWEEP_BATCH_MAX = 500


@dataclass(slots=True)
class AlertSpec:
    name: str
    type: str
    channels: list[str]
    frequency: str = "once"
    threshold: Money | None = None
    threshold_percent: str | None = None  # "30", "12.5": percent of average monthly usage
    period: str | None = None
    service: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    webhook_url: str | None = None
    action: str | None = None


def _percent_bp(text: str) -> int:
    match = re.fullmatch(r"([0-9]{1,4})(?:\.([0-9]{1,2}))?", text)
    if match is None or not 0 < int(match[1] + (match[2] or "").ljust(2, "0")) <= 1_000_000:
        raise Invalid(
            "invalid_threshold_percent",
            'threshold_percent_of_average_monthly_usage is a number above 0, e.g. "30"',
            "threshold_percent_of_average_monthly_usage",
        )
    return int(match[1] + (match[2] or "").ljust(2, "0"))


def percent_text(bp: int) -> str:
    whole, hundredths = divmod(bp, 100)
    return f"{whole}" if not hundredths else f"{whole}.{hundredths:02d}".rstrip("0")


class Figures:
    """What alert evaluation reads, each loaded at most once per command: the day totals of
    the current month and the three before it (today's and this month's usage, the average
    monthly usage, the last 7 days' burn), and this month's cost per service."""

    def __init__(self, conn: sa.Connection, state: store.AccountState, today: str) -> None:
        self.conn, self.state, self.today_text = conn, state, today
        self.today = date.fromisoformat(today)
        self.month_start = self.today.replace(day=1)
        self._days: dict[str, int] | None = None
        self._services: dict[str, tuple[int, int]] = {}
        self._average: tuple[int | None] | None = None

    def _load(self) -> dict[str, int]:
        if self._days is None:
            self._days, self._services = alerts_store.usage_figures(
                self.conn,
                self.state.account_id,
                _add_months(self.month_start, -3).isoformat(),
                self.month_start.isoformat(),
                self.today_text,
            )
        return self._days

    @property
    def days(self) -> dict[str, int]:
        return self._load()

    def service(self, service: str) -> tuple[int, int]:
        """(today's, this month's) cost of one service."""
        self._load()
        return self._services.get(service, (0, 0))

    def average_monthly_usage(self) -> int | None:
        if self._average is None:
            self._average = (self._average_monthly_usage(),)
        return self._average[0]

    def _average_monthly_usage(self) -> int | None:
        """The rule of `domain.alerts.average_monthly_usage`: complete months are calendar
        months the account existed for from their first day."""
        tz = self.state.timezone
        created = local_date(from_micros(self.state.account_created_at_us), tz)
        first_full = created if created.day == 1 else _add_months(created.replace(day=1), 1)
        cursor = max(first_full, _add_months(self.month_start, -3))
        monthly: list[int] = []
        while cursor < self.month_start:
            key = cursor.isoformat()[:7]
            monthly.append(sum(v for d, v in self.days.items() if d.startswith(key)))
            cursor = _add_months(cursor, 1)
        since = max(created, self.today - timedelta(days=29))
        recent = sum(v for d, v in self.days.items() if d >= since.isoformat())
        return rules.average_monthly_usage(
            monthly, recent, (self.today - since).days + 1, (self.today - created).days + 1
        )


class AlertService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ledger: LedgerService,
        *,
        public_url: str,
        allow_private_webhooks: bool,
        promo_notice_days: int,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.public_url = public_url.rstrip("/")
        self.allow_private = allow_private_webhooks
        self.promo_notice_days = promo_notice_days
        ledger.add_trigger(self.on_change)

    # -- validation ------------------------------------------------------------------------
    def _check(self, spec: AlertSpec, settings: SettingsRow | None) -> AlertRow:
        if not 1 <= len(spec.name) <= 200:
            raise Invalid("validation_error", "name is 1 to 200 characters", "name")
        if spec.type not in rules.TYPES:
            raise Invalid("invalid_alert_type", "type is low_balance or usage", "type")
        if (spec.threshold is None) == (spec.threshold_percent is None):
            raise Invalid(
                "threshold_required",
                "give threshold or threshold_percent_of_average_monthly_usage (one of them)",
                "threshold",
            )
        if spec.threshold is not None and not 0 <= spec.threshold.micros <= BALANCE_MICROS_MAX:
            raise Invalid("amount_negative", "threshold cannot be negative", "threshold")
        percent = _percent_bp(spec.threshold_percent) if spec.threshold_percent else None
        if spec.type == "usage" and spec.period not in rules.PERIODS:
            raise Invalid("invalid_period", "a usage alert's period is day or month", "period")
        if spec.type == "low_balance" and (spec.period is not None or spec.service is not None):
            raise Invalid(
                "invalid_period", "a low-balance alert has no period or service", "period"
            )
        if spec.service is not None and spec.service not in SERVICES:
            raise Invalid("invalid_service", f"service is one of {list(SERVICES)}", "service")
        if spec.frequency not in rules.FREQUENCIES:
            raise Invalid("invalid_frequency", "frequency is once or every_24_hours", "frequency")
        channels = list(dict.fromkeys(spec.channels))
        if not channels or any(c not in rules.CHANNELS for c in channels):
            raise Invalid(
                "invalid_channel", f"channels are some of {list(rules.CHANNELS)}", "channels"
            )
        emails = [check_email(e) for e in spec.emails]
        for i, phone in enumerate(spec.phones):
            if not PHONE.fullmatch(phone):
                raise Invalid(
                    "invalid_phone", "phones are E.164: +919800000001", f"recipients.phones.{i}"
                )
        if len(emails) > RECIPIENTS_MAX or len(spec.phones) > RECIPIENTS_MAX:
            raise Invalid("validation_error", "at most 20 recipients of each kind", "recipients")
        if "email" in channels and not emails:
            raise Invalid(
                "recipients_required",
                "the email channel needs recipients.emails",
                "recipients.emails",
            )
        if "sms" in channels and not spec.phones:
            raise Invalid(
                "recipients_required",
                "the sms channel needs recipients.phones",
                "recipients.phones",
            )
        if spec.webhook_url is not None:
            self.check_url(spec.webhook_url)
        if "webhook" in channels and not (spec.webhook_url or (settings and settings.webhook_url)):
            raise Invalid(
                "recipients_required", "the webhook channel needs webhook_url", "webhook_url"
            )
        if spec.action is not None and len(spec.action) > 200:
            raise Invalid("validation_error", "action is at most 200 characters", "action")
        now_us = to_micros(self.clock.now())
        return AlertRow(
            id=new_id("al"),
            account_id="",
            name=spec.name,
            type=spec.type,
            threshold_micros=spec.threshold.micros if spec.threshold is not None else None,
            threshold_percent_bp=percent,
            period=spec.period,
            service=spec.service,
            channels_json=json.dumps(channels),
            recipients_json=json.dumps({"emails": emails, "phones": list(spec.phones)}),
            webhook_url=spec.webhook_url,
            frequency=spec.frequency,
            action=spec.action,
            state="armed",
            last_triggered_at_us=None,
            next_check_at_us=None,
            created_at_us=now_us,
            updated_at_us=now_us,
        )

    def check_url(self, url: str) -> None:
        if len(url) > 2000:
            raise Invalid("webhook_url_not_allowed", "at most 2000 characters", "webhook_url")
        try:
            check_webhook_url(url, self.allow_private)
        except UnsafeUrl as exc:
            raise Invalid("webhook_url_not_allowed", str(exc), "webhook_url") from exc

    # -- alerts CRUD -----------------------------------------------------------------------
    def create(self, account_id: str, spec: AlertSpec) -> AlertRow:
        """Create an alert and evaluate it at once: a condition that already holds fires."""

        def command(cmd: Command) -> AlertRow:
            alert = self._check(spec, alerts_store.read_settings(cmd.conn, account_id))
            if len(alerts_store.account_alerts(cmd.conn, account_id)) >= ALERTS_PER_ACCOUNT_MAX:
                raise Invalid(
                    "too_many_alerts",
                    f"an account has at most {ALERTS_PER_ACCOUNT_MAX} alerts; delete one first",
                )
            alert.account_id = account_id
            alerts_store.insert_alert(cmd.conn, alert)
            self._evaluate(cmd, alert)
            return alert

        return self.ledger.run_command(account_id, None, None, AlertRow, command)

    def recommended(
        self, account_id: str, channels: list[str], emails: list[str], phones: list[str]
    ) -> list[AlertRow]:
        """The brief's three levels, as low-balance alerts on a percentage of average
        monthly usage, each with its suggested action."""
        created = []
        for level, percent, action in rules.RECOMMENDED:
            spec = AlertSpec(
                name=f"{level}: {percent}% of average monthly usage",
                type="low_balance",
                channels=channels,
                threshold_percent=str(percent),
                emails=emails,
                phones=phones,
                action=action,
            )
            created.append(self.create(account_id, spec))
        return created

    def get(self, account_id: str, alert_id: str) -> AlertRow:
        with self.db.read() as conn:
            alert = alerts_store.find_alert(conn, account_id, alert_id)
        if alert is None:
            raise NotFound("alert_not_found", f"no alert {alert_id!r}")
        return alert

    def all(self, account_id: str) -> list[AlertRow]:
        with self.db.read() as conn:
            return alerts_store.account_alerts(conn, account_id)

    def list_page(
        self, account_id: str, limit: int, after: tuple[int, str] | None
    ) -> list[AlertRow]:
        """A page of the account's alerts, oldest first; `after` is the (created_at_us, id)
        of the last alert of the previous page."""
        with self.db.read() as conn:
            return alerts_store.list_alerts(conn, account_id, limit, after)

    def update(self, account_id: str, alert_id: str, changes: dict[str, Any]) -> AlertRow:
        """PATCH: the given fields replace the alert's; it is re-armed and evaluated again."""

        def command(cmd: Command) -> AlertRow:
            alert = alerts_store.find_alert(cmd.conn, account_id, alert_id)
            if alert is None:
                raise NotFound("alert_not_found", f"no alert {alert_id!r}")
            spec = _spec_of(alert)
            for key, value in changes.items():
                setattr(spec, key, value)
            if "threshold" in changes and changes["threshold"] is not None:
                spec.threshold_percent = None
            if changes.get("threshold_percent") is not None:
                spec.threshold = None
            fresh = self._check(spec, alerts_store.read_settings(cmd.conn, account_id))
            fresh.id, fresh.account_id, fresh.created_at_us = (
                alert.id,
                account_id,
                alert.created_at_us,
            )
            fresh.last_triggered_at_us = alert.last_triggered_at_us
            alerts_store.update_alert(cmd.conn, fresh)
            self._evaluate(cmd, fresh)
            return fresh

        return self.ledger.run_command(account_id, None, None, AlertRow, command)

    def delete(self, account_id: str, alert_id: str) -> None:
        def command(cmd: Command) -> None:
            if not alerts_store.delete_alert(cmd.conn, account_id, alert_id):
                raise NotFound("alert_not_found", f"no alert {alert_id!r}")

        self.ledger.run_command(account_id, None, None, type(None), command)

    # -- notification settings and the webhook secret --------------------------------------
    def settings(self, account_id: str) -> SettingsRow:
        """Where system notices go. Never set: an empty row, not stored, whose secret is ""
        (a secret is made on first use: `webhook_secret`)."""
        with self.db.read() as conn:
            if store.read_account_state(conn, account_id) is None:
                raise NotFound("account_not_found", f"no account {account_id!r}")
            row = alerts_store.read_settings(conn, account_id)
        return row or SettingsRow(account_id, [], [], None, "", 0)

    def webhook_secret(self, account_id: str) -> str:
        """The account's webhook signing secret, made (and stored) on first use."""

        def command(cmd: Command) -> SettingsRow:
            return self._settings(cmd)

        return self.ledger.run_command(account_id, None, None, SettingsRow, command).webhook_secret

    def put_settings(
        self, account_id: str, emails: list[str], phones: list[str], webhook_url: str | None
    ) -> SettingsRow:
        checked = [check_email(e) for e in emails]
        for i, phone in enumerate(phones):
            if not PHONE.fullmatch(phone):
                raise Invalid("invalid_phone", "phones are E.164: +919800000001", f"phones.{i}")
        if webhook_url is not None:
            self.check_url(webhook_url)

        def command(cmd: Command) -> SettingsRow:
            row = self._settings(cmd)
            row.emails, row.phones, row.webhook_url = checked, list(phones), webhook_url
            row.updated_at_us = cmd.now_us
            alerts_store.write_settings(cmd.conn, row)
            return row

        return self.ledger.run_command(account_id, None, None, SettingsRow, command)

    def rotate_secret(self, account_id: str) -> SettingsRow:
        def command(cmd: Command) -> SettingsRow:
            row = self._settings(cmd)
            row.webhook_secret, row.updated_at_us = webhooks.new_secret(), cmd.now_us
            alerts_store.write_settings(cmd.conn, row)
            return row

        return self.ledger.run_command(account_id, None, None, SettingsRow, command)

    @staticmethod
    def _settings(cmd: Command) -> SettingsRow:
        row = alerts_store.read_settings(cmd.conn, cmd.state.account_id)
        if row is None:
            row = notices.default_settings(cmd.state.account_id, cmd.now_us)
            alerts_store.write_settings(cmd.conn, row)
        return row

    # -- evaluation ------------------------------------------------------------------------
    def on_change(self, cmd: Command) -> None:
        """The ledger trigger: after every money movement, before its commit. Only alerts
        the movement can change are evaluated: an armed low-balance alert when the balance
        fell, a triggered one when it rose (re-arming), an armed usage alert when usage was
        charged. Time alone (repeats, new periods) is the scheduler job's."""
        before, after = cmd.available_before, cmd.state.available_micros
        if before > 0 >= after:
            self._balance_zero(cmd)
        charged = any(kind in USAGE_ENTRY_KINDS for kind in cmd.kinds)
        figures: Figures | None = None
        cached = alerts_store.cached_alerts(
            cmd.conn, cmd.state.account_id, cmd.state.config_version
        )
        for alert in cached:
            if alert.type == "low_balance":
                armed = alert.state == "armed"
                relevant = after < before if armed else after > before
            else:
                relevant = alert.state == "armed" and charged
            if relevant:
                figures = figures or Figures(cmd.conn, cmd.state, cmd.today)
                self._evaluate(cmd, copy.copy(alert), figures)

    def average_monthly_usage(self, account_id: str) -> int | None:
        """The average monthly usage that percentage thresholds apply to, now."""
        with self.db.read() as conn:
            state = store.read_account_state(conn, account_id)
            if state is None:
                raise NotFound("account_not_found", f"no account {account_id!r}")
            today = local_date(self.clock.now(), state.timezone).isoformat()
            return Figures(conn, state, today).average_monthly_usage()

    def _evaluate(self, cmd: Command, alert: AlertRow, figures: Figures | None = None) -> None:
        figures = figures or Figures(cmd.conn, cmd.state, cmd.today)
        now_us = cmd.now_us
        repeat_due = (
            alert.last_triggered_at_us is not None
            and alert.last_triggered_at_us + rules.REPEAT_SECONDS * 1_000_000 <= now_us
        )
        threshold, average = self._threshold(alert, figures)
        before = (alert.state, alert.last_triggered_at_us, alert.next_check_at_us)
        if threshold is not None:
            if alert.type == "low_balance":
                measured = Money(cmd.state.available_micros)
                decision = rules.low_balance(
                    alert.state, alert.frequency, threshold, measured, repeat_due
                )
            else:
                measured = self._usage(alert, figures)
                decision = rules.usage(
                    alert.state, alert.frequency, threshold, measured, repeat_due
                )
            if decision.fire:
                alert.state, alert.last_triggered_at_us = "triggered", now_us
                self._fire(cmd, alert, threshold, average, measured, figures)
            elif decision.rearm:
                alert.state = "armed"
        alert.next_check_at_us = self._next_check(alert, cmd.state.timezone)
        if (alert.state, alert.last_triggered_at_us, alert.next_check_at_us) != before:
            alert.updated_at_us = now_us
            alerts_store.update_alert(cmd.conn, alert)

    def _next_check(self, alert: AlertRow, tz: str) -> int | None:
        """When time alone may change the alert: a repeat 24 h after it fired, or (usage
        alerts) the start of the next period, which re-arms it."""
        if alert.state != "triggered" or alert.last_triggered_at_us is None:
            return None
        last = alert.last_triggered_at_us
        candidates = []
        if alert.frequency == "every_24_hours":
            candidates.append(last + rules.REPEAT_SECONDS * 1_000_000)
        if alert.type == "usage":
            start = next_day_start if alert.period == "day" else next_month_start
            candidates.append(to_micros(start(from_micros(last), tz)))
        return min(candidates) if candidates else None

    @staticmethod
    def _threshold(alert: AlertRow, figures: Figures) -> tuple[Money | None, int | None]:
        if alert.threshold_micros is not None:
            return Money(alert.threshold_micros), None
        assert alert.threshold_percent_bp is not None
        average = figures.average_monthly_usage()
        if average is None:
            return None, None
        return rules.percent_of(average, alert.threshold_percent_bp), average

    @staticmethod
    def _usage(alert: AlertRow, figures: Figures) -> Money:
        if alert.service is not None:
            today, month = figures.service(alert.service)
            return Money(today if alert.period == "day" else month)
        if alert.period == "day":
            return Money(figures.days.get(figures.today_text, 0))
        first = figures.month_start.isoformat()
        return Money(sum(v for d, v in figures.days.items() if d >= first))

    # -- messages --------------------------------------------------------------------------
    @staticmethod
    def _burn(cmd: Command, figures: Figures) -> tuple[Money, Money, float | None]:
        """(used today, average per day over the last 7 days, hours the money lasts)."""
        first = (figures.today - timedelta(days=6)).isoformat()
        week = Money(sum(v for d, v in figures.days.items() if d >= first))
        hours = rules.hours_to_zero(Money(cmd.state.available_micros), week)
        today = Money(figures.days.get(cmd.today, 0))
        return today, Money(week.micros // 7), hours

    def _fire(
        self,
        cmd: Command,
        alert: AlertRow,
        threshold: Money,
        average: int | None,
        measured: Money,
        figures: Figures,
    ) -> None:
        cur = cmd.state.currency
        today, per_day, hours = self._burn(cmd, figures)
        available = Money(cmd.state.available_micros)
        basis = ""
        if alert.threshold_percent_bp is not None and average is not None:
            basis = (
                f" ({percent_text(alert.threshold_percent_bp)}% of your average monthly usage"
                f" of {cur} {Money(average).rounded().display()})"
            )
        if alert.type == "low_balance":
            event = "low_balance"
            what = (
                f"The available balance of account {cmd.state.account_id} is {cur} "
                f"{available.display()}, below the threshold of {cur} {threshold.display()}{basis}."
            )
            todo = alert.action or "Add credits to keep calls and messages going."
        else:
            event = "usage_threshold"
            period = "today" if alert.period == "day" else "this month"
            scope = f"{alert.service} usage" if alert.service else "Usage"
            what = (
                f"{scope} of account {cmd.state.account_id} {period} reached {cur} "
                f"{measured.display()}, at or above the threshold of {cur} {threshold.display()}"
                f"{basis}. Available balance: {cur} {available.display()}."
            )
            todo = alert.action or "Review usage in Billing > Usage, or set spending limits."
        message = (
            f"{what} Used today: {cur} {today.display()}. "
            f"{rules.runway_sentence(hours, f'{cur} {per_day.rounded().display()}')} "
            f"What to do: {todo} Dashboard: {self.public_url}/billing"
        )
        data = {
            "alert_id": alert.id,
            "alert_name": alert.name,
            "threshold": threshold.format(),
            "available_balance": available.format(),
            "measured": measured.format(),
            "used_today": today.format(),
            "average_daily_usage_7d": per_day.format(),
            "runway": rules.describe_runway(hours),
            "action": todo,
            "dashboard": f"{self.public_url}/billing",
        }
        notices.record(
            cmd.conn, cmd.state.account_id, Notice(event, message, data), cmd.now_us, alert=alert
        )

    def _balance_zero(self, cmd: Command) -> None:
        cur = cmd.state.currency
        available = Money(cmd.state.available_micros)
        message = (
            f"The available balance of account {cmd.state.account_id} is {cur} "
            f"{available.display()}: outbound calls and SMS have stopped. Inbound calls follow "
            "your inbound policy. What to do: add credits now (Billing > Add Credits), and "
            "keep a buffer above zero with low-balance alerts or auto-recharge. "
            f"Dashboard: {self.public_url}/billing"
        )
        notice = Notice("balance_zero", message, {"available_balance": available.format()})
        notices.record(cmd.conn, cmd.state.account_id, notice, cmd.now_us)

    # -- time-driven work ------------------------------------------------------------------
    def run_due(self) -> int:
        now = self.clock.now()
        now_us = to_micros(now)
        with self.db.read() as conn:
            due = alerts_store.alerts_due(conn, now_us, SWEEP_BATCH_MAX)
            expiring = self._expiring(conn, now_us) if self.promo_notice_days else []
        for account_id, alert_id in due:
            self.ledger.run_command(
                account_id, None, None, type(None), partial(self._recheck, alert_id=alert_id)
            )
        for account_id, lot_id in expiring:
            self.ledger.run_command(
                account_id, None, None, type(None), partial(self._expiry_notice, lot_id=lot_id)
            )
        return len(due) + len(expiring)

    def _recheck(self, cmd: Command, alert_id: str) -> None:
        alert = alerts_store.find_alert(cmd.conn, cmd.state.account_id, alert_id)
        if alert is None or alert.last_triggered_at_us is None:
            return
        if alert.type == "usage":
            start = next_day_start if alert.period == "day" else next_month_start
            period_end = to_micros(
                start(from_micros(alert.last_triggered_at_us), cmd.state.timezone)
            )
            if cmd.now_us >= period_end:
                alert.state = "armed"  # a new period: its usage starts from zero
        self._evaluate(cmd, alert)
        if alert.next_check_at_us is not None and alert.next_check_at_us <= cmd.now_us:
            alert.next_check_at_us = None  # nothing more that time alone changes
            alerts_store.update_alert(cmd.conn, alert)

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            dues = [alerts_store.next_alert_check(conn)]
            if self.promo_notice_days:
                dues.append(self._next_expiry_notice(conn))
        values = [d for d in dues if d is not None]
        return from_micros(min(values)) if values else None

    def _unnotified_lots(self) -> Any:
        lots = credit_lots.c
        key = sa.literal("promotional_credit_expiring:") + lots.id
        seen = sa.exists().where(
            notifications.c.account_id == lots.account_id, notifications.c.dedupe_key == key
        )
        return (
            lots.kind == "promotional",
            lots.remaining_micros > 0,
            lots.expires_at_us.is_not(None),
            ~seen,
        )

    def _expiring(self, conn: sa.Connection, now_us: int) -> list[tuple[str, str]]:
        horizon = now_us + self.promo_notice_days * 86_400 * 1_000_000
        lots = credit_lots.c
        query = (
            sa.select(lots.account_id, lots.id)
            .where(
                *self._unnotified_lots(), lots.expires_at_us > now_us, lots.expires_at_us <= horizon
            )
            .limit(SWEEP_BATCH_MAX)
        )
        return [(r[0], r[1]) for r in conn.execute(query)]

    def _next_expiry_notice(self, conn: sa.Connection) -> int | None:
        lots = credit_lots.c
        now_us = to_micros(self.clock.now())
        value = conn.execute(
            sa.select(sa.func.min(lots.expires_at_us)).where(
                *self._unnotified_lots(), lots.expires_at_us > now_us
            )
        ).scalar()
        if value is None:
            return None
        return max(int(value) - self.promo_notice_days * 86_400 * 1_000_000, now_us)

    def _expiry_notice(self, cmd: Command, lot_id: str) -> None:
        lot = cmd.book.lots.get(lot_id)
        if lot is None or lot.expires_at is None or not lot.remaining.is_positive():
            return
        cur = cmd.state.currency
        when = lot.expires_at.astimezone(ZoneInfo(cmd.state.timezone))
        message = (
            f"{cur} {lot.remaining.display()} of promotional credit on account "
            f"{cmd.state.account_id} expires at {when:%Y-%m-%d %H:%M} ({cmd.state.timezone}) "
            "and is then forfeited. Promotional credit is spent first, so ordinary usage uses "
            f"it up; nothing needs doing unless you expected to keep it. Dashboard: "
            f"{self.public_url}/billing"
        )
        notice = Notice(
            "promotional_credit_expiring",
            message,
            {
                "credit_id": lot.id,
                "remaining": lot.remaining.format(),
                "expires_at": lot.expires_at.isoformat().replace("+00:00", "Z"),
            },
        )
        notices.record(
            cmd.conn,
            cmd.state.account_id,
            notice,
            cmd.now_us,
            dedupe_key=f"promotional_credit_expiring:{lot.id}",
        )


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _spec_of(alert: AlertRow) -> AlertSpec:
    recipients = alert.recipients
    return AlertSpec(
        name=alert.name,
        type=alert.type,
        channels=alert.channels,
        frequency=alert.frequency,
        threshold=Money(alert.threshold_micros) if alert.threshold_micros is not None else None,
        threshold_percent=(
            percent_text(alert.threshold_percent_bp) if alert.threshold_percent_bp else None
        ),
        period=alert.period,
        service=alert.service,
        emails=recipients.get("emails", []),
        phones=recipients.get("phones", []),
        webhook_url=alert.webhook_url,
        action=alert.action,
    )

"""Spending limits and campaign budgets: their settings, the gate that every outbound call,
extension, SMS and WhatsApp charge passes (inside its ledger command, under the account
lock), the pauses a reached cap causes and their end at the next local day, week (ISO:
Monday 00:00) or month.

The decision itself is pure (`domain.limits`); this module reads its facts, and writes what
a decision causes: a pause marker, a paused campaign, a notification event. A refusal keeps
those writes (the command commits them, then answers 402), and moves no money.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db import limits_store, store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.limits_store import CampaignRow, LimitsRow
from usagewatch.adapters.db.schema import usage_rollups
from usagewatch.domain import limits as gate
from usagewatch.domain import rating
from usagewatch.domain.clock import (
    Clock,
    format_instant,
    from_micros,
    local_date,
    next_day_start,
    next_month_start,
    next_week_start,
    to_micros,
    week_start,
)
from usagewatch.domain.errors import Conflict, Invalid, NotFound
from usagewatch.domain.limits import CallAllowance, GateFacts, Limits
from usagewatch.domain.money import BALANCE_MICROS_MAX, Money
from usagewatch.domain.simulation import PastUsage, SimulationResult, simulate
from usagewatch.service import notifications
from usagewatch.service.ledger import Command, LedgerService, Refusal
from usagewatch.service.notifications import Notice
from usagewatch.service.rates import RateService

CAMPAIGN_ID_LENGTH_MAX = 64
SIMULATION_DAYS = 30
SWEEP_BATCH_MAX = 500
# Per cap that pauses for its period: its name, the period's words, when the next period
# begins, and the column of its pause; then what the notice says when a pause ends by itself.
_PERIODS: dict[str, tuple[str, str, Callable[[datetime, str], datetime], str]] = {
    gate.DAILY_CAP: ("daily", "today", next_day_start, "daily_paused_until_us"),
    gate.WEEKLY_CAP: ("weekly", "this week", next_week_start, "weekly_paused_until_us"),
    gate.MONTHLY_CAP: ("monthly", "this month", next_month_start, "monthly_paused_until_us"),
}
_PAUSE_ENDS = {
    "daily_paused_until_us": "a new day began",
    "weekly_paused_until_us": "a new week began",
    "monthly_paused_until_us": "a new month began",
}


@dataclass(frozen=True, slots=True)
class Gate:
    """What the gate read under the lock for one decision."""

    facts: GateFacts
    row: LimitsRow | None
    campaign: CampaignRow | None


@dataclass(frozen=True, slots=True)
class LimitsView:
    limits: Limits
    daily_paused_until_us: int | None
    weekly_paused_until_us: int | None
    monthly_paused_until_us: int | None
    charged_today_micros: int
    charged_this_week_micros: int
    charged_this_month_micros: int
    reserved_micros: int
    updated_at_us: int | None


@dataclass(frozen=True, slots=True)
class Simulation:
    first_date: str
    last_date: str
    currency: str
    timezone: str
    limits: Limits
    result: SimulationResult


@dataclass(frozen=True, slots=True)
class CampaignView:
    campaign: CampaignRow
    held_micros: int


def check_limits(limits: Limits, card: rating.RateCard) -> Limits:
    """422 for caps that make no sense; returns them unchanged."""
    for field, cap in (
        ("daily_cap", limits.daily_cap),
        ("weekly_cap", limits.weekly_cap),
        ("monthly_cap", limits.monthly_cap),
    ):
        if cap is not None and cap.micros < 0:
            raise Invalid("amount_negative", f"{field} cannot be negative", field)
        if cap is not None and cap.micros > BALANCE_MICROS_MAX:
            raise Invalid("amount_too_large", f"{field} is too large", field)
    cost = limits.per_call_max_cost
    if cost is not None and not cost.is_positive():
        raise Invalid(
            "amount_not_positive", "per_call_max_cost must be above zero", "per_call_max_cost"
        )
    duration = limits.per_call_max_duration_seconds
    if duration is not None and duration < card.pulse_seconds:
        raise Invalid(
            "per_call_duration_too_short",
            f"per_call_max_duration_seconds must be at least one pulse ({card.pulse_seconds} s)",
            "per_call_max_duration_seconds",
        )
    if duration is not None and duration > 86_400:
        raise Invalid("invalid_duration", "at most 86,400 seconds", "per_call_max_duration_seconds")
    return limits


def check_campaign_id(campaign_id: str) -> str:
    """1-64 printable characters that can stand as one segment of the campaign's URL
    (`…/campaigns/{campaign_id}`): no '/', not '.' or '..'."""
    if (
        not 1 <= len(campaign_id) <= CAMPAIGN_ID_LENGTH_MAX
        or not campaign_id.isprintable()
        or "/" in campaign_id
        or campaign_id in (".", "..")
    ):
        raise Invalid(
            "validation_error",
            "campaign_id is 1-64 printable characters, without '/' (it is part of a URL)",
            "campaign_id",
        )
    return campaign_id


def check_budget(budget: Money) -> Money:
    if budget.micros < 0:
        raise Invalid("amount_negative", "budget cannot be negative", "budget")
    if budget.micros > BALANCE_MICROS_MAX:
        raise Invalid("amount_too_large", "budget is too large", "budget")
    return budget


class LimitsService:
    def __init__(
        self, db: Database, clock: Clock, ledger: LedgerService, rates: RateService
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.rates = rates

    # -- the gate, inside a command --------------------------------------------------------
    def read_gate(self, cmd: Command, campaign_id: str | None) -> Gate:
        """The facts of a decision. The limits come from the per-process cache (by the
        account's config_version); the day's and month's charges are read only when a cap
        needs them, and the campaign only when the usage carries one, so usage under no
        cap and no campaign reads nothing more."""
        state = cmd.state
        row = limits_store.cached_limits(cmd.conn, state.account_id, state.config_version)
        limits = row.limits.effective() if row is not None else Limits()
        charged_today = charged_this_week = charged_this_month = 0
        campaign = campaign_facts = None
        if campaign_id is not None or any(
            cap is not None for cap in (limits.daily_cap, limits.weekly_cap, limits.monthly_cap)
        ):
            day = cmd.today
            monday = week_start(date.fromisoformat(day)).isoformat()
            read = limits_store.read_gate(
                cmd.conn, state.account_id, campaign_id, day[:8] + "01", day, monday
            )
            row = read.limits  # the same, unless this very command changed them
            limits = row.limits.effective() if row is not None else Limits()
            charged_today, charged_this_month = read.charged_today, read.charged_this_month
            charged_this_week = read.charged_this_week
            campaign, campaign_facts = read.campaign, read.campaign_facts
        now = cmd.now_us
        facts = GateFacts(
            account_status=state.status,
            available=Money(state.available_micros),
            reserved=Money(state.reserved_micros),
            charged_today=Money(charged_today),
            charged_this_week=Money(charged_this_week),
            charged_this_month=Money(charged_this_month),
            daily_paused=_pausing(row.daily_paused_until_us if row else None, now),
            weekly_paused=_pausing(row.weekly_paused_until_us if row else None, now),
            monthly_paused=_pausing(row.monthly_paused_until_us if row else None, now),
            limits=limits,
            campaign=campaign_facts,
        )
        return Gate(facts, row, campaign)

    def admit_charge(self, cmd: Command, price: Money, campaign_id: str | None) -> Gate:
        """Refuse (402, after committing the pause it causes) an outbound charge that a
        limit does not allow; else return what was read, for `committed`."""
        read = self.read_gate(cmd, campaign_id)
        denial = gate.check_charge(read.facts, price)
        if denial is not None:
            raise Refusal(denial.error(), self._pausing_for(denial.code, campaign_id))
        return read

    def admit_call(
        self,
        cmd: Command,
        card: rating.RateCard,
        direction: rating.CallDirection,
        campaign_id: str | None,
        *,
        held: Money,
        platform_max_seconds: int,
    ) -> tuple[Gate, CallAllowance]:
        """How long may this call run in all (counting what it already holds)? Refuses
        (402) when not one more pulse is allowed."""
        read = self.read_gate(cmd, campaign_id)
        allowance = gate.call_allowance(
            read.facts,
            card,
            direction,
            held=held,
            platform_max_seconds=platform_max_seconds,
            inbound_at_zero=cmd.state.inbound_at_zero,
        )
        return read, allowance

    def refuse(
        self, read: Gate, code: str, campaign_id: str | None, needed: Money | None = None
    ) -> Refusal:
        """The refusal for `code`; once it rolled back, it pauses what it pauses."""
        room = read.facts.available if code == gate.INSUFFICIENT_BALANCE else None
        error = gate.Denial(code, needed, room).error()
        return Refusal(error, self._pausing_for(code, campaign_id))

    def _pausing_for(self, code: str, campaign_id: str | None) -> Callable[[Command], None]:
        """What a refusal by `code` causes, as a command run after the refused one rolled
        back: the pause (once: an account or campaign already paused stays as it is)."""

        def command(cmd: Command) -> None:
            self._pause(cmd, self.read_gate(cmd, campaign_id), code)

        return command

    def committed(self, cmd: Command, read: Gate, amount: Money, outbound: bool = True) -> None:
        """After a gated charge or hold of `amount`: a cap or budget it used up exactly
        pauses now (so the balance shows it and the notice goes out at once)."""
        if amount.is_positive():
            for code in gate.reached_after(read.facts, amount, outbound):
                self._pause(cmd, read, code)

    def _pause(self, cmd: Command, read: Gate, code: str) -> None:
        account_id = cmd.state.account_id
        if code in _PERIODS and read.row is not None:
            cap, spent, paused = read.facts.cap_standing(code)
            if paused:
                return
            name, period, next_start, column = _PERIODS[code]
            tz = cmd.state.timezone
            until = next_start(cmd.now, tz)
            limits_store.set_paused_until(cmd.conn, account_id, column, to_micros(until))
            assert cap is not None
            local_until = until.astimezone(ZoneInfo(tz))
            message = (
                f"Outbound calls and messages of account {account_id} are paused: spending "
                f"{period} ({cmd.state.currency} {spent.display()} charged, "
                f"{cmd.state.currency} {read.facts.reserved.display()} held for calls in "
                f"progress) reached the {name} cap of "
                f"{cmd.state.currency} {cap.display()}. They resume by themselves at "
                f"{local_until:%Y-%m-%d %H:%M} ({tz}). To resume sooner, raise or disable "
                "the cap in Billing > Spending Limits. Inbound calls continue."
            )
            notice = Notice(
                code,
                message,
                {
                    "cap": name,
                    "cap_amount": cap.format(),
                    "charged": spent.format(),
                    "reserved": read.facts.reserved.format(),
                    "paused_until": format_instant(until),
                },
            )
            notifications.record(cmd.conn, account_id, notice, cmd.now_us)
        elif code == gate.CAMPAIGN_EXHAUSTED and read.campaign is not None:
            if read.campaign.status == "paused":
                return
            campaign_id = read.campaign.campaign_id
            limits_store.set_campaign_status(
                cmd.conn, account_id, campaign_id, "paused", gate.CAMPAIGN_EXHAUSTED, cmd.now_us
            )
            campaign = limits_store.find_campaign(cmd.conn, account_id, campaign_id)
            assert campaign is not None
            self._campaign_notice(cmd.conn, campaign, "campaign_paused", cmd.now_us, cmd.state)

    @staticmethod
    def _campaign_notice(
        conn: Connection, campaign: CampaignRow, event: str, now_us: int, state: store.AccountState
    ) -> None:
        currency = state.currency
        spent, budget = Money(campaign.spent_micros), Money(campaign.budget_micros)
        if event == "campaign_paused":
            message = (
                f"Campaign {campaign.name!r} ({campaign.campaign_id}) is paused: it has spent "
                f"{currency} {spent.display()} of its {currency} {budget.display()} budget. "
                "The rest of the account's traffic goes on. To resume it, raise its budget in "
                "Billing > Spending Limits."
            )
        else:
            message = (
                f"Campaign {campaign.name!r} ({campaign.campaign_id}) is active again: "
                f"{currency} {spent.display()} spent of a {currency} {budget.display()} budget."
            )
        notice = Notice(
            event,
            message,
            {
                "campaign_id": campaign.campaign_id,
                "budget": budget.format(),
                "spent": spent.format(),
                "reason": campaign.paused_reason,
            },
        )
        notifications.record(conn, campaign.account_id, notice, now_us)

    # -- settings ------------------------------------------------------------------------
    def get(self, account_id: str) -> LimitsView:
        with self.db.read() as conn:
            state = store.read_account_state(conn, account_id)
            if state is None:
                raise NotFound("account_not_found", f"no account {account_id!r}")
            return self._view(conn, state, self.clock.now())

    def put(self, account_id: str, limits: Limits, keep_weekly_cap: bool = False) -> LimitsView:
        """Replace the account's limits; they apply to the next decision. A pause that a
        cap caused ends now (a cap still exceeded pauses again at the next request).
        `keep_weekly_cap`: the weekly cap stays as it is (a client that predates it sent
        none), read under the account's lock so a concurrent change is not undone."""

        def command(cmd: Command) -> LimitsView:
            wanted = limits
            if keep_weekly_cap:
                current = limits_store.read_limits(cmd.conn, account_id)
                kept = current.limits.weekly_cap if current is not None else None
                wanted = replace(limits, weekly_cap=kept)
            check_limits(wanted, self.rates.card_in(cmd.conn, account_id))
            self._write(cmd, wanted, resumed_because="the spending limits were changed")
            return self._view(cmd.conn, cmd.state, cmd.now)

        return self.ledger.run_command(account_id, None, None, LimitsView, command)

    def _write(self, cmd: Command, limits: Limits, resumed_because: str | None) -> None:
        before = limits_store.read_limits(cmd.conn, cmd.state.account_id)
        limits_store.write_limits(cmd.conn, cmd.state.account_id, limits, cmd.now_us)
        if (
            before is not None
            and resumed_because is not None
            and any(_pausing(until, cmd.now_us) for _, until in before.paused_until())
        ):
            self._resumed_notice(cmd, resumed_because)

    def _resumed_notice(self, cmd: Command, because: str) -> None:
        notice = Notice(
            "outbound_resumed",
            f"Outbound calls and messages of account {cmd.state.account_id} may go ahead "
            f"again: {because}.",
            {"reason": because},
        )
        notifications.record(cmd.conn, cmd.state.account_id, notice, cmd.now_us)

    @staticmethod
    def _view(conn: Connection, state: store.AccountState, at: datetime) -> LimitsView:
        row = limits_store.read_limits(conn, state.account_id)
        today = local_date(at, state.timezone)
        day, month_start = today.isoformat(), today.isoformat()[:8] + "01"
        monday = week_start(today).isoformat()
        days = limits_store.charged_by_day(conn, state.account_id, min(monday, month_start))
        now = to_micros(at)
        return LimitsView(
            limits=row.limits if row is not None else Limits(),
            daily_paused_until_us=_live(row.daily_paused_until_us if row else None, now),
            weekly_paused_until_us=_live(row.weekly_paused_until_us if row else None, now),
            monthly_paused_until_us=_live(row.monthly_paused_until_us if row else None, now),
            charged_today_micros=days.get(day, 0),
            charged_this_week_micros=sum(v for d, v in days.items() if d >= monday),
            charged_this_month_micros=sum(v for d, v in days.items() if d >= month_start),
            reserved_micros=state.reserved_micros,
            updated_at_us=row.updated_at_us if row is not None else None,
        )

    def outbound_block(
        self, conn: Connection, state: store.AccountState, days: dict[str, int], now: datetime
    ) -> str | None:
        """Why outbound is stopped right now, for the balance view (None = it is not)."""
        row = limits_store.read_limits(conn, state.account_id)
        limits = row.limits.effective() if row is not None else Limits()
        local_today = local_date(now, state.timezone)
        today, monday = local_today.isoformat(), week_start(local_today).isoformat()
        now_us = to_micros(now)
        facts = GateFacts(
            account_status=state.status,
            available=Money(state.available_micros),
            reserved=Money(state.reserved_micros),
            charged_today=Money(days.get(today, 0)),
            charged_this_week=Money(sum(v for d, v in days.items() if monday <= d <= today)),
            charged_this_month=Money(
                sum(v for d, v in days.items() if today[:8] + "01" <= d <= today)
            ),
            daily_paused=_pausing(row.daily_paused_until_us if row else None, now_us),
            weekly_paused=_pausing(row.weekly_paused_until_us if row else None, now_us),
            monthly_paused=_pausing(row.monthly_paused_until_us if row else None, now_us),
            limits=limits,
            campaign=None,
        )
        return gate.outbound_block(facts)

    # -- dry run ---------------------------------------------------------------------------
    def simulate(self, account_id: str, limits: Limits, days: int = SIMULATION_DAYS) -> Simulation:
        """What `limits` would have done over the last `days` account-local days (today
        included) of this account's real usage. Changes nothing."""
        with self.db.read() as conn:
            state = store.read_account_state(conn, account_id)
            if state is None:
                raise NotFound("account_not_found", f"no account {account_id!r}")
            card = self.rates.card_in(conn, account_id)
            check_limits(limits, card)
            zone = ZoneInfo(state.timezone)
            now = self.clock.now()
            today = local_date(now, state.timezone)
            first = today - timedelta(days=days - 1)
            dates = [(first + timedelta(days=i)).isoformat() for i in range(days)]
            start = datetime(first.year, first.month, first.day, tzinfo=zone)
            monday = week_start(first).isoformat()
            since = min(monday, dates[0][:8] + "01")
            before = limits_store.charged_by_day(conn, account_id, since)
            month_before = {
                dates[0][:7]: sum(
                    v for d, v in before.items() if dates[0][:8] + "01" <= d < dates[0]
                )
            }
            week_before = {monday: sum(v for d, v in before.items() if monday <= d < dates[0])}
            since_us = to_micros(start.astimezone(UTC))
            rows = limits_store.priced_usage_since(conn, account_id, since_us)
            usage = (
                PastUsage(
                    occurred_at=from_micros(at).astimezone(zone),
                    service=service,
                    outbound=service in ("sms", "whatsapp") or sub_type == "outbound",
                    price_micros=price,
                    pulses=quantity if service == "voice" else 0,
                    duration_seconds=duration,
                )
                for at, service, sub_type, price, quantity, duration in rows
            )
            result = simulate(usage, limits, card.pulse_seconds, month_before, dates, week_before)
        return Simulation(dates[0], dates[-1], state.currency, state.timezone, limits, result)

    # -- campaigns -----------------------------------------------------------------------
    def create_campaign(
        self, account_id: str, campaign_id: str, name: str, budget: Money
    ) -> CampaignView:
        """A budget for a campaign id. What the campaign already spent (its rollups) counts:
        a budget below it pauses the campaign at once."""
        check_campaign_id(campaign_id)
        _check_name(name)
        check_budget(budget)

        def command(cmd: Command) -> CampaignView:
            spent = _campaign_spent(cmd.conn, account_id, campaign_id)
            campaign = CampaignRow(
                account_id=account_id,
                campaign_id=campaign_id,
                name=name,
                budget_micros=budget.micros,
                spent_micros=spent,
                status="active",
                paused_reason=None,
                created_at_us=cmd.now_us,
                updated_at_us=cmd.now_us,
            )
            if limits_store.find_campaign(cmd.conn, account_id, campaign_id) is not None:
                raise Conflict("campaign_exists", f"campaign {campaign_id!r} exists", "campaign_id")
            limits_store.insert_campaign(cmd.conn, campaign)
            return self._settle_campaign(cmd, campaign)

        return self.ledger.run_command(account_id, None, None, CampaignView, command)

    def update_campaign(
        self,
        account_id: str,
        campaign_id: str,
        *,
        name: str | None = None,
        budget: Money | None = None,
        status: str | None = None,
    ) -> CampaignView:
        """Rename, re-budget, pause or resume. Raising the budget of a campaign its budget
        paused resumes it; `status: active` resumes it (a spent budget pauses it again at
        the next charge); `status: paused` pauses it by hand (`paused_by_user`)."""
        if name is not None:
            _check_name(name)
        if budget is not None:
            check_budget(budget)
        if status is not None and status not in ("active", "paused"):
            raise Invalid("invalid_status", "status is active or paused", "status")

        def command(cmd: Command) -> CampaignView:
            campaign = self._campaign(cmd.conn, account_id, campaign_id)
            was = campaign.status
            if name is not None:
                campaign.name = name
            if budget is not None:
                raised = budget.micros > campaign.budget_micros
                campaign.budget_micros = budget.micros
                if raised and campaign.paused_reason == gate.CAMPAIGN_EXHAUSTED:
                    campaign.status, campaign.paused_reason = "active", None
            if status == "active":
                campaign.status, campaign.paused_reason = "active", None
            elif status == "paused" and was == "active":
                campaign.status, campaign.paused_reason = "paused", "paused_by_user"
            campaign.updated_at_us = cmd.now_us
            limits_store.update_campaign(cmd.conn, campaign)
            if was == "paused" and campaign.status == "active":
                self._campaign_notice(cmd.conn, campaign, "campaign_resumed", cmd.now_us, cmd.state)
            return self._settle_campaign(cmd, campaign, by_hand=status == "active")

        return self.ledger.run_command(account_id, None, None, CampaignView, command)

    def _settle_campaign(
        self, cmd: Command, campaign: CampaignRow, by_hand: bool = False
    ) -> CampaignView:
        """A budget that what is spent and held already reaches pauses the campaign now
        (documented: a budget below the spend is accepted and pauses at once). Resuming by
        hand is left to the next charge to judge."""
        found = limits_store.campaign_facts(cmd.conn, campaign.account_id, campaign.campaign_id)
        assert found is not None
        _, facts = found
        if campaign.status == "active" and not by_hand and not facts.room.is_positive():
            campaign.status, campaign.paused_reason = "paused", gate.CAMPAIGN_EXHAUSTED
            campaign.updated_at_us = cmd.now_us
            limits_store.update_campaign(cmd.conn, campaign)
            self._campaign_notice(cmd.conn, campaign, "campaign_paused", cmd.now_us, cmd.state)
        return CampaignView(campaign, facts.held.micros)

    def get_campaign(self, account_id: str, campaign_id: str) -> CampaignView:
        with self.db.read() as conn:
            found = limits_store.campaign_facts(conn, account_id, campaign_id)
        if found is None:
            raise NotFound("campaign_not_found", f"no campaign {campaign_id!r}")
        return CampaignView(found[0], found[1].held.micros)

    def list_campaigns(self, account_id: str, limit: int, after: str | None) -> list[CampaignView]:
        """A page of campaigns with what their calls in progress hold, in one read."""
        with self.db.read() as conn:
            rows = limits_store.list_campaigns(conn, account_id, limit, after)
            held = limits_store.held_by_campaign(conn, account_id) if rows else {}
        return [CampaignView(row, held.get(row.campaign_id, 0)) for row in rows]

    @staticmethod
    def _campaign(conn: Connection, account_id: str, campaign_id: str) -> CampaignRow:
        campaign = limits_store.find_campaign(conn, account_id, campaign_id)
        if campaign is None:
            raise NotFound("campaign_not_found", f"no campaign {campaign_id!r}")
        return campaign

    # -- time-driven: pauses end at the next local day or month --------------------------
    def run_due(self) -> int:
        now_us = to_micros(self.clock.now())
        with self.db.read() as conn:
            due = limits_store.paused_accounts_due(conn, now_us, SWEEP_BATCH_MAX)
        for account_id in due:
            self.ledger.run_command(account_id, None, None, type(None), self._end_pauses)
        return len(due)

    def _end_pauses(self, cmd: Command) -> None:
        row = limits_store.read_limits(cmd.conn, cmd.state.account_id)
        if row is None:
            return
        ended = []
        for column, until in row.paused_until():
            if until is not None and until <= cmd.now_us:
                limits_store.set_paused_until(cmd.conn, cmd.state.account_id, column, None)
                ended.append(_PAUSE_ENDS[column])
        if ended and not any(_pausing(u, cmd.now_us) for _, u in row.paused_until()):
            self._resumed_notice(cmd, " and ".join(ended))

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            due = limits_store.next_pause_end(conn)
        return from_micros(due) if due is not None else None


def campaign_spends(
    account_id: str, groups: dict[tuple[str, ...], list[int]]
) -> list[dict[str, Any]]:
    """Campaign spend from batch rollup groups {(date, service, sub_type, consumer,
    campaign): [records, quantity, duration, cost]}."""
    spends: dict[str, int] = {}
    for key, sums in groups.items():
        if key[4] and sums[3]:
            spends[key[4]] = spends.get(key[4], 0) + sums[3]
    return [{"account": account_id, "campaign": c, "micros": m} for c, m in spends.items()]


def add_spend(conn: Connection, account_id: str, campaign_id: str | None, micros: int) -> None:
    """A charge of a campaign's usage counts toward its budget (no-op without a budget)."""
    if campaign_id and micros:
        limits_store.add_campaign_spend(
            conn, [{"account": account_id, "campaign": campaign_id, "micros": micros}]
        )


def _campaign_spent(conn: Connection, account_id: str, campaign_id: str) -> int:
    r = usage_rollups.c
    query = sa.select(sa.func.coalesce(sa.func.sum(r.cost_micros), 0)).where(
        r.account_id == account_id, r.campaign_id == campaign_id
    )
    return int(conn.execute(query).scalar_one())


def _check_name(name: str) -> None:
    if not 1 <= len(name) <= 200:
        raise Invalid("validation_error", "name is 1 to 200 characters", "name")


def _pausing(until_us: int | None, now_us: int) -> bool:
    return until_us is not None and now_us < until_us


def _live(until_us: int | None, now_us: int) -> int | None:
    return until_us if _pausing(until_us, now_us) else None

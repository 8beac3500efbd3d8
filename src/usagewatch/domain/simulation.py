"""Dry run of spending limits: what proposed limits would have done to real usage.

The account's priced usage of a period is replayed in the order it happened, through the
same rules the gate applies (domain.limits): the daily, weekly and monthly caps pause
outbound for the rest of the local day, week (Monday to Sunday) or month once a request
does not fit or spends the room exactly; the per-call cap cuts calls short; inbound calls,
number rentals and agent seats are never refused but count toward the caps.
Simplification, documented: a call is judged when it starts, as if its whole cost were
held then (the live gate holds it window by window).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime

from usagewatch.domain.clock import week_start
from usagewatch.domain.limits import DAILY_CAP, MONTHLY_CAP, WEEKLY_CAP, Limits


@dataclass(frozen=True, slots=True)
class PastUsage:
    occurred_at: datetime  # account-local (aware)
    service: str  # voice, sms, whatsapp, number, agent_seat
    outbound: bool  # voice: its direction; messages: True; rentals: False
    price_micros: int
    pulses: int  # voice: pulses charged; else 0
    duration_seconds: int  # voice: seconds; else 0


@dataclass(slots=True)
class DayResult:
    date: str
    actual_micros: int = 0
    simulated_micros: int = 0
    blocked_calls: int = 0
    shortened_calls: int = 0
    blocked_messages: int = 0
    paused_at: datetime | None = None  # account-local
    pause_reason: str | None = None

    @property
    def blocked_micros(self) -> int:
        return self.actual_micros - self.simulated_micros


@dataclass(slots=True)
class SimulationResult:
    days: dict[str, DayResult] = field(default_factory=dict)

    def day(self, date: str) -> DayResult:
        found = self.days.get(date)
        if found is None:
            found = self.days[date] = DayResult(date)
        return found

    def total(self, name: str) -> int:
        return sum(getattr(day, name) for day in self.days.values())


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def simulate(
    usage: Iterable[PastUsage],
    limits: Limits,
    pulse_seconds: int,
    month_spent_before: dict[str, int],
    dates: list[str],
    week_spent_before: dict[str, int],
) -> SimulationResult:
    """Replay `usage` (in time order) under `limits`. `month_spent_before` and
    `week_spent_before` (by the week's Monday): what each month and week had already
    charged before the first date (so those caps start from the truth)."""
    limits = limits.effective()
    result = SimulationResult()
    for date in dates:
        result.day(date)
    day_spent: dict[str, int] = {}
    week_spent = dict(week_spent_before)
    month_spent = dict(month_spent_before)
    paused_days: set[str] = set()
    paused_weeks: set[str] = set()
    paused_months: set[str] = set()
    mondays: dict[str, str] = {}  # date -> its week's Monday

    def pause(day: DayResult, code: str, at: datetime) -> None:
        if code == DAILY_CAP:
            paused_days.add(day.date)
        elif code == WEEKLY_CAP:
            paused_weeks.add(mondays[day.date])
        else:
            paused_months.add(day.date[:7])
        if day.paused_at is None:
            day.paused_at, day.pause_reason = at, code

    for item in usage:
        date = item.occurred_at.date().isoformat()
        month = date[:7]
        week = mondays.get(date)
        if week is None:
            week = mondays[date] = week_start(Date.fromisoformat(date)).isoformat()
        day = result.day(date)
        day.actual_micros += item.price_micros
        if item.price_micros <= 0:
            continue
        is_call = item.service == "voice"
        price, pulses = item.price_micros, item.pulses
        per_pulse = price // pulses if is_call and pulses > 0 else 0
        if is_call and per_pulse:
            if limits.per_call_max_duration_seconds is not None:
                seconds = min(item.duration_seconds, limits.per_call_max_duration_seconds)
                pulses = min(pulses, _ceil_div(seconds, pulse_seconds))
            if limits.per_call_max_cost is not None:
                pulses = min(pulses, limits.per_call_max_cost.micros // per_pulse)
        gated = item.outbound and item.service in ("voice", "sms", "whatsapp")
        rooms: list[tuple[str, int]] = []
        if gated and limits.monthly_cap is not None:
            rooms.append((MONTHLY_CAP, limits.monthly_cap.micros - month_spent.get(month, 0)))
        if gated and limits.weekly_cap is not None:
            rooms.append((WEEKLY_CAP, limits.weekly_cap.micros - week_spent.get(week, 0)))
        if gated and limits.daily_cap is not None:
            rooms.append((DAILY_CAP, limits.daily_cap.micros - day_spent.get(date, 0)))
        if gated and (date in paused_days or week in paused_weeks or month in paused_months):
            charged = 0
        elif is_call and per_pulse:
            for code, room in rooms:
                if pulses * per_pulse > room:
                    pulses = max(room, 0) // per_pulse
                    if pulses == 0:
                        pause(day, code, item.occurred_at)
            charged = pulses * per_pulse
        else:
            refused = next((code for code, room in rooms if price > room), None)
            if refused is not None:
                pause(day, refused, item.occurred_at)
            charged = 0 if refused is not None else price
        if charged:
            for code, room in rooms:
                if room - charged <= 0:
                    pause(day, code, item.occurred_at)
        if charged == 0:
            if is_call:
                day.blocked_calls += 1
            else:
                day.blocked_messages += 1
        elif charged < price:
            day.shortened_calls += 1
        day.simulated_micros += charged
        day_spent[date] = day_spent.get(date, 0) + charged
        week_spent[week] = week_spent.get(week, 0) + charged
        month_spent[month] = month_spent.get(month, 0) + charged
    return result

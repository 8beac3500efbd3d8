"""The gate: may this piece of outbound usage go ahead, and how much may it spend?

One pure function per kind of decision (`check_charge` for a message, `call_allowance` for
a call), over facts read under the account lock (`GateFacts`). Every limit is a money
*room* -- how much more may be committed -- and the decision is the smallest room:

    balance   available (paid + promotional - reserved)
    daily     daily_cap   - charged today      - reserved   (outbound only)
    weekly    weekly_cap  - charged this week  - reserved   (outbound only)
    monthly   monthly_cap - charged this month - reserved   (outbound only)
    campaign  budget      - campaign's spent   - campaign's open holds
    per call  per_call_max_cost (calls only; the call's whole cost, not a room)

Open holds count against every cap, so two concurrent calls never both receive headroom
that only one of them has. For a call, the longest duration all rooms permit comes from
`rating.max_call_seconds`, the same rating code that settles the call.

A cap that is reached (a request refused by it, or its room used up exactly) pauses
outbound until the next account-local day (daily), week (weekly: ISO weeks, Monday 00:00)
or month (monthly): `daily_paused`, `weekly_paused`, `monthly_paused`.
"""

from __future__ import annotations

from dataclasses import dataclass

from usagewatch.domain import rating
from usagewatch.domain.errors import PaymentRequired, insufficient_balance
from usagewatch.domain.money import Money

# Denial codes, in the order they are reported when several apply: what the account holder
# must fix first comes first.
ACCOUNT_NOT_ACTIVE = "account_not_active"
INSUFFICIENT_BALANCE = "insufficient_balance"
MONTHLY_CAP = "monthly_cap_reached"
WEEKLY_CAP = "weekly_cap_reached"
DAILY_CAP = "daily_cap_reached"
CAMPAIGN_PAUSED = "campaign_paused"
CAMPAIGN_EXHAUSTED = "campaign_budget_exhausted"
PER_CALL_CAP = "per_call_cap_reached"
CALL_DURATION_MAX = "call_duration_max_reached"
PERIOD_CAPS = (MONTHLY_CAP, WEEKLY_CAP, DAILY_CAP)  # the caps that pause for their period

# Sandbox (development/test) accounts start with these limits, as the brief recommends
# ("set conservative daily limits for non-production accounts"); owners may change them.
SANDBOX_DAILY_CAP = Money.parse("100.00")
SANDBOX_MONTHLY_CAP = Money.parse("1000.00")
SANDBOX_PER_CALL_MAX_DURATION_SECONDS = 600
SANDBOX_PER_CALL_MAX_COST = Money.parse("50.00")


@dataclass(frozen=True, slots=True)
class Limits:
    enabled: bool = False
    daily_cap: Money | None = None
    monthly_cap: Money | None = None
    weekly_cap: Money | None = None
    per_call_max_duration_seconds: int | None = None
    per_call_max_cost: Money | None = None

    @classmethod
    def sandbox(cls) -> Limits:
        return cls(
            enabled=True,
            daily_cap=SANDBOX_DAILY_CAP,
            monthly_cap=SANDBOX_MONTHLY_CAP,
            per_call_max_duration_seconds=SANDBOX_PER_CALL_MAX_DURATION_SECONDS,
            per_call_max_cost=SANDBOX_PER_CALL_MAX_COST,
        )

    def effective(self) -> Limits:
        """What applies: nothing when disabled."""
        return self if self.enabled else Limits()


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    campaign_id: str
    budget: Money
    spent: Money
    held: Money  # open holds of the campaign's calls
    status: str  # active | paused
    paused_reason: str | None

    @property
    def room(self) -> Money:
        return self.budget - self.spent - self.held


@dataclass(frozen=True, slots=True)
class GateFacts:
    account_status: str
    available: Money
    reserved: Money
    charged_today: Money
    charged_this_week: Money  # since Monday (account-local)
    charged_this_month: Money
    daily_paused: bool
    weekly_paused: bool
    monthly_paused: bool
    limits: Limits  # effective
    campaign: CampaignFacts | None

    def rooms(self, outbound: bool, balance: bool = True) -> list[tuple[str, Money]]:
        """Each limit that applies, with how much more it lets be committed."""
        rooms: list[tuple[str, Money]] = []
        if balance:
            rooms.append((INSUFFICIENT_BALANCE, self.available))
        if outbound and self.limits.monthly_cap is not None:
            rooms.append(
                (MONTHLY_CAP, self.limits.monthly_cap - self.charged_this_month - self.reserved)
            )
        if outbound and self.limits.weekly_cap is not None:
            rooms.append(
                (WEEKLY_CAP, self.limits.weekly_cap - self.charged_this_week - self.reserved)
            )
        if outbound and self.limits.daily_cap is not None:
            rooms.append((DAILY_CAP, self.limits.daily_cap - self.charged_today - self.reserved))
        if self.campaign is not None:
            rooms.append((CAMPAIGN_EXHAUSTED, self.campaign.room))
        return rooms

    def cap_standing(self, code: str) -> tuple[Money | None, Money, bool]:
        """(cap, charged in its period, paused) of the daily, weekly or monthly cap."""
        if code == DAILY_CAP:
            return self.limits.daily_cap, self.charged_today, self.daily_paused
        if code == WEEKLY_CAP:
            return self.limits.weekly_cap, self.charged_this_week, self.weekly_paused
        assert code == MONTHLY_CAP, code
        return self.limits.monthly_cap, self.charged_this_month, self.monthly_paused

    def paused_reason(self, outbound: bool) -> str | None:
        """A standing refusal that no amount fits through."""
        if self.account_status != "active":
            return ACCOUNT_NOT_ACTIVE
        if outbound and self.monthly_paused:
            return MONTHLY_CAP
        if outbound and self.weekly_paused:
            return WEEKLY_CAP
        if outbound and self.daily_paused:
            return DAILY_CAP
        if self.campaign is not None and self.campaign.status == "paused":
            exhausted = self.campaign.paused_reason == CAMPAIGN_EXHAUSTED
            return CAMPAIGN_EXHAUSTED if exhausted else CAMPAIGN_PAUSED
        return None


@dataclass(frozen=True, slots=True)
class Denial:
    code: str
    needed: Money | None = None
    room: Money | None = None

    def error(self) -> PaymentRequired:
        if self.code == INSUFFICIENT_BALANCE and self.needed is not None:
            return insufficient_balance(self.needed.format(), _fmt(self.room))
        return PaymentRequired(self.code, _MESSAGES[self.code])


_MESSAGES = {
    ACCOUNT_NOT_ACTIVE: "the account is not active",
    INSUFFICIENT_BALANCE: "the available balance cannot cover it",
    MONTHLY_CAP: "the monthly spending cap is reached: outbound is paused until the next "
    "month, or until the cap is raised",
    WEEKLY_CAP: "the weekly spending cap is reached: outbound is paused until Monday (the "
    "next week), or until the cap is raised",
    DAILY_CAP: "the daily spending cap is reached: outbound is paused until the next day, "
    "or until the cap is raised",
    CAMPAIGN_PAUSED: "the campaign is paused",
    CAMPAIGN_EXHAUSTED: "the campaign's budget is spent: raise the budget to resume it",
    PER_CALL_CAP: "the per-call cap is reached: the call must end",
    CALL_DURATION_MAX: "the call reached the platform's maximum call duration",
}


def _fmt(amount: Money | None) -> str:
    return amount.format() if amount is not None else "?"


def check_charge(facts: GateFacts, price: Money, outbound: bool = True) -> Denial | None:
    """May a message (or any one-off charge) of `price` go ahead? None = yes."""
    standing = facts.paused_reason(outbound)
    if standing is not None:
        return Denial(standing)
    if price.is_positive():
        for code, room in facts.rooms(outbound):
            if price > room:
                return Denial(code, price, room)
    return None


@dataclass(frozen=True, slots=True)
class CallAllowance:
    """How long a call may run in all, and why not longer. `max_seconds` 0 = refused."""

    max_seconds: int
    reason: str  # the limit that binds (or would refuse)
    covered_by_balance: bool  # False: an inbound call allowed at zero (nothing to hold)


def call_allowance(
    facts: GateFacts,
    card: rating.RateCard,
    direction: rating.CallDirection,
    *,
    held: Money,
    platform_max_seconds: int,
    inbound_at_zero: str = "allow",
) -> CallAllowance:
    """The longest a call may run, counting `held` (what this call already holds, which the
    rooms already subtract) on top of every room. 0 seconds means refused, with the code
    of the limit that refused it. Inbound calls face no daily or monthly cap; under the
    'allow' inbound policy, one the balance cannot pay is still allowed (charged when it
    ends), bounded by the other limits."""
    outbound = direction is rating.CallDirection.OUTBOUND
    standing = facts.paused_reason(outbound)
    if standing is not None:
        return CallAllowance(0, standing, True)
    per_call = facts.limits.per_call_max_duration_seconds
    duration_cap, duration_reason = platform_max_seconds, CALL_DURATION_MAX
    if per_call is not None and per_call < duration_cap:
        duration_cap, duration_reason = per_call, PER_CALL_CAP

    def allowance(rooms: list[tuple[str, Money]]) -> tuple[int, str]:
        budgets = [(code, room + held) for code, room in rooms]
        if facts.limits.per_call_max_cost is not None:
            budgets.append((PER_CALL_CAP, facts.limits.per_call_max_cost))
        if not budgets:
            return duration_cap, duration_reason
        code, money = min(budgets, key=lambda item: item[1])
        seconds = rating.max_call_seconds(card, direction, money, duration_cap)
        if seconds == 0:
            # report the first limit (in priority order) that leaves no room for a pulse
            one_pulse = rating.price_call(card, direction, 1).price
            code = next(c for c, m in budgets if m < one_pulse)
        elif seconds >= duration_cap:
            code = duration_reason
        return seconds, code

    seconds, code = allowance(facts.rooms(outbound))
    if (
        seconds == 0
        and code == INSUFFICIENT_BALANCE
        and not outbound
        and inbound_at_zero == "allow"
    ):
        seconds, code = allowance(facts.rooms(outbound, balance=False))
        return CallAllowance(seconds, code, False)
    return CallAllowance(seconds, code, True)


def reached_after(facts: GateFacts, spent: Money, outbound: bool = True) -> list[str]:
    """The caps whose room `spent` (just committed) used up exactly or more: they pause."""
    if not outbound:
        return [CAMPAIGN_EXHAUSTED] if _used_up(facts, spent, CAMPAIGN_EXHAUSTED) else []
    return [
        code
        for code in (MONTHLY_CAP, WEEKLY_CAP, DAILY_CAP, CAMPAIGN_EXHAUSTED)
        if _used_up(facts, spent, code)
    ]


def _used_up(facts: GateFacts, spent: Money, code: str) -> bool:
    for room_code, room in facts.rooms(outbound=True, balance=False):
        if room_code == code:
            return not (room - spent).is_positive()
    return False


def outbound_block(facts: GateFacts) -> str | None:
    """Why outbound is stopped now, whatever its price (None = it is not): shown on the
    balance as `outbound_block_reason`."""
    if facts.account_status != "active":
        return ACCOUNT_NOT_ACTIVE
    if not facts.available.is_positive():
        return INSUFFICIENT_BALANCE
    paused = {code: facts.cap_standing(code)[2] for code in PERIOD_CAPS}
    for code, room in facts.rooms(outbound=True, balance=False):
        if code in paused and (paused[code] or not room.is_positive()):
            return code
    return next((code for code, is_paused in paused.items() if is_paused), None)

"""`usagewatch demo`: a demo account with 90 days of history, made through the services.

History is generated on a manual clock that walks from 90 days ago to now: each day the
scheduler runs what fell due (number and seat renewals at month starts, promotional
expiries), the day's calls, SMS and WhatsApp conversations go in through batch ingest
(dated when they happened; each SMS with its delivery status: about 95% delivered, 3%
failed, the rest still `sent`), agents' sessions are recorded, and the account is topped up
when it runs low. So the journal, balances, rollups and reports agree exactly as they do
for real traffic (`usagewatch verify` is clean), and the clock ends at the real now for the
live server to take over.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock, local_date
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.limits import Limits
from usagewatch.domain.money import Money
from usagewatch.domain.payments import AutoRechargeRule
from usagewatch.service.alerts import AlertSpec

DEMO_ACCOUNT = "demo"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password-2026"  # a local demo on 127.0.0.1; printed at start
DEMO_CAMPAIGN = "festive-sale"
TIMEZONE = "Asia/Kolkata"
HISTORY_DAYS_MAX = 90
# How the history's SMS ended (weights in percent): the Usage page's delivery rate is ~95%.
SMS_OUTCOMES = {"delivered": 95, "failed": 3, "sent": 2}
CONSUMERS = {
    "voice": ("support-desk", "sales-team", "ivr-main"),
    "sms": ("otp-service", "billing-reminders", "marketing-bot"),
    "whatsapp": ("support-desk", "marketing-bot", "order-updates"),
}
NUMBERS = ("+918045670001", "+918045670002", "+918045670003")
AGENTS = ("agent-asha", "agent-ravi", "agent-meera", "agent-john")
TOP_UP_BELOW = Money.parse("5000.00")
TOP_UP_AMOUNT = Money.parse("25000.00")
CAMPAIGN_HEADROOM = Money.parse("40.00")  # what the simulator spends in a few minutes
# The simulator's traffic crosses the demo's low-balance alert within a minute or two and its
# auto-recharge threshold a few minutes later, so a newcomer sees an alert fire in the inbox
# and a recharge top the balance up while watching.
ALERT_HEADROOM = Money.parse("25.00")
RECHARGE_HEADROOM = Money.parse("75.00")
RECHARGE_AMOUNT = Money.parse("5000.00")


@dataclass(frozen=True, slots=True)
class DemoAccount:
    account_id: str
    email: str
    password: str
    platform_token: str
    campaign_id: str
    events: int


def history_start(now: datetime, days: int) -> datetime:
    """Local midnight `days` days before today, in UTC."""
    zone = ZoneInfo(TIMEZONE)
    first = local_date(now, TIMEZONE) - timedelta(days=days)
    return datetime.combine(first, time(0, 0), zone).astimezone(UTC)


def seed(
    c: Container, clock: ManualClock, now: datetime, days: int, seed_value: int = 7
) -> DemoAccount:
    """Create the demo account and its history up to `now` (the clock starts earlier)."""
    assert 1 <= days <= HISTORY_DAYS_MAX, "batch ingest takes usage up to 90 days old"
    rng = random.Random(seed_value)
    zone = ZoneInfo(TIMEZONE)
    c.accounts.create_account("Demo Telecom Pvt Ltd", DEMO_ACCOUNT, timezone=TIMEZONE)
    account = DEMO_ACCOUNT
    c.ledger.add_credit(
        account, LotKind.PAID, Money.parse("30000.00"), description="Opening top-up"
    )
    c.ledger.add_credit(
        account,
        LotKind.PROMOTIONAL,
        Money.parse("2000.00"),
        expires_at=clock.now() + timedelta(days=30),
        description="Welcome bonus",
    )
    for number in NUMBERS:
        c.subscriptions.start(account, "number", number)
    for agent in AGENTS:
        c.subscriptions.start(account, "agent_seat", agent)
    c.limits.create_campaign(account, DEMO_CAMPAIGN, "Festive sale", Money.parse("1000000.00"))
    events = 0
    first_day = local_date(clock.now(), TIMEZONE)
    today = local_date(now, TIMEZONE)
    day = first_day
    while day <= today:
        day_end = datetime.combine(day, time(23, 59), zone).astimezone(UTC)
        until = min(day_end, now)
        c.scheduler.advance(max(0, int((until - clock.now()).total_seconds())))
        age = (day - first_day).days
        batch = _day_of_usage(rng, day, zone, until, age, days, campaign=age >= days - 12)
        if batch:
            c.batch.ingest(account, batch)
            events += len(batch)
        _agent_sessions(c, rng, account, day, zone, until)
        if day == first_day + timedelta(days=days // 2):
            c.ledger.add_credit(
                account,
                LotKind.PROMOTIONAL,
                Money.parse("1500.00"),
                expires_at=now + timedelta(days=20),
                description="Loyalty bonus",
            )
        if Money(c.queries.balance(account).available_micros) < TOP_UP_BELOW:
            c.ledger.add_credit(account, LotKind.PAID, TOP_UP_AMOUNT, description="Top-up")
        day += timedelta(days=1)
    if clock.now() < now:
        clock.set(now)
        c.scheduler.run_due()
    c.ledger.add_credit(
        account,
        LotKind.PROMOTIONAL,
        Money.parse("500.00"),
        expires_at=now + timedelta(days=15),
        description="Festive bonus",
    )
    # The campaign has a budget a few minutes of simulated traffic will use up.
    spent = c.limits.get_campaign(account, DEMO_CAMPAIGN).campaign.spent_micros
    c.limits.update_campaign(
        account, DEMO_CAMPAIGN, name=None, budget=Money(spent) + CAMPAIGN_HEADROOM, status=None
    )
    c.limits.put(account, Limits(enabled=True, daily_cap=Money.parse("5000.00")))
    demo_alerts_and_recharge(c, account)
    c.accounts.create_user(account, DEMO_EMAIL, DEMO_PASSWORD, "owner")
    from usagewatch.domain.accounts import Principal, Role

    key = c.accounts.create_api_key(account, "platform", Principal(Role.ADMIN, None, None))
    return DemoAccount(account, DEMO_EMAIL, DEMO_PASSWORD, key.token, DEMO_CAMPAIGN, events)


def demo_alerts_and_recharge(c: Container, account: str) -> None:
    """The brief's recommended levels, a low-balance alert just below the balance and an
    auto-recharge rule a little lower: the simulator reaches both within minutes."""
    c.alerts.recommended(account, ["dashboard"], [], [])
    available = c.queries.balance(account).available_micros
    whole = Money(available - available % 1_000_000)  # thresholds in whole units
    line = whole - ALERT_HEADROOM
    c.alerts.create(
        account,
        AlertSpec(
            name=f"Balance below {line.display()}",
            type="low_balance",
            channels=["dashboard"],
            threshold=line,
            action="Add credits under Auto-recharge, or let auto-recharge top the balance up.",
        ),
    )
    c.payments.put_rule(
        account,
        AutoRechargeRule(
            enabled=True,
            threshold=whole - RECHARGE_HEADROOM,
            amount=RECHARGE_AMOUNT,
            max_recharges_per_day=3,
        ),
    )


def _day_of_usage(
    rng: random.Random,
    day: date,
    zone: ZoneInfo,
    until: datetime,
    age: int,
    days: int,
    campaign: bool,
) -> list[dict[str, object]]:
    """One day's completed usage: busier on weekdays and growing over the period."""
    weekday = day.weekday() < 5
    scale = (1.0 if weekday else 0.45) * (0.75 + 0.5 * age / max(days, 1))
    opening = datetime.combine(day, time(8, 0), zone).astimezone(UTC)
    span_seconds = 13 * 3600
    events: list[dict[str, object]] = []

    def when() -> str | None:
        instant = opening + timedelta(seconds=rng.randrange(span_seconds))
        return instant.isoformat().replace("+00:00", "Z") if instant < until else None

    stamp = day.isoformat()
    for i in range(int(rng.gauss(110, 12) * scale)):
        at = when()
        if at is None:
            continue
        status = rng.choices(["completed", "no-answer", "busy", "failed"], [80, 12, 5, 3])[0]
        events.append(
            {
                "kind": "call",
                "call_sid": f"hist-call-{stamp}-{i}",
                "direction": rng.choices(["outbound", "inbound"], [65, 35])[0],
                "status": status,
                "duration_seconds": int(rng.lognormvariate(4.6, 0.7))
                if status == "completed"
                else 0,
                "consumer": rng.choice(CONSUMERS["voice"]),
                "occurred_at": at,
            }
        )
    for i in range(int(rng.gauss(380, 40) * scale)):
        at = when()
        if at is None:
            continue
        consumer = rng.choice(CONSUMERS["sms"])
        sms_type = {"otp-service": "transactional", "marketing-bot": "promotional"}.get(
            consumer, "service"
        )
        event: dict[str, object] = {
            "kind": "sms",
            "sms_sid": f"hist-sms-{stamp}-{i}",
            "type": sms_type,
            "to": f"+9198{rng.randrange(10**8):08d}",
            "units": rng.choices([1, 2, 3], [80, 15, 5])[0],
            "status": rng.choices(list(SMS_OUTCOMES), list(SMS_OUTCOMES.values()))[0],
            "consumer": consumer,
            "occurred_at": at,
        }
        if campaign and consumer == "marketing-bot":
            event["campaign_id"] = DEMO_CAMPAIGN
        events.append(event)
    for i in range(int(rng.gauss(70, 10) * scale)):
        at = when()
        if at is None:
            continue
        category = rng.choices(
            ["service", "utility", "marketing", "authentication"], [40, 30, 20, 10]
        )[0]
        event = {
            "kind": "whatsapp",
            "conversation_id": f"hist-wa-{stamp}-{i}",
            "category": category,
            "consumer": rng.choice(CONSUMERS["whatsapp"]),
            "occurred_at": at,
        }
        if campaign and category == "marketing":
            event["campaign_id"] = DEMO_CAMPAIGN
        events.append(event)
    return events


def _agent_sessions(
    c: Container, rng: random.Random, account: str, day: date, zone: ZoneInfo, until: datetime
) -> None:
    if day.weekday() >= 5:
        return
    for agent in AGENTS:
        start = datetime.combine(day, time(9, rng.randrange(0, 45)), zone).astimezone(UTC)
        end = start + timedelta(hours=rng.uniform(6.0, 8.5))
        if end <= until:
            c.subscriptions.record_session(account, agent, start, end)

"""Alert rules, pure: when a threshold alert fires, re-arms or repeats, how a percentage of
average monthly usage becomes an amount, and how long the money lasts at the recent rate.

Edge-triggered with hysteresis:
- a low-balance alert fires when the available balance goes below its threshold (or is
  below it when the alert is created); a `once` alert re-arms only when the balance is back
  at or above threshold + margin (`rearm_margin`: 10% of the threshold, at least 1.00 unit),
  so a balance hovering around the threshold does not flood anyone;
- a usage alert fires when the period's usage (today's or this month's, optionally of one
  service) reaches its threshold; it re-arms when a new period begins;
- an `every_24_hours` alert repeats while its condition holds, at most once per 24 hours.
"""

from __future__ import annotations

from dataclasses import dataclass

from usagewatch.domain.money import Money

REPEAT_SECONDS = 24 * 3600
MARGIN_MIN = Money.parse("1.00")
TYPES = ("low_balance", "usage")
FREQUENCIES = ("once", "every_24_hours")
PERIODS = ("day", "month")
CHANNELS = ("email", "sms", "dashboard", "webhook")

# The brief's recommended levels: percent of average monthly usage, and what to do.
RECOMMENDED = (
    ("Warning", 30, "Plan to add credits soon."),
    ("Urgent", 15, "Add credits immediately."),
    ("Critical", 5, "Service disruption imminent: add credits now to keep calls and SMS going."),
)


def rearm_margin(threshold: Money) -> Money:
    """How far above its threshold the balance must come back to re-arm a `once` alert."""
    tenth = Money(threshold.micros // 10)
    return tenth if tenth > MARGIN_MIN else MARGIN_MIN


@dataclass(frozen=True, slots=True)
class Decision:
    fire: bool = False
    rearm: bool = False


def low_balance(
    state: str, frequency: str, threshold: Money, available: Money, repeat_due: bool
) -> Decision:
    """Decide for a low-balance alert, given the balance now. `repeat_due`: 24 hours have
    passed since it last fired."""
    below = available < threshold
    if state == "armed":
        return Decision(fire=below)
    if frequency == "every_24_hours" and below and repeat_due:
        return Decision(fire=True)
    return Decision(rearm=available >= threshold + rearm_margin(threshold))


def usage(state: str, frequency: str, threshold: Money, used: Money, repeat_due: bool) -> Decision:
    """Decide for a usage alert within its period (re-arming at a new period is the
    caller's: the period's usage starts again from zero)."""
    reached = used >= threshold
    if state == "armed":
        return Decision(fire=reached)
    return Decision(fire=frequency == "every_24_hours" and reached and repeat_due)


def average_monthly_usage(
    monthly: list[int], recent: int, recent_days: int, age_days: int
) -> int | None:
    """Average monthly usage in micro-units: the mean of the last three complete months
    (`monthly`, newest last; a complete month is a calendar month the account existed for
    from its first day). An account with fewer uses those it has. With none, the usage of
    its `recent_days` (at most the last 30) projected to 30 days, once the account is at
    least 7 days old; before that None: a percentage alert waits for history."""
    complete = monthly[-3:]
    if complete:
        return sum(complete) // len(complete)
    if age_days >= 7 and recent_days > 0:
        return recent * 30 // recent_days
    return None


def percent_of(amount_micros: int, percent_bp: int) -> Money:
    """`percent_bp` hundredths of a percent of an amount, rounded down to a micro-unit."""
    return Money(amount_micros * percent_bp // 10_000)


def hours_to_zero(available: Money, spent_last_7_days: Money) -> float | None:
    """How long the available balance lasts at the last 7 days' average rate (None when
    nothing was spent)."""
    if not spent_last_7_days.is_positive():
        return None
    if not available.is_positive():
        return 0.0
    per_hour = spent_last_7_days.micros / (7 * 24)
    return available.micros / per_hour


def describe_runway(hours: float | None) -> str:
    """How long the balance lasts at the last 7 days' rate, as a phrase (a notice's
    `runway`)."""
    if hours is None:
        return "unknown: no usage in the last 7 days"
    if hours <= 0:
        return "none: it has run out"
    if hours < 48:
        return f"about {hours:.0f} hours"
    return f"about {hours / 24:.0f} days"


def runway_sentence(hours: float | None, per_day: str) -> str:
    """The notice's sentence on how long the balance lasts; `per_day`: the last 7 days'
    average, with its currency."""
    if hours is None:
        return "There was no usage in the last 7 days, so no estimate of when it runs out."
    if hours <= 0:
        return "The balance has run out."
    return f"At the last 7 days' rate ({per_day} a day) the balance lasts {describe_runway(hours)}."

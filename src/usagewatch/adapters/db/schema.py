"""Tables (SQLAlchemy Core). The migrations create exactly these; a test compares the two.

Conventions, identical on SQLite and PostgreSQL:
- money: BIGINT micro-units, column names end in `_micros`;
- instants: BIGINT microseconds since the Unix epoch (UTC), names end in `_at_us`;
- account-local calendar dates: 'YYYY-MM-DD' text;
- every domain rule the database can check is a CHECK, UNIQUE or FOREIGN KEY here.
"""

from __future__ import annotations

import sqlalchemy as sa

from usagewatch.domain.ledger import EntryKind, LotKind
from usagewatch.domain.money import AMOUNT_MICROS_MAX, BALANCE_MICROS_MAX

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT that is also SQLite's rowid alias, so autoincrement works on both engines.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: object) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)  # type: ignore[attr-defined]
    return f"{column} IN ({quoted})"


ACCOUNT_STATUSES = ("active", "suspended", "closed")
KEY_ROLES = ("admin", "owner", "viewer", "platform")
USER_ROLES = ("owner", "viewer")
HOLD_STATUSES = ("open", "captured", "released", "expired")

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    # Inbound calls when the balance cannot pay a pulse: 'allow' (charged at the end, an
    # explicit overrun if short) or 'deny'.
    sa.Column("inbound_at_zero", sa.String(8), nullable=False, server_default="allow"),
    # A development/test account: created with conservative spending limits.
    sa.Column("sandbox", sa.Boolean, nullable=False, server_default=sa.false()),
    # Bumped with every change to what the ledger's triggers read (alerts, the
    # auto-recharge rule): processes cache those per account and version.
    sa.Column("config_version", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint(_in("status", ACCOUNT_STATUSES), name="status"),
    sa.CheckConstraint("length(currency) = 3", name="currency"),
    sa.CheckConstraint("inbound_at_zero IN ('allow', 'deny')", name="inbound_at_zero"),
)

balances = sa.Table(
    "balances",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("paid_micros", sa.BigInteger, nullable=False),
    sa.Column("promotional_micros", sa.BigInteger, nullable=False),
    sa.Column("reserved_micros", sa.BigInteger, nullable=False),
    sa.Column("overdraft_micros", sa.BigInteger, nullable=False),
    # Soonest expiry among promotional lots with money left (may be early, never late).
    sa.Column("next_expiry_at_us", sa.BigInteger, nullable=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint("promotional_micros >= 0", name="promotional_not_negative"),
    sa.CheckConstraint("reserved_micros >= 0", name="reserved_not_negative"),
    sa.CheckConstraint("overdraft_micros >= 0", name="overdraft_not_negative"),
    sa.CheckConstraint("paid_micros >= -overdraft_micros", name="paid_floor"),
    # what holds reserve is held on the lots: never more than the credit (paid goes below
    # zero only by the overdraft)
    sa.CheckConstraint(
        "reserved_micros <= paid_micros + overdraft_micros + promotional_micros",
        name="reserved_on_credit",
    ),
    sa.CheckConstraint(
        f"paid_micros + promotional_micros <= {BALANCE_MICROS_MAX}", name="balance_max"
    ),
    sa.CheckConstraint("version >= 0", name="version"),
)

credit_lots = sa.Table(
    "credit_lots",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("remaining_micros", sa.BigInteger, nullable=False),
    sa.Column("held_micros", sa.BigInteger, nullable=False),
    sa.Column("expires_at_us", sa.BigInteger, nullable=True),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("created_seq", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("kind", [k.value for k in LotKind]), name="kind"),
    sa.CheckConstraint(
        f"amount_micros > 0 AND amount_micros <= {AMOUNT_MICROS_MAX}", name="amount"
    ),
    sa.CheckConstraint(
        "remaining_micros >= 0 AND remaining_micros <= amount_micros", name="remaining"
    ),
    sa.CheckConstraint("held_micros >= 0 AND held_micros <= remaining_micros", name="held"),
    sa.CheckConstraint(
        "(kind = 'promotional' AND expires_at_us IS NOT NULL)"
        " OR (kind = 'paid' AND expires_at_us IS NULL)",
        name="expiry",
    ),
    sa.UniqueConstraint("account_id", "created_seq"),
)
# Account-scoped keys: what refers to a lot, a hold or an entry names its account too, so the
# database refuses a reference to another account's (migration 0011).
sa.Index("uq_credit_lots_account_id_id", credit_lots.c.account_id, credit_lots.c.id, unique=True)
sa.Index("ix_credit_lots_account_open", credit_lots.c.account_id, credit_lots.c.remaining_micros)
sa.Index("ix_credit_lots_expiry", credit_lots.c.expires_at_us)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("reference", sa.String(128), nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("closed_at_us", sa.BigInteger, nullable=True),
    sa.Column("captured_micros", sa.BigInteger, nullable=True),
    sa.CheckConstraint(_in("status", HOLD_STATUSES), name="status"),
    sa.CheckConstraint("amount_micros > 0", name="amount"),
    sa.CheckConstraint(
        "(status = 'open' AND closed_at_us IS NULL)"
        " OR (status <> 'open' AND closed_at_us IS NOT NULL)",
        name="closed_once",
    ),
    sa.CheckConstraint(
        "captured_micros IS NULL OR (captured_micros >= 0 AND status IN ('captured', 'expired'))",
        name="captured",
    ),
    sa.UniqueConstraint("account_id", "reference"),
)
sa.Index("uq_holds_account_id_id", holds.c.account_id, holds.c.id, unique=True)
sa.Index("ix_holds_due", holds.c.status, holds.c.expires_at_us)
sa.Index("ix_holds_account_status", holds.c.account_id, holds.c.status)

journal_entries = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("reserved_delta_micros", sa.BigInteger, nullable=False),
    sa.Column("overdraft_delta_micros", sa.BigInteger, nullable=False),
    sa.Column("available_after_micros", sa.BigInteger, nullable=False),
    sa.Column("hold_id", sa.String(40), nullable=True),
    sa.Column("lot_id", sa.String(40), nullable=True),
    sa.Column("reference", sa.String(128), nullable=True),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("idempotency_key", sa.String(300), nullable=False),
    sa.Column("request_fingerprint", sa.String(64), nullable=True),
    sa.Column("result_json", sa.Text, nullable=True),
    sa.Column("local_date", sa.String(10), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("kind", [k.value for k in EntryKind]), name="kind"),
    sa.CheckConstraint(
        "kind NOT IN ('capture', 'late_capture', 'debit', 'promotional_expired')"
        " OR amount_micros <= 0",
        name="charges_not_positive",
    ),
    sa.CheckConstraint(
        "kind NOT IN ('credit_paid', 'credit_promotional') OR amount_micros > 0",
        name="credits_positive",
    ),
    sa.UniqueConstraint("account_id", "idempotency_key"),
    sa.UniqueConstraint("account_id", "version"),
    # the hold and the lot an entry names are its own account's
    sa.ForeignKeyConstraint(["account_id", "hold_id"], ["holds.account_id", "holds.id"]),
    sa.ForeignKeyConstraint(["account_id", "lot_id"], ["credit_lots.account_id", "credit_lots.id"]),
)
# an account's entries in order (the journal's pages), and the key movements refer to
sa.Index(
    "uq_journal_entries_account_id_id",
    journal_entries.c.account_id,
    journal_entries.c.id,
    unique=True,
)
sa.Index("ix_journal_entries_hold", journal_entries.c.hold_id)
# A hold closes once: one capture, release or expiry; and at most one late capture (after
# its expiry).
_HOLD_CLOSED = "kind IN ('capture', 'release', 'hold_expired')"
sa.Index(
    "uq_journal_entries_hold_closed",
    journal_entries.c.hold_id,
    unique=True,
    sqlite_where=sa.text(_HOLD_CLOSED),
    postgresql_where=sa.text(_HOLD_CLOSED),
)
sa.Index(
    "uq_journal_entries_hold_late_capture",
    journal_entries.c.hold_id,
    unique=True,
    sqlite_where=sa.text("kind = 'late_capture'"),
    postgresql_where=sa.text("kind = 'late_capture'"),
)

journal_movements = sa.Table(
    "journal_movements",
    metadata,
    sa.Column("entry_id", BigId, primary_key=True),
    sa.Column("lot_id", sa.String(40), primary_key=True),
    sa.Column("remaining_delta_micros", sa.BigInteger, nullable=False),
    sa.Column("held_delta_micros", sa.BigInteger, nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False),  # the entry's (migration 0011)
    sa.CheckConstraint(
        "remaining_delta_micros <> 0 OR held_delta_micros <> 0", name="moves_something"
    ),
    # a movement moves money on a lot of its entry's account
    sa.ForeignKeyConstraint(
        ["account_id", "entry_id"], ["journal_entries.account_id", "journal_entries.id"]
    ),
    sa.ForeignKeyConstraint(["account_id", "lot_id"], ["credit_lots.account_id", "credit_lots.id"]),
)
sa.Index("ix_journal_movements_lot", journal_movements.c.lot_id)

daily_charges = sa.Table(
    "daily_charges",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("local_date", sa.String(10), primary_key=True),
    sa.Column("charged_micros", sa.BigInteger, nullable=False),
    sa.CheckConstraint("charged_micros >= 0", name="charged_not_negative"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("revoked_at_us", sa.BigInteger, nullable=True),
    sa.CheckConstraint(_in("role", KEY_ROLES), name="role"),
)
sa.Index("ix_api_keys_account", api_keys.c.account_id)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("role", USER_ROLES), name="role"),
    sa.CheckConstraint("email = lower(email)", name="email_lower"),
)

# -- rating and usage (issue 3) -----------------------------------------------------------------
SERVICES = ("voice", "sms", "whatsapp", "number", "agent_seat")

rate_cards = sa.Table(
    "rate_cards",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    # The account's overrides in the API's rates shape; unset entries use platform defaults.
    sa.Column("overrides_json", sa.Text, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
)

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("service", sa.String(16), nullable=False),
    sa.Column("sub_type", sa.String(32), nullable=False),
    sa.Column("natural_id", sa.String(128), nullable=False),  # call_sid, sms_sid, ...
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("consumer", sa.String(128), nullable=True),
    sa.Column("campaign_id", sa.String(64), nullable=True),
    sa.Column("from_number", sa.String(32), nullable=True),
    sa.Column("to_number", sa.String(32), nullable=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),  # pulses, SMS units, 1
    sa.Column("duration_seconds", sa.BigInteger, nullable=True),
    sa.Column("price_micros", sa.BigInteger, nullable=False),
    sa.Column("local_date", sa.String(10), nullable=False),
    sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.Column("request_fingerprint", sa.String(64), nullable=False),
    # The first response to the command that created the record, and for calls to the one
    # that ended it: replays answer with these.
    sa.Column("start_result_json", sa.Text, nullable=True),
    sa.Column("end_result_json", sa.Text, nullable=True),
    sa.Column("end_fingerprint", sa.String(64), nullable=True),
    sa.CheckConstraint(_in("service", SERVICES), name="service"),
    sa.CheckConstraint("quantity >= 0", name="quantity"),
    sa.CheckConstraint("price_micros >= 0", name="price"),
    sa.CheckConstraint("duration_seconds IS NULL OR duration_seconds >= 0", name="duration"),
    sa.UniqueConstraint("account_id", "service", "natural_id"),
)
sa.Index("ix_usage_records_account_date", usage_records.c.account_id, usage_records.c.local_date)

# Daily rollups, updated in the same transaction as the charge; '' = no consumer/campaign.
usage_rollups = sa.Table(
    "usage_rollups",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("local_date", sa.String(10), primary_key=True),
    sa.Column("service", sa.String(16), primary_key=True),
    sa.Column("sub_type", sa.String(32), primary_key=True),
    sa.Column("consumer", sa.String(128), primary_key=True),
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("duration_seconds", sa.BigInteger, nullable=False),
    sa.Column("cost_micros", sa.BigInteger, nullable=False),
    sa.Column("delivered", sa.BigInteger, nullable=False),  # SMS reported delivered
    sa.CheckConstraint(_in("service", SERVICES), name="service"),
    sa.CheckConstraint(
        "records >= 0 AND quantity >= 0 AND duration_seconds >= 0 AND cost_micros >= 0"
        " AND delivered >= 0 AND delivered <= records",
        name="not_negative",
    ),
)

# Two coarser projections of the daily rollups, written in the same statements' transaction
# whenever a daily row is (usage_store), so year-long reports read a few thousand rows:
# - per account-local month ('YYYY-MM') with every daily dimension: service breakdown and
#   top consumers over whole months;
# - per local date and service only: the daily chart, the trend and export row counts.
_ROLLUP_SUMS_CHECK = (
    "records >= 0 AND quantity >= 0 AND duration_seconds >= 0 AND cost_micros >= 0"
    " AND delivered >= 0 AND delivered <= records"
)


def _rollup_sums() -> list[sa.Column[int]]:
    return [
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("duration_seconds", sa.BigInteger, nullable=False),
        sa.Column("cost_micros", sa.BigInteger, nullable=False),
        sa.Column("delivered", sa.BigInteger, nullable=False),
    ]


usage_rollups_monthly = sa.Table(
    "usage_rollups_monthly",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("service", sa.String(16), primary_key=True),
    sa.Column("sub_type", sa.String(32), primary_key=True),
    sa.Column("consumer", sa.String(128), primary_key=True),
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    *_rollup_sums(),
    sa.CheckConstraint(_in("service", SERVICES), name="service"),
    sa.CheckConstraint("length(month) = 7", name="month"),
    sa.CheckConstraint(_ROLLUP_SUMS_CHECK, name="not_negative"),
)

usage_rollups_day_service = sa.Table(
    "usage_rollups_day_service",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("local_date", sa.String(10), primary_key=True),
    sa.Column("service", sa.String(16), primary_key=True),
    *_rollup_sums(),
    sa.CheckConstraint(_in("service", SERVICES), name="service"),
    sa.CheckConstraint(_ROLLUP_SUMS_CHECK, name="not_negative"),
)

# Monthly subscriptions: virtual-number rentals and contact-center agent seats. Each is
# charged when it starts and at the start of every account-local month while active; the
# month's charge is a usage record whose natural id names the month, so it happens once.
SUBSCRIPTION_KINDS = ("number", "agent_seat")

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("item", sa.String(64), primary_key=True),  # the number, or the agent id
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at_us", sa.BigInteger, nullable=False),
    sa.Column("ended_at_us", sa.BigInteger, nullable=True),
    sa.Column("next_charge_at_us", sa.BigInteger, nullable=True),
    sa.CheckConstraint(_in("kind", SUBSCRIPTION_KINDS), name="kind"),
    sa.CheckConstraint(
        "(status = 'active' AND ended_at_us IS NULL AND next_charge_at_us IS NOT NULL)"
        " OR (status = 'ended' AND ended_at_us IS NOT NULL AND next_charge_at_us IS NULL)",
        name="status",
    ),
)
sa.Index("ix_subscriptions_due", subscriptions.c.status, subscriptions.c.next_charge_at_us)


# Spending limits: one row per account that has any. Caps are money (NULL = no cap). A cap
# that was reached pauses outbound until `*_paused_until_us` (the next account-local day or
# month); the sweeper clears the marker then and notes that outbound resumed.
spending_limits = sa.Table(
    "spending_limits",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("daily_cap_micros", sa.BigInteger, nullable=True),
    sa.Column("monthly_cap_micros", sa.BigInteger, nullable=True),
    sa.Column("per_call_max_duration_seconds", sa.Integer, nullable=True),
    sa.Column("per_call_max_cost_micros", sa.BigInteger, nullable=True),
    sa.Column("daily_paused_until_us", sa.BigInteger, nullable=True),
    sa.Column("monthly_paused_until_us", sa.BigInteger, nullable=True),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    # weekly: ISO weeks in the account's time zone (Monday 00:00 to Monday 00:00)
    sa.Column("weekly_cap_micros", sa.BigInteger, nullable=True),
    sa.Column("weekly_paused_until_us", sa.BigInteger, nullable=True),
    sa.CheckConstraint(
        f"daily_cap_micros IS NULL OR daily_cap_micros BETWEEN 0 AND {BALANCE_MICROS_MAX}",
        name="daily_cap",
    ),
    sa.CheckConstraint(
        f"monthly_cap_micros IS NULL OR monthly_cap_micros BETWEEN 0 AND {BALANCE_MICROS_MAX}",
        name="monthly_cap",
    ),
    sa.CheckConstraint(
        f"weekly_cap_micros IS NULL OR weekly_cap_micros BETWEEN 0 AND {BALANCE_MICROS_MAX}",
        name="weekly_cap",
    ),
    sa.CheckConstraint(
        "per_call_max_duration_seconds IS NULL OR per_call_max_duration_seconds > 0",
        name="per_call_duration",
    ),
    sa.CheckConstraint(
        f"per_call_max_cost_micros IS NULL"
        f" OR per_call_max_cost_micros BETWEEN 1 AND {BALANCE_MICROS_MAX}",
        name="per_call_cost",
    ),
)
sa.Index("ix_spending_limits_daily_pause", spending_limits.c.daily_paused_until_us)
sa.Index("ix_spending_limits_monthly_pause", spending_limits.c.monthly_paused_until_us)
sa.Index("ix_spending_limits_weekly_pause", spending_limits.c.weekly_paused_until_us)

# Campaign budgets. `spent_micros` is the campaign's charged usage (its rollups' cost),
# kept in the same transaction as each charge; open holds of its calls count on top.
CAMPAIGN_STATUSES = ("active", "paused")
campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("budget_micros", sa.BigInteger, nullable=False),
    sa.Column("spent_micros", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("paused_reason", sa.String(40), nullable=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),
    sa.CheckConstraint(f"budget_micros BETWEEN 0 AND {BALANCE_MICROS_MAX}", name="budget"),
    sa.CheckConstraint("spent_micros >= 0", name="spent"),
    sa.CheckConstraint(
        "(status = 'active' AND paused_reason IS NULL)"
        " OR (status = 'paused' AND paused_reason IS NOT NULL)",
        name="paused_reason",
    ),
)

# Notification events (cap reached, campaign paused, outbound resumed, ...): the account's
# inbox, and what the alerts machinery delivers.
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data_json", sa.Text, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    # What makes a notice happen once (a promotional lot's expiry warning, ...); NULL = none.
    sa.Column("dedupe_key", sa.String(200), nullable=True),
    sa.Column("alert_id", sa.String(40), nullable=True),
    sa.UniqueConstraint("account_id", "dedupe_key"),
)
sa.Index("ix_notifications_account", notifications.c.account_id, notifications.c.id)

# -- alerts and delivery (issue 5) -----------------------------------------------------------
ALERT_TYPES = ("low_balance", "usage")
ALERT_STATES = ("armed", "triggered")
ALERT_FREQUENCIES = ("once", "every_24_hours")
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("threshold_micros", sa.BigInteger, nullable=True),
    # percent of average monthly usage, in hundredths of a percent (30% = 3000)
    sa.Column("threshold_percent_bp", sa.Integer, nullable=True),
    sa.Column("period", sa.String(8), nullable=True),  # usage alerts: day | month
    sa.Column("service", sa.String(16), nullable=True),
    sa.Column("channels_json", sa.Text, nullable=False),
    sa.Column("recipients_json", sa.Text, nullable=False),
    sa.Column("webhook_url", sa.String(2000), nullable=True),
    sa.Column("frequency", sa.String(16), nullable=False),
    sa.Column("action", sa.String(200), nullable=True),  # what to do, in every message
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("last_triggered_at_us", sa.BigInteger, nullable=True),
    sa.Column("next_check_at_us", sa.BigInteger, nullable=True),  # repeats, period re-arms
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("type", ALERT_TYPES), name="type"),
    sa.CheckConstraint(_in("state", ALERT_STATES), name="state"),
    sa.CheckConstraint(_in("frequency", ALERT_FREQUENCIES), name="frequency"),
    sa.CheckConstraint(
        "(threshold_micros IS NULL) <> (threshold_percent_bp IS NULL)", name="one_threshold"
    ),
    sa.CheckConstraint("threshold_micros IS NULL OR threshold_micros >= 0", name="threshold"),
    sa.CheckConstraint(
        "threshold_percent_bp IS NULL OR threshold_percent_bp BETWEEN 1 AND 1000000",
        name="threshold_percent",
    ),
    sa.CheckConstraint(
        "(type = 'usage' AND period IN ('day', 'month'))"
        " OR (type = 'low_balance' AND period IS NULL)",
        name="period",
    ),
)
sa.Index("ix_alerts_account", alerts.c.account_id)
sa.Index("ix_alerts_next_check", alerts.c.next_check_at_us)

# Where an account's system notices go (cap reached, balance at zero, ...), and the secret
# its webhooks are signed with (readable and rotatable by the owner).
notification_settings = sa.Table(
    "notification_settings",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("emails_json", sa.Text, nullable=False),
    sa.Column("phones_json", sa.Text, nullable=False),
    sa.Column("webhook_url", sa.String(2000), nullable=True),
    sa.Column("webhook_secret", sa.String(100), nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
)

# The outbox: one row per (notification, channel, recipient), written in the same
# transaction as the notification; a worker delivers it after commit, with retries.
DELIVERY_CHANNELS = ("email", "sms", "dashboard", "webhook")
DELIVERY_STATUSES = ("pending", "sent", "failed")
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("notification_id", sa.BigInteger, sa.ForeignKey("notifications.id"), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("target", sa.String(2000), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at_us", sa.BigInteger, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("channel", DELIVERY_CHANNELS), name="channel"),
    sa.CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
    sa.CheckConstraint("attempts >= 0", name="attempts"),
    sa.CheckConstraint(
        "(status = 'pending') = (next_attempt_at_us IS NOT NULL)", name="pending_scheduled"
    ),
)
sa.Index("ix_deliveries_due", deliveries.c.next_attempt_at_us)
sa.Index("ix_deliveries_notification", deliveries.c.notification_id)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.BigInteger, sa.ForeignKey("deliveries.id"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # sent | error
    sa.Column("detail", sa.String(500), nullable=True),
    sa.Column("at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint("outcome IN ('sent', 'error')", name="outcome"),
)
sa.Index("ix_delivery_attempts_delivery", delivery_attempts.c.delivery_id)


# -- reports and statements (issue 6) -------------------------------------------------------
# Monthly statements: the account-local month's CSV and PDF, produced once at the start of
# the next month and kept here as bytes (one transaction makes a statement exist with both
# files, on either engine, with no file store to back up beside the database). Usage that
# arrives later for a month already stated (batch events are dated when they happened) makes
# a revision: the month again, `revision` + 1, the earlier ones kept as they were sent.
statements = sa.Table(
    "statements",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),  # 'YYYY-MM', account-local
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("total_micros", sa.BigInteger, nullable=False),
    sa.Column("csv", sa.LargeBinary, nullable=False),
    sa.Column("pdf", sa.LargeBinary, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("supersedes_id", sa.String(40), nullable=True),  # the revision before
    sa.CheckConstraint("records >= 0 AND total_micros >= 0", name="not_negative"),
    sa.CheckConstraint("length(month) = 7", name="month"),
    sa.CheckConstraint(
        "(revision = 1 AND supersedes_id IS NULL) OR (revision > 1 AND supersedes_id IS NOT NULL)",
        name="revision",
    ),
    sa.UniqueConstraint("account_id", "month", "revision"),
)

# Months whose statement is owed a revision: usage arrived for them after it was made. The
# write that adds such usage inserts the row (under the account's schedule row lock); the
# statement job makes the revision and deletes it.
statement_revisions_due = sa.Table(
    "statement_revisions_due",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("since_us", sa.BigInteger, nullable=False),
)

# Per account, the next month whose statement is owed and the instant it falls due (the
# start of the following account-local month). Rows appear for new accounts on the job's
# next run; advancing one is a compare-and-set on next_month, so a month is produced once.
statement_schedule = sa.Table(
    "statement_schedule",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("next_month", sa.String(7), nullable=False),
    sa.Column("next_due_at_us", sa.BigInteger, nullable=False),
)
sa.Index("ix_statement_schedule_due", statement_schedule.c.next_due_at_us)


# -- payments and auto-recharge (issue 5) ---------------------------------------------------
# One row per charge intent towards the payment gateway ("Add Credits" or an auto-recharge).
# `gateway_key` is its idempotency key at the gateway, the same for every retry of it;
# `request_key` is the client's Idempotency-Key of a manual payment. A succeeded payment
# names the paid credit lot it bought (credited with a key derived from the payment id, so
# it can happen only once); a pending one names when it is asked again.
PAYMENT_KINDS = ("manual", "auto")
PAYMENT_STATUSES = ("pending", "succeeded", "declined", "failed")
payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("request_key", sa.String(255), nullable=True),
    sa.Column("request_fingerprint", sa.String(64), nullable=True),
    sa.Column("gateway_key", sa.String(80), nullable=False),
    sa.Column("gateway_reference", sa.String(255), nullable=True),
    sa.Column("credit_lot_id", sa.String(40), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("local_date", sa.String(10), nullable=False),  # account-local day it started
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.Column("next_attempt_at_us", sa.BigInteger, nullable=True),
    sa.CheckConstraint(_in("kind", PAYMENT_KINDS), name="kind"),
    sa.CheckConstraint(_in("status", PAYMENT_STATUSES), name="status"),
    sa.CheckConstraint(f"amount_micros BETWEEN 1 AND {AMOUNT_MICROS_MAX}", name="amount"),
    sa.CheckConstraint("attempts >= 0", name="attempts"),
    sa.CheckConstraint(
        "(status = 'succeeded') = (credit_lot_id IS NOT NULL)", name="credited_once_succeeded"
    ),
    sa.CheckConstraint(
        "(status = 'pending') = (next_attempt_at_us IS NOT NULL)", name="pending_next_attempt"
    ),
    sa.CheckConstraint(
        "(kind = 'manual') = (request_key IS NOT NULL AND request_fingerprint IS NOT NULL)",
        name="manual_request_key",
    ),
    sa.UniqueConstraint("account_id", "request_key"),
    sa.UniqueConstraint("gateway_key"),
    sa.UniqueConstraint("credit_lot_id"),  # a credit is bought by one payment
    sa.ForeignKeyConstraint(
        ["account_id", "credit_lot_id"], ["credit_lots.account_id", "credit_lots.id"]
    ),  # of the payment's account
)
sa.Index("ix_payments_account", payments.c.account_id, payments.c.id)
sa.Index("ix_payments_due", payments.c.next_attempt_at_us)
sa.Index("ix_payments_day", payments.c.account_id, payments.c.kind, payments.c.local_date)
# At most one auto-recharge on its way per account: never two for one crossing.
sa.Index(
    "uq_payments_one_pending_auto",
    payments.c.account_id,
    unique=True,
    sqlite_where=sa.text("kind = 'auto' AND status = 'pending'"),
    postgresql_where=sa.text("kind = 'auto' AND status = 'pending'"),
)

# The auto-recharge rule, one per account that has one. `paused_until_us` holds recharges
# back after a decline (or once the day's maximum is reached) until that instant, when the
# scheduler looks again.
auto_recharge = sa.Table(
    "auto_recharge",
    metadata,
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("threshold_micros", sa.BigInteger, nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("max_recharges_per_day", sa.Integer, nullable=False),
    sa.Column("paused_until_us", sa.BigInteger, nullable=True),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint(f"threshold_micros BETWEEN 1 AND {BALANCE_MICROS_MAX}", name="threshold"),
    sa.CheckConstraint(f"amount_micros BETWEEN 1 AND {AMOUNT_MICROS_MAX}", name="amount"),
    sa.CheckConstraint("max_recharges_per_day BETWEEN 1 AND 100", name="max_per_day"),
)
sa.Index("ix_auto_recharge_paused", auto_recharge.c.paused_until_us)

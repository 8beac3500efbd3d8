"""alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 17:57:56.525649
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("threshold_micros", sa.BigInteger(), nullable=True),
        sa.Column("threshold_percent_bp", sa.Integer(), nullable=True),
        sa.Column("period", sa.String(length=8), nullable=True),
        sa.Column("service", sa.String(length=16), nullable=True),
        sa.Column("channels_json", sa.Text(), nullable=False),
        sa.Column("recipients_json", sa.Text(), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_triggered_at_us", sa.BigInteger(), nullable=True),
        sa.Column("next_check_at_us", sa.BigInteger(), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(type = 'usage' AND period IN ('day', 'month')) OR (type = 'low_balance' AND period IS NULL)",
            name=op.f("ck_alerts_period"),
        ),
        sa.CheckConstraint(
            "frequency IN ('once', 'every_24_hours')", name=op.f("ck_alerts_frequency")
        ),
        sa.CheckConstraint("state IN ('armed', 'triggered')", name=op.f("ck_alerts_state")),
        sa.CheckConstraint("type IN ('low_balance', 'usage')", name=op.f("ck_alerts_type")),
        sa.CheckConstraint(
            "(threshold_micros IS NULL) <> (threshold_percent_bp IS NULL)",
            name=op.f("ck_alerts_one_threshold"),
        ),
        sa.CheckConstraint(
            "threshold_micros IS NULL OR threshold_micros >= 0", name=op.f("ck_alerts_threshold")
        ),
        sa.CheckConstraint(
            "threshold_percent_bp IS NULL OR threshold_percent_bp BETWEEN 1 AND 1000000",
            name=op.f("ck_alerts_threshold_percent"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_alerts_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index("ix_alerts_account", ["account_id"], unique=False)
        batch_op.create_index("ix_alerts_next_check", ["next_check_at_us"], unique=False)

    op.create_table(
        "notification_settings",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("emails_json", sa.Text(), nullable=False),
        sa.Column("phones_json", sa.Text(), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("webhook_secret", sa.String(length=100), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_notification_settings_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_notification_settings")),
    )
    op.create_table(
        "deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at_us", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(status = 'pending') = (next_attempt_at_us IS NOT NULL)",
            name=op.f("ck_deliveries_pending_scheduled"),
        ),
        sa.CheckConstraint(
            "channel IN ('email', 'sms', 'dashboard', 'webhook')",
            name=op.f("ck_deliveries_channel"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name=op.f("ck_deliveries_status")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_deliveries_attempts")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_deliveries_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_deliveries_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_due", ["next_attempt_at_us"], unique=False)
        batch_op.create_index("ix_deliveries_notification", ["notification_id"], unique=False)

    op.create_table(
        "delivery_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('sent', 'error')", name=op.f("ck_delivery_attempts_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_attempts_delivery", ["delivery_id"], unique=False)

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("config_version", sa.BigInteger(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("alert_id", sa.String(length=40), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_notifications_account_id_dedupe_key"), ["account_id", "dedupe_key"]
        )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+, PostgreSQL): batch mode would rebuild `accounts`,
    # which every other table references.
    op.execute("ALTER TABLE accounts DROP COLUMN config_version")

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_notifications_account_id_dedupe_key"), type_="unique"
        )
        batch_op.drop_column("alert_id")
        batch_op.drop_column("dedupe_key")

    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_attempts_delivery")

    op.drop_table("delivery_attempts")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_notification")
        batch_op.drop_index("ix_deliveries_due")

    op.drop_table("deliveries")
    op.drop_table("notification_settings")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_next_check")
        batch_op.drop_index("ix_alerts_account")

    op.drop_table("alerts")

"""limits: spending limits, campaigns, notifications, sandbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 17:24:00.262528
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("budget_micros", sa.BigInteger(), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("paused_reason", sa.String(length=40), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(status = 'active' AND paused_reason IS NULL) OR (status = 'paused' AND paused_reason IS NOT NULL)",
            name=op.f("ck_campaigns_paused_reason"),
        ),
        sa.CheckConstraint("status IN ('active', 'paused')", name=op.f("ck_campaigns_status")),
        sa.CheckConstraint(
            "budget_micros BETWEEN 0 AND 1000000000000000000", name=op.f("ck_campaigns_budget")
        ),
        sa.CheckConstraint("spent_micros >= 0", name=op.f("ck_campaigns_spent")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_campaigns_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "campaign_id", name=op.f("pk_campaigns")),
    )
    op.create_table(
        "notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_notifications_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_account", ["account_id", "id"], unique=False)

    op.create_table(
        "spending_limits",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("daily_cap_micros", sa.BigInteger(), nullable=True),
        sa.Column("monthly_cap_micros", sa.BigInteger(), nullable=True),
        sa.Column("per_call_max_duration_seconds", sa.Integer(), nullable=True),
        sa.Column("per_call_max_cost_micros", sa.BigInteger(), nullable=True),
        sa.Column("daily_paused_until_us", sa.BigInteger(), nullable=True),
        sa.Column("monthly_paused_until_us", sa.BigInteger(), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "daily_cap_micros IS NULL OR daily_cap_micros BETWEEN 0 AND 1000000000000000000",
            name=op.f("ck_spending_limits_daily_cap"),
        ),
        sa.CheckConstraint(
            "monthly_cap_micros IS NULL OR monthly_cap_micros BETWEEN 0 AND 1000000000000000000",
            name=op.f("ck_spending_limits_monthly_cap"),
        ),
        sa.CheckConstraint(
            "per_call_max_cost_micros IS NULL OR per_call_max_cost_micros BETWEEN 1 AND 1000000000000000000",
            name=op.f("ck_spending_limits_per_call_cost"),
        ),
        sa.CheckConstraint(
            "per_call_max_duration_seconds IS NULL OR per_call_max_duration_seconds > 0",
            name=op.f("ck_spending_limits_per_call_duration"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_spending_limits_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_spending_limits")),
    )
    with op.batch_alter_table("spending_limits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_spending_limits_daily_pause", ["daily_paused_until_us"], unique=False
        )
        batch_op.create_index(
            "ix_spending_limits_monthly_pause", ["monthly_paused_until_us"], unique=False
        )

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sandbox", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index("ix_holds_account_status", ["account_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_account_status")

    # A plain DROP COLUMN (SQLite 3.35+, PostgreSQL): batch mode would rebuild `accounts`,
    # which every other table references.
    op.execute("ALTER TABLE accounts DROP COLUMN sandbox")

    with op.batch_alter_table("spending_limits", schema=None) as batch_op:
        batch_op.drop_index("ix_spending_limits_monthly_pause")
        batch_op.drop_index("ix_spending_limits_daily_pause")

    op.drop_table("spending_limits")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_account")

    op.drop_table("notifications")
    op.drop_table("campaigns")

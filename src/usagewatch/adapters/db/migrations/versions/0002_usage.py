"""usage: rate cards, records, rollups, subscriptions, inbound policy

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:31:53.535358
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "rate_cards",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("overrides_json", sa.Text(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_rate_cards_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_rate_cards")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at_us", sa.BigInteger(), nullable=False),
        sa.Column("ended_at_us", sa.BigInteger(), nullable=True),
        sa.Column("next_charge_at_us", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "(status = 'active' AND ended_at_us IS NULL AND next_charge_at_us IS NOT NULL) OR (status = 'ended' AND ended_at_us IS NOT NULL AND next_charge_at_us IS NULL)",
            name=op.f("ck_subscriptions_status"),
        ),
        sa.CheckConstraint("kind IN ('number', 'agent_seat')", name=op.f("ck_subscriptions_kind")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_subscriptions_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "kind", "item", name=op.f("pk_subscriptions")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_subscriptions_due", ["status", "next_charge_at_us"], unique=False)

    op.create_table(
        "usage_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=16), nullable=False),
        sa.Column("sub_type", sa.String(length=32), nullable=False),
        sa.Column("natural_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("consumer", sa.String(length=128), nullable=True),
        sa.Column("campaign_id", sa.String(length=64), nullable=True),
        sa.Column("from_number", sa.String(length=32), nullable=True),
        sa.Column("to_number", sa.String(length=32), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("duration_seconds", sa.BigInteger(), nullable=True),
        sa.Column("price_micros", sa.BigInteger(), nullable=False),
        sa.Column("local_date", sa.String(length=10), nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("start_result_json", sa.Text(), nullable=True),
        sa.Column("end_result_json", sa.Text(), nullable=True),
        sa.Column("end_fingerprint", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "service IN ('voice', 'sms', 'whatsapp', 'number', 'agent_seat')",
            name=op.f("ck_usage_records_service"),
        ),
        sa.CheckConstraint(
            "duration_seconds IS NULL OR duration_seconds >= 0",
            name=op.f("ck_usage_records_duration"),
        ),
        sa.CheckConstraint("price_micros >= 0", name=op.f("ck_usage_records_price")),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_usage_records_quantity")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_records_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
        sa.UniqueConstraint(
            "account_id",
            "service",
            "natural_id",
            name=op.f("uq_usage_records_account_id_service_natural_id"),
        ),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_records_account_date", ["account_id", "local_date"], unique=False
        )

    op.create_table(
        "usage_rollups",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("local_date", sa.String(length=10), nullable=False),
        sa.Column("service", sa.String(length=16), nullable=False),
        sa.Column("sub_type", sa.String(length=32), nullable=False),
        sa.Column("consumer", sa.String(length=128), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("duration_seconds", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "service IN ('voice', 'sms', 'whatsapp', 'number', 'agent_seat')",
            name=op.f("ck_usage_rollups_service"),
        ),
        sa.CheckConstraint(
            "records >= 0 AND quantity >= 0 AND duration_seconds >= 0 AND cost_micros >= 0 AND delivered >= 0 AND delivered <= records",
            name=op.f("ck_usage_rollups_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_rollups_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint(
            "account_id",
            "local_date",
            "service",
            "sub_type",
            "consumer",
            "campaign_id",
            name=op.f("pk_usage_rollups"),
        ),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "inbound_at_zero", sa.String(length=8), server_default="allow", nullable=False
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_accounts_inbound_at_zero"), "inbound_at_zero IN ('allow', 'deny')"
        )


def downgrade() -> None:

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("inbound_at_zero")

    op.drop_table("usage_rollups")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_account_date")

    op.drop_table("usage_records")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_due")

    op.drop_table("subscriptions")
    op.drop_table("rate_cards")

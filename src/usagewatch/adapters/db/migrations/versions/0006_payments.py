"""payments: payments (manual and automatic) and auto-recharge rules

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 18:00:20.879778
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auto_recharge",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold_micros", sa.BigInteger(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("max_recharges_per_day", sa.Integer(), nullable=False),
        sa.Column("paused_until_us", sa.BigInteger(), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount_micros BETWEEN 1 AND 1000000000000000", name=op.f("ck_auto_recharge_amount")
        ),
        sa.CheckConstraint(
            "max_recharges_per_day BETWEEN 1 AND 100", name=op.f("ck_auto_recharge_max_per_day")
        ),
        sa.CheckConstraint(
            "threshold_micros BETWEEN 1 AND 1000000000000000000",
            name=op.f("ck_auto_recharge_threshold"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_auto_recharge_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_auto_recharge")),
    )
    with op.batch_alter_table("auto_recharge", schema=None) as batch_op:
        batch_op.create_index("ix_auto_recharge_paused", ["paused_until_us"], unique=False)

    op.create_table(
        "payments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("request_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("gateway_key", sa.String(length=80), nullable=False),
        sa.Column("gateway_reference", sa.String(length=255), nullable=True),
        sa.Column("credit_lot_id", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("local_date", sa.String(length=10), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_at_us", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "(kind = 'manual') = (request_key IS NOT NULL AND request_fingerprint IS NOT NULL)",
            name=op.f("ck_payments_manual_request_key"),
        ),
        sa.CheckConstraint(
            "(status = 'pending') = (next_attempt_at_us IS NOT NULL)",
            name=op.f("ck_payments_pending_next_attempt"),
        ),
        sa.CheckConstraint(
            "(status = 'succeeded') = (credit_lot_id IS NOT NULL)",
            name=op.f("ck_payments_credited_once_succeeded"),
        ),
        sa.CheckConstraint("kind IN ('manual', 'auto')", name=op.f("ck_payments_kind")),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'declined', 'failed')",
            name=op.f("ck_payments_status"),
        ),
        sa.CheckConstraint(
            "amount_micros BETWEEN 1 AND 1000000000000000", name=op.f("ck_payments_amount")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_payments_attempts")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_payments_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["credit_lot_id"],
            ["credit_lots.id"],
            name=op.f("fk_payments_credit_lot_id_credit_lots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint(
            "account_id", "request_key", name=op.f("uq_payments_account_id_request_key")
        ),
        sa.UniqueConstraint("gateway_key", name=op.f("uq_payments_gateway_key")),
        sa.UniqueConstraint("credit_lot_id", name=op.f("uq_payments_credit_lot_id")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_account", ["account_id", "id"], unique=False)
        batch_op.create_index("ix_payments_day", ["account_id", "kind", "local_date"], unique=False)
        batch_op.create_index("ix_payments_due", ["next_attempt_at_us"], unique=False)
        batch_op.create_index(
            "uq_payments_one_pending_auto",
            ["account_id"],
            unique=True,
            sqlite_where=sa.text("kind = 'auto' AND status = 'pending'"),
            postgresql_where=sa.text("kind = 'auto' AND status = 'pending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_payments_one_pending_auto",
            sqlite_where=sa.text("kind = 'auto' AND status = 'pending'"),
            postgresql_where=sa.text("kind = 'auto' AND status = 'pending'"),
        )
        batch_op.drop_index("ix_payments_due")
        batch_op.drop_index("ix_payments_day")
        batch_op.drop_index("ix_payments_account")

    op.drop_table("payments")
    with op.batch_alter_table("auto_recharge", schema=None) as batch_op:
        batch_op.drop_index("ix_auto_recharge_paused")

    op.drop_table("auto_recharge")

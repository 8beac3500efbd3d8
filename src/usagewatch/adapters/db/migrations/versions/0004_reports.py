"""reports: monthly statements and their schedule

Revision ID: 0004
Revises: 0002 (re-point to 0003 when merged after the limits migration)
Create Date: 2026-11-28 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statements",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("total_micros", sa.BigInteger(), nullable=False),
        sa.Column("csv", sa.LargeBinary(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "records >= 0 AND total_micros >= 0", name=op.f("ck_statements_not_negative")
        ),
        sa.CheckConstraint("length(month) = 7", name=op.f("ck_statements_month")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_statements_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statements")),
        sa.UniqueConstraint("account_id", "month", name=op.f("uq_statements_account_id_month")),
    )
    op.create_table(
        "statement_schedule",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("next_month", sa.String(length=7), nullable=False),
        sa.Column("next_due_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_statement_schedule_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_statement_schedule")),
    )
    with op.batch_alter_table("statement_schedule", schema=None) as batch_op:
        batch_op.create_index("ix_statement_schedule_due", ["next_due_at_us"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("statement_schedule", schema=None) as batch_op:
        batch_op.drop_index("ix_statement_schedule_due")
    op.drop_table("statement_schedule")
    op.drop_table("statements")

"""weekly cap: spending_limits gains a weekly cap and its pause (ISO weeks, account-local)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 19:40:00

Both columns are nullable (no cap, not paused), so existing rows need no backfill. A batch
operation, so SQLite (which cannot add a CHECK constraint in place) copies the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spending_limits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weekly_cap_micros", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("weekly_paused_until_us", sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_spending_limits_weekly_cap"),
            "weekly_cap_micros IS NULL OR weekly_cap_micros BETWEEN 0 AND 1000000000000000000",
        )
        batch_op.create_index(
            "ix_spending_limits_weekly_pause", ["weekly_paused_until_us"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("spending_limits", schema=None) as batch_op:
        batch_op.drop_index("ix_spending_limits_weekly_pause")
        batch_op.drop_constraint(op.f("ck_spending_limits_weekly_cap"), type_="check")
        batch_op.drop_column("weekly_paused_until_us")
        batch_op.drop_column("weekly_cap_micros")

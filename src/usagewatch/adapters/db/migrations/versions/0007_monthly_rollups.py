"""monthly rollups: per-month and per-day-and-service projections of the daily rollups,
backfilled from them

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 17:58:45.847224

Tables from `alembic revision --autogenerate` against adapters/db/schema.py; the backfill
below is by hand. It reads the daily rollups (not the usage records): they are what the
reports have shown so far, and `usagewatch verify` checks all three against the records.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SUMS_CHECK = (
    "records >= 0 AND quantity >= 0 AND duration_seconds >= 0 AND cost_micros >= 0"
    " AND delivered >= 0 AND delivered <= records"
)
_SERVICE_CHECK = "service IN ('voice', 'sms', 'whatsapp', 'number', 'agent_seat')"
_SUMS = "sum(records), sum(quantity), sum(duration_seconds), sum(cost_micros), sum(delivered)"
_SUM_NAMES = "records, quantity, duration_seconds, cost_micros, delivered"


def _sum_columns() -> list[sa.Column[int]]:
    return [
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("duration_seconds", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "usage_rollups_day_service",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("local_date", sa.String(length=10), nullable=False),
        sa.Column("service", sa.String(length=16), nullable=False),
        *_sum_columns(),
        sa.CheckConstraint(_SERVICE_CHECK, name=op.f("ck_usage_rollups_day_service_service")),
        sa.CheckConstraint(_SUMS_CHECK, name=op.f("ck_usage_rollups_day_service_not_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_usage_rollups_day_service_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "local_date", "service", name=op.f("pk_usage_rollups_day_service")
        ),
    )
    op.create_table(
        "usage_rollups_monthly",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("service", sa.String(length=16), nullable=False),
        sa.Column("sub_type", sa.String(length=32), nullable=False),
        sa.Column("consumer", sa.String(length=128), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        *_sum_columns(),
        sa.CheckConstraint(_SERVICE_CHECK, name=op.f("ck_usage_rollups_monthly_service")),
        sa.CheckConstraint("length(month) = 7", name=op.f("ck_usage_rollups_monthly_month")),
        sa.CheckConstraint(_SUMS_CHECK, name=op.f("ck_usage_rollups_monthly_not_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_usage_rollups_monthly_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint(
            "account_id",
            "month",
            "service",
            "sub_type",
            "consumer",
            "campaign_id",
            name=op.f("pk_usage_rollups_monthly"),
        ),
    )
    # Data: both projections from the daily rollups (plain SQL that both engines run).
    op.execute(
        f"INSERT INTO usage_rollups_day_service (account_id, local_date, service, {_SUM_NAMES})"
        f" SELECT account_id, local_date, service, {_SUMS} FROM usage_rollups"
        " GROUP BY account_id, local_date, service"
    )
    op.execute(
        "INSERT INTO usage_rollups_monthly (account_id, month, service, sub_type, consumer,"
        f" campaign_id, {_SUM_NAMES})"
        f" SELECT account_id, substr(local_date, 1, 7), service, sub_type, consumer,"
        f" campaign_id, {_SUMS} FROM usage_rollups"
        " GROUP BY account_id, substr(local_date, 1, 7), service, sub_type, consumer,"
        " campaign_id"
    )


def downgrade() -> None:
    op.drop_table("usage_rollups_monthly")
    op.drop_table("usage_rollups_day_service")

"""statement revisions: a month's statement is made again when usage arrives for it later

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 03:45:00

Batch events are dated when the usage happened, up to 90 days back, so usage can arrive for
a month whose statement was already made. `statements` gains `revision` (existing rows are
revision 1) and `supersedes_id` (the revision before), and its unique key becomes account,
month and revision; `statement_revisions_due` lists the months owed a revision. A batch
operation, so SQLite copies the statements table (no table references it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

RULE = "(revision = 1 AND supersedes_id IS NULL) OR (revision > 1 AND supersedes_id IS NOT NULL)"


def upgrade() -> None:
    with op.batch_alter_table("statements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("supersedes_id", sa.String(length=40), nullable=True))
        batch_op.drop_constraint("uq_statements_account_id_month", type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_statements_account_id_month_revision"), ["account_id", "month", "revision"]
        )
        batch_op.create_check_constraint(op.f("ck_statements_revision"), RULE)
    op.create_table(
        "statement_revisions_due",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("since_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_statement_revisions_due_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", "month", name=op.f("pk_statement_revisions_due")),
    )


def downgrade() -> None:
    op.drop_table("statement_revisions_due")
    op.execute("DELETE FROM statements WHERE revision > 1")
    with op.batch_alter_table("statements", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_statements_revision"), type_="check")
        batch_op.drop_constraint("uq_statements_account_id_month_revision", type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_statements_account_id_month"), ["account_id", "month"]
        )
        batch_op.drop_column("supersedes_id")
        batch_op.drop_column("revision")

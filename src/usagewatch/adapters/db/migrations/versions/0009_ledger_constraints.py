"""ledger constraints: what holds reserve exists on the lots; a hold closes once

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:20:00

Rules the code already keeps under the account's lock, now also refused by the database on
both engines:
- balances: the reserved amount never exceeds the credit it is held on (paid, which goes
  below zero only by the overdraft, plus promotional).
- journal_entries: one closing entry per hold (capture, release or expiry), and at most one
  late capture (after an expiry).
A batch operation, so SQLite (which cannot add a CHECK constraint in place) copies the
balances table (no table references it; copying `holds`, which journal entries reference,
would fail on SQLite with foreign keys on, so its rules stay in the code and `verify`);
existing rows satisfy the rules (`usagewatch verify` checks the same).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CLOSED = "kind IN ('capture', 'release', 'hold_expired')"
LATE = "kind = 'late_capture'"


def upgrade() -> None:
    with op.batch_alter_table("balances", schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f("ck_balances_reserved_on_credit"),
            "reserved_micros <= paid_micros + overdraft_micros + promotional_micros",
        )
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.create_index(
            "uq_journal_entries_hold_closed",
            ["hold_id"],
            unique=True,
            sqlite_where=sa.text(CLOSED),
            postgresql_where=sa.text(CLOSED),
        )
        batch_op.create_index(
            "uq_journal_entries_hold_late_capture",
            ["hold_id"],
            unique=True,
            sqlite_where=sa.text(LATE),
            postgresql_where=sa.text(LATE),
        )


def downgrade() -> None:
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.drop_index("uq_journal_entries_hold_late_capture")
        batch_op.drop_index("uq_journal_entries_hold_closed")
    with op.batch_alter_table("balances", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_balances_reserved_on_credit"), type_="check")

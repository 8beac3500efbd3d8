"""account-scoped references: a ledger row can name only its own account's lots and holds

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 21:00:00

The code never lets one account's entry name another account's hold or lot; now the
database refuses it too, on both engines:
- `credit_lots`, `holds` and `journal_entries` get a unique index on (account_id, id), so a
  reference can name the account with the row (the journal's index on the same columns,
  `ix_journal_entries_account`, becomes that unique one);
- `journal_entries.hold_id` and `.lot_id`, and `payments.credit_lot_id`, refer to
  (account_id, id) instead of the id alone;
- `journal_movements` gets `account_id` (its entry's, filled in here), and its entry and its
  lot are referred to with it: a movement moves money on a lot of its entry's account.

SQLite cannot change a foreign key in place: the three referring tables are copied
(`migrate` runs SQLite's migrations with foreign keys off and checks them all before
committing). Existing rows satisfy the new keys (`usagewatch verify` checks the same).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# (table, the column that refers, the table referred to) of each reference made account-scoped
REFERENCES = (
    ("journal_entries", "hold_id", "holds"),
    ("journal_entries", "lot_id", "credit_lots"),
    ("journal_movements", "entry_id", "journal_entries"),
    ("journal_movements", "lot_id", "credit_lots"),
    ("payments", "credit_lot_id", "credit_lots"),
)
PARENTS = ("credit_lots", "holds", "journal_entries")


def upgrade() -> None:
    op.drop_index("ix_journal_entries_account", table_name="journal_entries")
    for parent in PARENTS:
        op.create_index(f"uq_{parent}_account_id_id", parent, ["account_id", "id"], unique=True)
    op.add_column("journal_movements", sa.Column("account_id", sa.String(64), nullable=True))
    op.execute(
        "UPDATE journal_movements SET account_id = (SELECT account_id FROM journal_entries"
        " WHERE journal_entries.id = journal_movements.entry_id)"
    )
    for table in ("journal_entries", "journal_movements", "payments"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table == "journal_movements":
                batch_op.alter_column("account_id", existing_type=sa.String(64), nullable=False)
            for child, column, parent in REFERENCES:
                if child == table:
                    batch_op.drop_constraint(f"fk_{child}_{column}_{parent}", type_="foreignkey")
                    batch_op.create_foreign_key(
                        f"fk_{child}_account_id_{parent}",
                        parent,
                        ["account_id", column],
                        ["account_id", "id"],
                    )


def downgrade() -> None:
    for table in ("payments", "journal_movements", "journal_entries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for child, column, parent in REFERENCES:
                if child == table:
                    batch_op.drop_constraint(f"fk_{child}_account_id_{parent}", type_="foreignkey")
                    batch_op.create_foreign_key(
                        f"fk_{child}_{column}_{parent}", parent, [column], ["id"]
                    )
            if table == "journal_movements":
                batch_op.drop_column("account_id")
    for parent in PARENTS:
        op.drop_index(f"uq_{parent}_account_id_id", table_name=parent)
    op.create_index("ix_journal_entries_account", "journal_entries", ["account_id", "id"])

"""initial schema: accounts, keys, users, ledger

Revision ID: 0001
Revises:
Create Date: 2026-11-28 15:01:05.206849
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'suspended', 'closed')", name=op.f("ck_accounts_status")
        ),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_accounts_currency")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_us", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'owner', 'viewer', 'platform')", name=op.f("ck_api_keys_role")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_api_keys_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_keys_token_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index("ix_api_keys_account", ["account_id"], unique=False)

    op.create_table(
        "balances",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("paid_micros", sa.BigInteger(), nullable=False),
        sa.Column("promotional_micros", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.Column("overdraft_micros", sa.BigInteger(), nullable=False),
        sa.Column("next_expiry_at_us", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "overdraft_micros >= 0", name=op.f("ck_balances_overdraft_not_negative")
        ),
        sa.CheckConstraint(
            "paid_micros + promotional_micros <= 1000000000000000000",
            name=op.f("ck_balances_balance_max"),
        ),
        sa.CheckConstraint("paid_micros >= -overdraft_micros", name=op.f("ck_balances_paid_floor")),
        sa.CheckConstraint(
            "promotional_micros >= 0", name=op.f("ck_balances_promotional_not_negative")
        ),
        sa.CheckConstraint("reserved_micros >= 0", name=op.f("ck_balances_reserved_not_negative")),
        sa.CheckConstraint("version >= 0", name=op.f("ck_balances_version")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_balances_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_balances")),
    )
    op.create_table(
        "credit_lots",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("remaining_micros", sa.BigInteger(), nullable=False),
        sa.Column("held_micros", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(kind = 'promotional' AND expires_at_us IS NOT NULL) OR (kind = 'paid' AND expires_at_us IS NULL)",
            name=op.f("ck_credit_lots_expiry"),
        ),
        sa.CheckConstraint("kind IN ('paid', 'promotional')", name=op.f("ck_credit_lots_kind")),
        sa.CheckConstraint(
            "amount_micros > 0 AND amount_micros <= 1000000000000000",
            name=op.f("ck_credit_lots_amount"),
        ),
        sa.CheckConstraint(
            "held_micros >= 0 AND held_micros <= remaining_micros", name=op.f("ck_credit_lots_held")
        ),
        sa.CheckConstraint(
            "remaining_micros >= 0 AND remaining_micros <= amount_micros",
            name=op.f("ck_credit_lots_remaining"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_credit_lots_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_lots")),
        sa.UniqueConstraint(
            "account_id", "created_seq", name=op.f("uq_credit_lots_account_id_created_seq")
        ),
    )
    with op.batch_alter_table("credit_lots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_credit_lots_account_open", ["account_id", "remaining_micros"], unique=False
        )
        batch_op.create_index("ix_credit_lots_expiry", ["expires_at_us"], unique=False)

    op.create_table(
        "daily_charges",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("local_date", sa.String(length=10), nullable=False),
        sa.Column("charged_micros", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "charged_micros >= 0", name=op.f("ck_daily_charges_charged_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_daily_charges_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "local_date", name=op.f("pk_daily_charges")),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("closed_at_us", sa.BigInteger(), nullable=True),
        sa.Column("captured_micros", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "(status = 'open' AND closed_at_us IS NULL) OR (status <> 'open' AND closed_at_us IS NOT NULL)",
            name=op.f("ck_holds_closed_once"),
        ),
        sa.CheckConstraint(
            "captured_micros IS NULL OR (captured_micros >= 0 AND status IN ('captured', 'expired'))",
            name=op.f("ck_holds_captured"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'captured', 'released', 'expired')", name=op.f("ck_holds_status")
        ),
        sa.CheckConstraint("amount_micros > 0", name=op.f("ck_holds_amount")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_holds_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
        sa.UniqueConstraint("account_id", "reference", name=op.f("uq_holds_account_id_reference")),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index("ix_holds_due", ["status", "expires_at_us"], unique=False)

    op.create_table(
        "users",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("role IN ('owner', 'viewer')", name=op.f("ck_users_role")),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_users_email_lower")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_users_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "journal_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("reserved_delta_micros", sa.BigInteger(), nullable=False),
        sa.Column("overdraft_delta_micros", sa.BigInteger(), nullable=False),
        sa.Column("available_after_micros", sa.BigInteger(), nullable=False),
        sa.Column("hold_id", sa.String(length=40), nullable=True),
        sa.Column("lot_id", sa.String(length=40), nullable=True),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("result_json", sa.Text(), nullable=True),
        sa.Column("local_date", sa.String(length=10), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('credit_paid', 'credit_promotional', 'hold', 'hold_extend', 'capture', 'late_capture', 'release', 'hold_expired', 'debit', 'promotional_expired')",
            name=op.f("ck_journal_entries_kind"),
        ),
        sa.CheckConstraint(
            "kind NOT IN ('capture', 'late_capture', 'debit', 'promotional_expired') OR amount_micros <= 0",
            name=op.f("ck_journal_entries_charges_not_positive"),
        ),
        sa.CheckConstraint(
            "kind NOT IN ('credit_paid', 'credit_promotional') OR amount_micros > 0",
            name=op.f("ck_journal_entries_credits_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_journal_entries_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_journal_entries_hold_id_holds")
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["credit_lots.id"], name=op.f("fk_journal_entries_lot_id_credit_lots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entries")),
        sa.UniqueConstraint(
            "account_id",
            "idempotency_key",
            name=op.f("uq_journal_entries_account_id_idempotency_key"),
        ),
        sa.UniqueConstraint(
            "account_id", "version", name=op.f("uq_journal_entries_account_id_version")
        ),
    )
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.create_index("ix_journal_entries_account", ["account_id", "id"], unique=False)
        batch_op.create_index("ix_journal_entries_hold", ["hold_id"], unique=False)

    op.create_table(
        "journal_movements",
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lot_id", sa.String(length=40), nullable=False),
        sa.Column("remaining_delta_micros", sa.BigInteger(), nullable=False),
        sa.Column("held_delta_micros", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "remaining_delta_micros <> 0 OR held_delta_micros <> 0",
            name=op.f("ck_journal_movements_moves_something"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_journal_movements_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["credit_lots.id"], name=op.f("fk_journal_movements_lot_id_credit_lots")
        ),
        sa.PrimaryKeyConstraint("entry_id", "lot_id", name=op.f("pk_journal_movements")),
    )
    with op.batch_alter_table("journal_movements", schema=None) as batch_op:
        batch_op.create_index("ix_journal_movements_lot", ["lot_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("journal_movements", schema=None) as batch_op:
        batch_op.drop_index("ix_journal_movements_lot")

    op.drop_table("journal_movements")
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_journal_entries_hold")
        batch_op.drop_index("ix_journal_entries_account")

    op.drop_table("journal_entries")
    op.drop_table("users")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_due")

    op.drop_table("holds")
    op.drop_table("daily_charges")
    with op.batch_alter_table("credit_lots", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_lots_expiry")
        batch_op.drop_index("ix_credit_lots_account_open")

    op.drop_table("credit_lots")
    op.drop_table("balances")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_account")

    op.drop_table("api_keys")
    op.drop_table("accounts")

"""A ledger row can name only its own account's lots, holds and entries (migration 0011), on
both engines: the database refuses a journal entry naming another account's hold or lot, a
movement on another account's lot or of another account's entry, a payment crediting
another account's lot. The migration keeps the books of a database in use, and refuses
(changing nothing) one that already holds such a reference."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest
import sqlalchemy as sa

from usagewatch.adapters.db import migrate
from usagewatch.adapters.db.schema import (
    credit_lots,
    holds,
    journal_entries,
    journal_movements,
    payments,
)
from usagewatch.bootstrap import Container
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.verify import verify


class Books:
    """Two accounts with money moved on each: acme has a captured call (a hold), a debit and
    a paid payment; globex a credit."""

    def __init__(self, c: Container) -> None:
        self.c = c
        for account in ("acme", "globex"):
            c.accounts.create_account(account.title(), account)
            c.ledger.add_credit(account, LotKind.PAID, Money.parse("10.00"))
        c.calls.authorize("acme", "CA1", "outbound", to="+919800000001")
        c.calls.end("acme", "CA1", "completed", 61)
        c.ledger.debit("acme", "use-1", Money.parse("0.50"))
        self.payment = c.payments.pay("acme", Money.parse("5.00"), "pay-1")
        assert self.payment.status == "succeeded"

    def one(self, statement: Any) -> Any:
        with self.c.db.read() as conn:
            return conn.execute(statement).first()

    def lot(self, account: str) -> str:
        row = self.one(sa.select(credit_lots.c.id).where(credit_lots.c.account_id == account))
        return str(row.id)

    def hold(self) -> str:
        return str(self.one(sa.select(holds.c.id).where(holds.c.account_id == "acme")).id)

    def entry(self, account: str, kind: str) -> Any:
        e = journal_entries.c
        return self.one(sa.select(journal_entries).where(e.account_id == account, e.kind == kind))

    def refused(self, statement: Any) -> None:
        with pytest.raises(sa.exc.IntegrityError), self.c.db.engine.begin() as conn:
            conn.execute(statement)


@pytest.fixture
def books(container: Container) -> Books:
    return Books(container)


def next_entry(books: Books, account: str, **values: Any) -> Any:
    """globex's credit entry as a new row (next version, a new key) with `values` changed."""
    model = books.entry(account, "credit_paid")._mapping
    version = books.one(
        sa.select(sa.func.max(journal_entries.c.version)).where(
            journal_entries.c.account_id == account
        )
    )[0]
    row = {k: v for k, v in model.items() if k != "id"}
    row.update(version=version + 1, idempotency_key=f"forged-{version}", **values)
    return journal_entries.insert().values(row)


def test_an_entry_cannot_name_another_accounts_hold_or_lot(books: Books) -> None:
    books.refused(next_entry(books, "globex", hold_id=books.hold()))
    books.refused(next_entry(books, "globex", lot_id=books.lot("acme")))
    # its own account's lot is fine (the same statement otherwise)
    with books.c.db.engine.begin() as conn:
        conn.execute(next_entry(books, "globex", lot_id=books.lot("globex")))


def test_a_movement_stays_within_its_entrys_account(books: Books) -> None:
    entry = books.entry("globex", "credit_paid")
    move = {"entry_id": entry.id, "remaining_delta_micros": 1, "held_delta_micros": 0}
    # another account's lot, whichever account the movement claims
    books.refused(
        journal_movements.insert().values(
            {**move, "lot_id": books.lot("acme"), "account_id": "globex"}
        )
    )
    books.refused(
        journal_movements.insert().values(
            {**move, "lot_id": books.lot("acme"), "account_id": "acme"}
        )
    )
    # the movements the ledger wrote carry their entry's account
    with books.c.db.read() as conn:
        pairs = conn.execute(
            sa.select(journal_movements.c.account_id, journal_entries.c.account_id).join(
                journal_entries, journal_entries.c.id == journal_movements.c.entry_id
            )
        ).all()
    assert len(pairs) >= 4 and all(mine == its for mine, its in pairs)


def test_a_payment_credits_only_its_own_accounts_lot(books: Books) -> None:
    p = payments.c
    books.refused(
        payments.update().where(p.id == books.payment.id).values(credit_lot_id=books.lot("globex"))
    )


def test_migration_0011_keeps_the_books(container: Container, books: Books) -> None:
    before = container.queries.balance("acme"), container.queries.balance("globex")
    migrate.downgrade(container.db, "0010")
    assert "account_id" not in {
        c["name"] for c in sa.inspect(container.db.engine).get_columns("journal_movements")
    }
    migrate.upgrade(container.db)
    assert migrate.is_current(container.db)
    assert verify(container.db) == []
    if container.db.is_sqlite:  # foreign keys are on again on every pooled connection
        with ExitStack() as stack:
            conns = [stack.enter_context(container.db.engine.connect()) for _ in range(16)]
            assert {c.exec_driver_sql("PRAGMA foreign_keys").scalar() for c in conns} == {1}
    assert (container.queries.balance("acme"), container.queries.balance("globex")) == before
    test_a_movement_stays_within_its_entrys_account(books)
    container.ledger.debit("globex", "use-after", Money.parse("1.00"))  # the ledger still posts
    assert verify(container.db) == []


def test_a_database_with_a_cross_account_reference_is_not_migrated(
    container: Container, books: Books
) -> None:
    """Under 0010's single-column keys a movement could name another account's lot; such a
    database stops the upgrade, which changes nothing, on either engine."""
    migrate.downgrade(container.db, "0010")
    entry = books.entry("globex", "credit_paid")
    with container.db.engine.begin() as conn:
        conn.execute(
            journal_movements.insert().values(
                entry_id=entry.id,
                lot_id=books.lot("acme"),
                remaining_delta_micros=1,
                held_delta_micros=0,
            )
        )
    with pytest.raises((RuntimeError, sa.exc.IntegrityError)):
        migrate.upgrade(container.db)
    assert migrate.current_revision(container.db) == "0010"
    columns = sa.inspect(container.db.engine).get_columns("journal_movements")
    assert "account_id" not in {c["name"] for c in columns}

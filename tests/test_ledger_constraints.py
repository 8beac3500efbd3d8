"""The database itself refuses what the ledger's code never writes (migration 0009), on
both engines: reserved money beyond the credit it is held on, a hold closed twice. The
migration keeps the books of a database with holds and entries in it."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from usagewatch.adapters.db import migrate
from usagewatch.adapters.db.schema import balances, holds, journal_entries
from usagewatch.bootstrap import Container
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.verify import verify


@pytest.fixture
def ended_call(container: Container) -> str:
    """An account with a call authorized and ended (its hold captured); returns its hold id."""
    container.accounts.create_account("Acme", "acme")
    container.ledger.add_credit("acme", LotKind.PAID, Money.parse("10.00"))
    container.calls.authorize("acme", "CA1", "outbound", to="+919800000001")
    container.calls.end("acme", "CA1", "completed", 61)
    with container.db.read() as conn:
        hold_id = conn.execute(sa.select(holds.c.id).where(holds.c.reference == "CA1")).scalar()
    assert isinstance(hold_id, str)
    return hold_id


def refused(container: Container, statement: Any) -> None:
    with pytest.raises(sa.exc.IntegrityError), container.db.engine.begin() as conn:
        conn.execute(statement)


def test_reserved_money_beyond_the_credit_is_refused(container: Container, ended_call: str) -> None:
    b = balances.c
    refused(
        container,
        balances.update()
        .where(b.account_id == "acme")
        .values(reserved_micros=b.paid_micros + b.overdraft_micros + b.promotional_micros + 1),
    )


def test_a_hold_closes_once(container: Container, ended_call: str) -> None:
    with container.db.read() as conn:
        capture = conn.execute(
            sa.select(journal_entries).where(
                journal_entries.c.hold_id == ended_call, journal_entries.c.kind == "capture"
            )
        ).one()
        version = conn.execute(sa.select(sa.func.max(journal_entries.c.version))).scalar()
    again = {k: v for k, v in capture._mapping.items() if k != "id"}
    for kind in ("release", "hold_expired", "capture"):
        refused(
            container,
            journal_entries.insert().values(
                {**again, "kind": kind, "version": version + 1, "idempotency_key": f"x-{kind}"}
            ),
        )
    # one late capture may follow an expiry; a second may not
    late = {**again, "kind": "late_capture", "version": version + 1, "idempotency_key": "late"}
    with container.db.engine.begin() as conn:
        conn.execute(journal_entries.insert().values(late))
    refused(
        container,
        journal_entries.insert().values(
            {**late, "version": version + 2, "idempotency_key": "late-2"}
        ),
    )


def test_migration_0009_keeps_the_books(container: Container, ended_call: str) -> None:
    migrate.downgrade(container.db, "0008")
    migrate.upgrade(container.db)
    assert verify(container.db) == []
    assert container.queries.balance("acme").available_micros == 10_000_000 - 1_200_000

"""Read models: the balance breakdown, the journal, credit lots. None of them scans the
journal: the balance comes from the cached balance row, today's and this month's usage from
the per-day charge totals (at most 31 rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from usagewatch.adapters.db import store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import credit_lots, journal_entries
from usagewatch.domain.clock import Clock, local_date, to_micros
from usagewatch.domain.errors import NotFound
from usagewatch.service.ledger import LedgerService
from usagewatch.service.limits import LimitsService


@dataclass(frozen=True, slots=True)
class BalanceView:
    account_id: str
    currency: str
    available_micros: int
    paid_micros: int
    promotional_micros: int
    promotional_expiries: list[tuple[int, int]]  # (expires_at_us, amount_micros)
    reserved_micros: int
    today_usage_micros: int
    month_usage_micros: int
    outbound_allowed: bool
    outbound_block_reason: str | None
    version: int
    as_of: datetime


@dataclass(frozen=True, slots=True)
class EntryView:
    id: int
    kind: str
    amount_micros: int
    reserved_delta_micros: int
    available_after_micros: int
    reference: str | None
    description: str | None
    hold_id: str | None
    lot_id: str | None
    created_at_us: int


@dataclass(frozen=True, slots=True)
class LotView:
    id: str
    kind: str
    amount_micros: int
    remaining_micros: int
    held_micros: int
    expires_at_us: int | None
    description: str | None
    created_at_us: int


class Queries:
    def __init__(
        self, db: Database, clock: Clock, ledger: LedgerService, limits: LimitsService
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.limits = limits

    def balance(self, account_id: str) -> BalanceView:
        now = self.clock.now()
        # Account-local dates are within a day of the UTC date; 33 days cover any month.
        since = (now.date() - timedelta(days=33)).isoformat()
        with self.db.read() as conn:
            state, days = self._read(conn, account_id, since)
            due = state.next_expiry_at_us
            if due is None or due > to_micros(now):
                return self._view(conn, state, days, now)
        # Promotional credit fell due and no sweeper has forfeited it yet: do it, read again.
        self.ledger.expire_account(account_id)
        with self.db.read() as conn:
            state, days = self._read(conn, account_id, since)
            return self._view(conn, state, days, now)

    @staticmethod
    def _read(
        conn: sa.Connection, account_id: str, since: str
    ) -> tuple[store.AccountState, dict[str, int]]:
        found = store.read_balance_with_days(conn, account_id, since)
        if found is None:
            raise NotFound("account_not_found", f"no account {account_id!r}")
        return found

    def _view(
        self, conn: sa.Connection, state: store.AccountState, days: dict[str, int], now: datetime
    ) -> BalanceView:
        today = local_date(now, state.timezone).isoformat()
        month_start = today[:8] + "01"
        today_usage = days.get(today, 0)
        month_usage = sum(v for day, v in days.items() if month_start <= day <= today)
        expiries = (
            store.promotional_expiries(conn, state.account_id, to_micros(now))
            if state.promotional_micros
            else []
        )
        available = state.available_micros
        reason = self.limits.outbound_block(conn, state, days, now)
        return BalanceView(
            account_id=state.account_id,
            currency=state.currency,
            available_micros=available,
            paid_micros=state.paid_micros,
            promotional_micros=state.promotional_micros,
            promotional_expiries=expiries,
            reserved_micros=state.reserved_micros,
            today_usage_micros=today_usage,
            month_usage_micros=month_usage,
            outbound_allowed=reason is None,
            outbound_block_reason=reason,
            version=state.version,
            as_of=now,
        )

    def ledger_page(self, account_id: str, limit: int, before_id: int | None) -> list[EntryView]:
        """Journal entries newest first; `before_id` continues after the previous page."""
        query = (
            sa.select(
                journal_entries.c.id,
                journal_entries.c.kind,
                journal_entries.c.amount_micros,
                journal_entries.c.reserved_delta_micros,
                journal_entries.c.available_after_micros,
                journal_entries.c.reference,
                journal_entries.c.description,
                journal_entries.c.hold_id,
                journal_entries.c.lot_id,
                journal_entries.c.created_at_us,
            )
            .where(journal_entries.c.account_id == account_id)
            .order_by(journal_entries.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(journal_entries.c.id < before_id)
        with self.db.read() as conn:
            return [EntryView(**row._mapping) for row in conn.execute(query)]

    def credit_lots(
        self, account_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, LotView]]:
        """Credit lots newest first, each with its sequence number (the page cursor)."""
        query = (
            sa.select(
                credit_lots.c.created_seq,
                credit_lots.c.id,
                credit_lots.c.kind,
                credit_lots.c.amount_micros,
                credit_lots.c.remaining_micros,
                credit_lots.c.held_micros,
                credit_lots.c.expires_at_us,
                credit_lots.c.description,
                credit_lots.c.created_at_us,
            )
            .where(credit_lots.c.account_id == account_id)
            .order_by(credit_lots.c.created_seq.desc())
            .limit(limit)
        )
        if before_seq is not None:
            query = query.where(credit_lots.c.created_seq < before_seq)
        with self.db.read() as conn:
            return [(row[0], LotView(*row[1:])) for row in conn.execute(query)]

"""Monthly subscriptions: virtual-number rentals and contact-center agent seats, and the
agent sessions that give agent hours.

A subscription is charged when it starts and at the start of every account-local month
while it is active. Each month's charge is a usage record whose natural id names the month
(`+919800000001:2026-12`), so it happens exactly once — also when the server was down over
the month boundary (the scheduler catches up, one month at a time) and under the test clock.
Renewals are usage that is owed: when money is short they are still charged, as an explicit
overrun that blocks outbound until the account is topped up. Starting one needs the money.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import subscriptions
from usagewatch.domain import rating
from usagewatch.domain.clock import Clock, from_micros, month_key, next_month_start, to_micros
from usagewatch.domain.errors import Conflict, Invalid, NotFound
from usagewatch.domain.money import Money
from usagewatch.service.ledger import Command, LedgerService, fingerprint
from usagewatch.service.rates import RateService
from usagewatch.service.usage import charge_once, check_natural_id

SWEEP_BATCH_MAX = 500
SESSION_SECONDS_MAX = 24 * 3600
KINDS = ("number", "agent_seat")


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    kind: str
    item: str
    status: str
    started_at_us: int
    ended_at_us: int | None
    next_charge_at_us: int | None
    price_micros: int  # charged for the current month when it started (0 on a replay)


class SubscriptionService:
    def __init__(
        self, db: Database, clock: Clock, ledger: LedgerService, rates: RateService
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.rates = rates

    def start(self, account_id: str, kind: str, item: str) -> SubscriptionView:
        """Start (or restart) a rental/seat: charge this month now (402 when short)."""
        assert kind in KINDS
        check_natural_id(item, "number" if kind == "number" else "agent_id")

        def command(cmd: Command) -> SubscriptionView:
            row = self._row(cmd, kind, item)
            if row is not None and row.status == "active":
                raise Conflict("already_active", f"{item!r} is already active")
            price = self._charge_month(cmd, kind, item, cmd.now, allow_overrun=False)
            next_at = to_micros(next_month_start(cmd.now, cmd.state.timezone))
            values = {
                "status": "active",
                "started_at_us": cmd.now_us,
                "ended_at_us": None,
                "next_charge_at_us": next_at,
            }
            key = _key(cmd.state.account_id, kind, item)
            if row is None:
                cmd.conn.execute(subscriptions.insert().values(**key, **values))
            else:
                cmd.conn.execute(subscriptions.update().where(*_where(key)).values(**values))
            return SubscriptionView(kind, item, "active", cmd.now_us, None, next_at, price)

        return self.ledger.run_command(account_id, None, None, SubscriptionView, command)

    def end(self, account_id: str, kind: str, item: str) -> SubscriptionView:
        """End it: no further monthly charges (the current month is not refunded)."""

        def command(cmd: Command) -> SubscriptionView:
            row = self._row(cmd, kind, item)
            if row is None or row.status != "active":
                raise NotFound("subscription_not_found", f"no active {kind} {item!r}")
            cmd.conn.execute(
                subscriptions.update()
                .where(*_where(_key(cmd.state.account_id, kind, item)))
                .values(status="ended", ended_at_us=cmd.now_us, next_charge_at_us=None)
            )
            return SubscriptionView(kind, item, "ended", row.started_at_us, cmd.now_us, None, 0)

        return self.ledger.run_command(account_id, None, None, SubscriptionView, command)

    def list(
        self, account_id: str, kind: str, limit: int, after: str | None
    ) -> list[SubscriptionView]:
        """A page of the account's subscriptions of one kind, by item (keyset: `after` is
        the item of the last one of the previous page)."""
        query = (
            sa.select(subscriptions)
            .where(subscriptions.c.account_id == account_id, subscriptions.c.kind == kind)
            .order_by(subscriptions.c.item)
            .limit(limit)
        )
        if after is not None:
            query = query.where(subscriptions.c.item > after)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [
            SubscriptionView(
                r.kind, r.item, r.status, r.started_at_us, r.ended_at_us, r.next_charge_at_us, 0
            )
            for r in rows
        ]

    # -- agent hours -----------------------------------------------------------------------
    def record_session(
        self, account_id: str, agent_id: str, started_at: datetime, ended_at: datetime
    ) -> int:
        """Record an agent's working session (agent hours for the contact-center report).
        Costs nothing: seats are what is charged. Returns the session's seconds."""
        seconds = int((ended_at - started_at).total_seconds())
        if not 0 < seconds <= SESSION_SECONDS_MAX:
            raise Invalid("invalid_duration", "a session lasts 1 s to 24 h", "ended_at")
        natural_id = f"{agent_id}:{to_micros(started_at)}"
        print_ = fingerprint({"ended_at": to_micros(ended_at)})

        def command(cmd: Command) -> int:
            if ended_at > cmd.now:
                raise Invalid("invalid_timestamp", "ended_at is in the future", "ended_at")
            row = self._row(cmd, "agent_seat", agent_id)
            if row is None:
                raise NotFound("subscription_not_found", f"no agent seat {agent_id!r}")
            charge_once(
                cmd,
                "agent_seat",
                natural_id,
                "session",
                0,
                print_,
                lambda card: Money(0),
                self.rates,
                status="recorded",
                consumer=agent_id,
                duration_seconds=seconds,
            )
            return seconds

        return self.ledger.run_command(account_id, None, None, int, command)

    # -- the monthly renewals (the scheduler's job) ---------------------------------------
    def run_due(self) -> int:
        now_us = to_micros(self.clock.now())
        with self.db.read() as conn:
            due = (
                conn.execute(
                    sa.select(subscriptions.c.account_id)
                    .distinct()
                    .where(
                        subscriptions.c.status == "active",
                        subscriptions.c.next_charge_at_us <= now_us,
                    )
                    .limit(SWEEP_BATCH_MAX)
                )
                .scalars()
                .all()
            )
        for account_id in due:
            self.ledger.run_command(account_id, None, None, type(None), self._renew_due)
        return len(due)

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            due = conn.execute(
                sa.select(sa.func.min(subscriptions.c.next_charge_at_us)).where(
                    subscriptions.c.status == "active"
                )
            ).scalar()
        return from_micros(int(due)) if due is not None else None

    def _renew_due(self, cmd: Command) -> None:
        rows = cmd.conn.execute(
            sa.select(subscriptions).where(
                subscriptions.c.account_id == cmd.state.account_id,
                subscriptions.c.status == "active",
                subscriptions.c.next_charge_at_us <= cmd.now_us,
            )
        ).all()
        for row in rows:
            due_us = row.next_charge_at_us
            while due_us <= cmd.now_us:  # catch up month by month after downtime
                month_start = from_micros(due_us)
                self._charge_month(cmd, row.kind, row.item, month_start, allow_overrun=True)
                due_us = to_micros(next_month_start(month_start, cmd.state.timezone))
            cmd.conn.execute(
                subscriptions.update()
                .where(*_where(_key(cmd.state.account_id, row.kind, row.item)))
                .values(next_charge_at_us=due_us)
            )

    def _charge_month(
        self, cmd: Command, kind: str, item: str, month_of: datetime, *, allow_overrun: bool
    ) -> int:
        month = month_key(month_of, cmd.state.timezone)
        price_of = rating.price_number_rental if kind == "number" else rating.price_agent_seat
        record = charge_once(
            cmd,
            kind,
            f"{item}:{month}",
            "monthly",
            1,
            fingerprint({"month": month}),
            price_of,
            self.rates,
            status="charged",
            allow_overrun=allow_overrun,
            consumer=item if kind == "agent_seat" else None,
        )
        return record.price_micros

    def _row(self, cmd: Command, kind: str, item: str) -> sa.Row | None:  # type: ignore[type-arg]
        return cmd.conn.execute(
            sa.select(subscriptions).where(*_where(_key(cmd.state.account_id, kind, item)))
        ).one_or_none()


def _key(account_id: str, kind: str, item: str) -> dict[str, str]:
    return {"account_id": account_id, "kind": kind, "item": item}


def _where(key: dict[str, str]) -> list[sa.ColumnElement[bool]]:
    return [subscriptions.c[name] == value for name, value in key.items()]

"""The ledger's rules, as pure functions over in-memory credit lots.

A credit lot is a grant of money: `paid` (from a payment) or `promotional` (with an expiry).
Each lot has `remaining` (unspent) and `held` (the part of `remaining` reserved by open holds).
An account may also carry an `overdraft`: money owed after an overrun (a capture above its
hold, or completed usage ingested after the fact). Then:

    paid_credits        = sum(remaining of paid lots) - overdraft
    promotional_credits = sum(remaining of promotional lots)
    reserved            = sum(held)  = sum of open holds
    available           = paid_credits + promotional_credits - reserved

Every command is planned here as one or more Postings: per-lot deltas plus the change in
reserved and overdraft. The storage layer applies a Posting as one journal entry with its
movements and the balance update, in one transaction. The builder asserts every per-lot
invariant (0 <= held <= remaining <= amount) and the account invariant that an overdraft
and free spendable money never coexist (free money always settles the overdraft first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from usagewatch.domain.clock import to_micros
from usagewatch.domain.errors import insufficient_balance
from usagewatch.domain.money import Money


class LotKind(StrEnum):
    PAID = "paid"
    PROMOTIONAL = "promotional"


class EntryKind(StrEnum):
    """Journal entry types. `amount` is the change in paid+promotional credits."""

    CREDIT_PAID = "credit_paid"
    CREDIT_PROMOTIONAL = "credit_promotional"
    HOLD = "hold"
    HOLD_EXTEND = "hold_extend"
    CAPTURE = "capture"
    LATE_CAPTURE = "late_capture"  # a capture that arrives after its hold expired
    RELEASE = "release"
    HOLD_EXPIRED = "hold_expired"
    DEBIT = "debit"
    PROMOTIONAL_EXPIRED = "promotional_expired"


# Entry kinds whose negative amount counts as usage (today's and this month's usage).
USAGE_KINDS = frozenset({EntryKind.CAPTURE, EntryKind.LATE_CAPTURE, EntryKind.DEBIT})


@dataclass(frozen=True, slots=True)
class Lot:
    id: str
    kind: LotKind
    amount: Money
    remaining: Money
    held: Money
    expires_at: datetime | None
    created_seq: int  # creation order; ties in created time never reorder spending

    @property
    def free(self) -> Money:
        return self.remaining - self.held

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def check(self) -> None:
        assert self.amount.is_positive(), self
        assert Money.zero() <= self.held <= self.remaining <= self.amount, self
        assert (self.kind is LotKind.PROMOTIONAL) == (self.expires_at is not None), self


def spending_order(lot: Lot) -> tuple[int, int, int]:
    """Promotional before paid, soonest expiry first, then oldest."""
    if lot.kind is LotKind.PROMOTIONAL:
        assert lot.expires_at is not None
        return (0, to_micros(lot.expires_at), lot.created_seq)
    return (1, 0, lot.created_seq)


@dataclass(frozen=True, slots=True)
class Movement:
    lot_id: str
    remaining_delta: Money
    held_delta: Money


@dataclass(frozen=True, slots=True)
class Posting:
    kind: EntryKind
    movements: tuple[Movement, ...]
    reserved_delta: Money
    overdraft_delta: Money

    @property
    def amount(self) -> Money:
        """Change in paid + promotional credits."""
        total = sum((m.remaining_delta for m in self.movements), Money.zero())
        return total - self.overdraft_delta

    @property
    def available_delta(self) -> Money:
        return self.amount - self.reserved_delta


@dataclass
class Book:
    """The lots and overdraft of one account, as loaded under the account lock."""

    lots: dict[str, Lot]
    overdraft: Money
    _pending: dict[str, Movement] = field(default_factory=dict)
    _reserved_delta: Money = field(default_factory=Money.zero)
    _overdraft_delta: Money = field(default_factory=Money.zero)

    @classmethod
    def of(cls, lots: Iterable[Lot], overdraft: Money) -> Book:
        return cls({lot.id: lot for lot in lots}, overdraft)

    # -- figures -----------------------------------------------------------------------
    def free_spendable(self, now: datetime) -> Money:
        return sum(
            (lot.free for lot in self.lots.values() if not lot.is_expired(now)), Money.zero()
        )

    def available(self, now: datetime) -> Money:
        return self.free_spendable(now) - self.overdraft

    # -- primitive moves ---------------------------------------------------------------
    def _move(self, lot_id: str, remaining_delta: Money, held_delta: Money) -> None:
        lot = self.lots[lot_id]
        lot = replace(lot, remaining=lot.remaining + remaining_delta, held=lot.held + held_delta)
        lot.check()
        self.lots[lot_id] = lot
        before = self._pending.get(lot_id)
        if before is not None:
            remaining_delta = remaining_delta + before.remaining_delta
            held_delta = held_delta + before.held_delta
        self._pending[lot_id] = Movement(lot_id, remaining_delta, held_delta)

    def _spendable_lots(self, now: datetime) -> list[Lot]:
        lots = [lot for lot in self.lots.values() if lot.free.is_positive()]
        return sorted((lot for lot in lots if not lot.is_expired(now)), key=spending_order)

    def _consume_free(self, amount: Money, now: datetime) -> Money:
        """Spend free money in spending order; return what could not be covered."""
        left = amount
        for lot in self._spendable_lots(now):
            if not left.is_positive():
                break
            take = min(left, lot.free)
            self._move(lot.id, -take, Money.zero())
            left = left - take
        return left

    def _settle_overdraft(self, now: datetime) -> None:
        if self.overdraft.is_positive():
            uncovered = self._consume_free(self.overdraft, now)
            paid = self.overdraft - uncovered
            self.overdraft = uncovered
            self._overdraft_delta = self._overdraft_delta - paid

    def _finish(self, kind: EntryKind) -> Posting:
        posting = Posting(
            kind=kind,
            movements=tuple(m for m in self._pending.values() if m.remaining_delta or m.held_delta),
            reserved_delta=self._reserved_delta,
            overdraft_delta=self._overdraft_delta,
        )
        self._pending = {}
        self._reserved_delta = Money.zero()
        self._overdraft_delta = Money.zero()
        assert self.overdraft >= Money.zero()
        return posting

    def assert_settled(self, now: datetime) -> None:
        """An overdraft and free spendable money never coexist."""
        assert not (self.overdraft.is_positive() and self.free_spendable(now).is_positive())

    # -- commands ----------------------------------------------------------------------
    def credit(self, lot: Lot, now: datetime) -> Posting:
        """Add a new lot; any overdraft is settled from it first."""
        assert lot.id not in self.lots and lot.remaining == lot.amount and not lot.held
        self.lots[lot.id] = replace(lot, remaining=Money.zero())
        self._move(lot.id, lot.amount, Money.zero())
        self._settle_overdraft(now)
        kind = EntryKind.CREDIT_PAID if lot.kind is LotKind.PAID else EntryKind.CREDIT_PROMOTIONAL
        return self._finish(kind)

    def hold(self, amount: Money, now: datetime, kind: EntryKind = EntryKind.HOLD) -> Posting:
        """Reserve `amount` on free lots, in spending order. Never goes below zero."""
        assert amount.is_positive()
        available = self.available(now)
        if amount > available:
            raise insufficient_balance(amount.format(), available.format())
        left = amount
        for lot in self._spendable_lots(now):
            if not left.is_positive():
                break
            take = min(left, lot.free)
            self._move(lot.id, Money.zero(), take)
            left = left - take
        assert not left, "available covered the hold, so the free lots must"
        self._reserved_delta = self._reserved_delta + amount
        return self._finish(kind)

    def debit(self, amount: Money, now: datetime, allow_overrun: bool = False) -> Posting:
        """Charge `amount` from free lots. With allow_overrun, a shortfall becomes overdraft."""
        assert amount.is_positive()
        available = self.available(now)
        if amount > available and not allow_overrun:
            raise insufficient_balance(amount.format(), available.format())
        self._take_or_owe(amount, now)
        return self._finish(EntryKind.DEBIT)

    def _take_or_owe(self, amount: Money, now: datetime) -> None:
        shortfall = self._consume_free(amount, now)
        if shortfall.is_positive():
            self.overdraft = self.overdraft + shortfall
            self._overdraft_delta = self._overdraft_delta + shortfall

    def capture(
        self, allocations: Mapping[str, Money], price: Money, now: datetime, late: bool = False
    ) -> list[Posting]:
        """Close a hold by charging `price`: consume from the hold's own lots first (in
        spending order), return the rest, and charge anything above the hold from free money,
        owing what cannot be covered (the explicit overrun). A late capture (the hold already
        expired, so `allocations` is empty) is charged the same way."""
        assert price >= Money.zero()
        held_total = sum(allocations.values(), Money.zero())
        left = price
        for lot in sorted((self.lots[i] for i in allocations), key=spending_order):
            alloc = allocations[lot.id]
            take = min(left, alloc)
            self._move(lot.id, -take, -alloc)
            left = left - take
        self._reserved_delta = self._reserved_delta - held_total
        if left.is_positive():
            self._take_or_owe(left, now)
        self._settle_overdraft(now)
        kind = EntryKind.LATE_CAPTURE if late else EntryKind.CAPTURE
        postings = [self._finish(kind)]
        postings.extend(self.expire_lots(now))
        return postings

    def release(
        self, allocations: Mapping[str, Money], now: datetime, kind: EntryKind = EntryKind.RELEASE
    ) -> list[Posting]:
        """Return a hold's money to its lots. Money returned to an expired promotional lot
        is forfeited at once by a following expiry posting."""
        for lot_id, alloc in allocations.items():
            self._move(lot_id, Money.zero(), -alloc)
        self._reserved_delta = self._reserved_delta - sum(allocations.values(), Money.zero())
        self._settle_overdraft(now)
        postings = [self._finish(kind)]
        postings.extend(self.expire_lots(now))
        return postings

    def expire_lots(self, now: datetime) -> list[Posting]:
        """Forfeit the free remainder of every promotional lot whose expiry has come."""
        postings = []
        for lot in sorted(self.lots.values(), key=spending_order):
            if lot.is_expired(now) and lot.free.is_positive():
                self._move(lot.id, -lot.free, Money.zero())
                postings.append(self._finish(EntryKind.PROMOTIONAL_EXPIRED))
        return postings

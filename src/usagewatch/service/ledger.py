"""Ledger commands: credits, holds, captures, releases, debits and expiries.

Each public method is one command and one transaction:
  lock the account's balance row -> answer a replay from the journal (idempotency) ->
  forfeit any promotional credit whose expiry has come -> plan postings in the domain ->
  write them (journal entry + movements + lots + balance, together) -> commit ->
  tell balance listeners.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection

from usagewatch.adapters.db import store
from usagewatch.adapters.db.engine import Database, after_commit
from usagewatch.adapters.db.on_loop import LoopConnections
from usagewatch.adapters.db.prepared import flush_deferred, take_deferred
from usagewatch.domain.clock import Clock, from_micros, local_date, to_micros
from usagewatch.domain.errors import Conflict, Invalid, NotFound, UsageWatchError
from usagewatch.domain.ledger import Book, EntryKind, Lot, LotKind, Posting
from usagewatch.domain.money import AMOUNT_MICROS_MAX, BALANCE_MICROS_MAX, Money

HOLD_TTL_SECONDS_MAX = 24 * 3600
SWEEP_BATCH_MAX = 500
ACCOUNT_LOCK_STRIPES = 256  # in-process queue in front of the balance row lock (see _run)
GROUP_COMMANDS_MAX = 8  # commands of one account committed together (see _run)
KNOWN_ACCOUNTS_MAX = 10_000  # committed account states this process remembers (see _step)

R = TypeVar("R")

log = logging.getLogger(__name__)


class Refusal(Exception):
    """Raised by a command body to refuse the request: its transaction rolls back (whatever
    the body wrote before deciding is undone), then `then` runs as a command of its own to
    record what the refusal causes (a cap's pause and its notification), then `error`
    reaches the caller."""

    def __init__(
        self, error: UsageWatchError, then: Callable[[Command], None] | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.then = then


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def fingerprint(payload: dict[str, Any]) -> str:
    """A stable digest of a command's meaning, to tell a replay from a conflicting reuse."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- results (stored in the journal for replays; primitive fields only) -------------------
@dataclass(frozen=True, slots=True)
class CreditResult:
    id: str
    kind: str
    amount_micros: int
    remaining_micros: int
    expires_at_us: int | None
    description: str | None
    created_at_us: int


@dataclass(frozen=True, slots=True)
class HoldResult:
    hold_id: str
    reference: str
    status: str
    amount_micros: int
    expires_at_us: int
    captured_micros: int | None
    available_after_micros: int


@dataclass(frozen=True, slots=True)
class DebitResult:
    reference: str
    amount_micros: int
    overrun_micros: int
    available_after_micros: int


@dataclass
class Command:
    """What a command body works with, under the account lock."""

    conn: Connection
    state: store.AccountState
    book: Book
    now: datetime
    kinds: list[str] = field(default_factory=list)  # entry kinds written, for metrics
    available_before: int = 0  # the available balance when the command began
    # run_command(usage=(service, natural id)): that usage record's row as the command
    # began, read with the lock (None: there is none yet)
    usage_key: tuple[str, str] | None = None
    usage_row: Sequence[Any] | None = None
    # the state was not read under the lock but is what this process last committed
    # (run_command(unlocked_ok=True)): the first posting checks it and takes the lock
    unlocked: bool = False

    @property
    def now_us(self) -> int:
        return to_micros(self.now)

    @property
    def today(self) -> str:
        return local_date(self.now, self.state.timezone).isoformat()

    def post(
        self, posting: Posting, meta: store.EntryMeta, also: Sequence[store.Write] = ()
    ) -> None:
        kinds = {lot_id: lot.kind for lot_id, lot in self.book.lots.items()}
        store.apply_posting(
            self.conn,
            self.state,
            posting,
            kinds,
            _next_expiry(self.book),
            meta,
            self.now_us,
            also,
            unlocked=self.unlocked and not self.kinds,
        )
        self.kinds.append(posting.kind.value)

    def record(
        self,
        postings: list[Posting],
        key: str,
        print_: str | None,
        result: object,
        *,
        hold: store.HoldRow | None = None,
        reference: str | None = None,
        lot_id: str | None = None,
        description: str | None = None,
        also: Sequence[store.Write] = (),
    ) -> None:
        """Write a command's postings. The first carries the command's idempotency key and
        its result (for replays), and the writes `also` (in its statement on PostgreSQL);
        the rest are forfeits the command caused."""
        meta = store.EntryMeta(
            idempotency_key=key,
            local_date=self.today,
            hold_id=hold.id if hold is not None else None,
            lot_id=lot_id,
            reference=reference or (hold.reference if hold is not None else None),
            description=description,
            fingerprint=print_,
            result_json=_dump(result) if result is not None else None,
        )
        self.post(postings[0], meta, also)
        for posting in postings[1:]:
            self.post_forfeit(posting)

    def available_after(self, postings: list[Posting]) -> int:
        return self.state.available_micros + sum(p.available_delta.micros for p in postings)

    def post_forfeit(self, posting: Posting, at_expiry: bool = False) -> None:
        """Journal a forfeit. `at_expiry`: the lot expired before this command (nothing ran
        at the instant): the entry is stamped with the expiry instant and its local day."""
        assert posting.kind is EntryKind.PROMOTIONAL_EXPIRED and len(posting.movements) == 1
        movement = posting.movements[0]
        lot = self.book.lots[movement.lot_id]
        remaining_before = lot.remaining - movement.remaining_delta
        key = f"expire:{lot.id}:{remaining_before.micros}"
        when = lot.expires_at if at_expiry else None
        self.post(
            posting,
            store.EntryMeta(
                idempotency_key=key,
                local_date=(
                    local_date(when, self.state.timezone).isoformat() if when else self.today
                ),
                lot_id=lot.id,
                description="promotional credit expired",
                created_at_us=to_micros(when) if when else None,
            ),
        )

    def expire_due_lots(self) -> None:
        due = self.state.next_expiry_at_us
        if due is not None and due <= self.now_us:
            for posting in self.book.expire_lots(self.now):
                self.post_forfeit(posting, at_expiry=True)
            # Every posting recomputes the hint from the book, so it is exact: past it now.
            after = self.state.next_expiry_at_us
            assert after is None or after > self.now_us, "an expired lot was not forfeited"

    # -- hold operations, usable inside any command ------------------------------------
    def place_hold(
        self, reference: str, amount: Money, ttl_seconds: int, key: str, print_: str | None
    ) -> HoldResult:
        if store.find_hold(self.conn, self.state.account_id, reference) is not None:
            raise Conflict("idempotency_key_reused", f"a hold for {reference!r} exists")
        posting = self.book.hold(amount, self.now)
        hold = store.HoldRow(
            id=new_id("hold"),
            account_id=self.state.account_id,
            reference=reference,
            amount_micros=amount.micros,
            status="open",
            expires_at_us=to_micros(self.now + timedelta(seconds=ttl_seconds)),
            created_at_us=self.now_us,
            closed_at_us=None,
            captured_micros=None,
        )
        store.insert_hold(self.conn, hold)
        result = _hold_result(hold, self.available_after([posting]))
        self.record([posting], key, print_, result, hold=hold)
        return result

    def extend_hold(
        self, reference: str, amount: Money, ttl_seconds: int, key: str, print_: str | None
    ) -> HoldResult:
        hold = self.find_hold(reference)
        if hold.status != "open" or hold.expires_at_us <= self.now_us:
            raise Conflict("hold_closed", f"hold {reference!r} is {_state_of(hold, self)}")
        posting = self.book.hold(amount, self.now, EntryKind.HOLD_EXTEND)
        hold.amount_micros += amount.micros
        hold.expires_at_us = to_micros(self.now + timedelta(seconds=ttl_seconds))
        store.update_hold(self.conn, hold)
        result = _hold_result(hold, self.available_after([posting]))
        self.record([posting], key, print_, result, hold=hold)
        return result

    def capture_hold(
        self, reference: str, price: Money, key: str, print_: str | None
    ) -> HoldResult:
        hold = self.find_hold(reference)
        if hold.status == "open" and hold.expires_at_us <= self.now_us:
            self.close_hold(hold, "expired", EntryKind.HOLD_EXPIRED, None, None)
        if hold.status == "open":
            allocations = store.hold_allocations(self.conn, hold.id)
            postings = self.book.capture(allocations, price, self.now)
            hold.status = "captured"
            hold.closed_at_us = self.now_us
        elif hold.status == "expired" and hold.captured_micros is None:
            postings = self.book.capture({}, price, self.now, late=True)
        else:
            raise Conflict("hold_closed", f"hold {reference!r} is already {hold.status}")
        hold.captured_micros = price.micros
        store.update_hold(self.conn, hold)
        result = _hold_result(hold, self.available_after(postings))
        self.record(postings, key, print_, result, hold=hold)
        return result

    def release_hold(self, reference: str, key: str, print_: str | None) -> HoldResult:
        hold = self.find_hold(reference)
        if hold.status != "open":
            raise Conflict("hold_closed", f"hold {reference!r} is already {hold.status}")
        if hold.expires_at_us <= self.now_us:
            return self.close_hold(hold, "expired", EntryKind.HOLD_EXPIRED, key, print_)
        return self.close_hold(hold, "released", EntryKind.RELEASE, key, print_)

    def find_hold(self, reference: str) -> store.HoldRow:
        hold = store.find_hold(self.conn, self.state.account_id, reference)
        if hold is None:
            raise NotFound("hold_not_found", f"no hold {reference!r}")
        return hold

    def close_hold(
        self,
        hold: store.HoldRow,
        status: str,
        kind: EntryKind,
        key: str | None,
        print_: str | None,
    ) -> HoldResult:
        """Return all of a hold's money and close it. Without a key (an expiry), the entry
        gets the hold's own expiry key, so it can only ever happen once."""
        allocations = store.hold_allocations(self.conn, hold.id)
        postings = self.book.release(allocations, self.now, kind)
        hold.status = status
        hold.closed_at_us = self.now_us
        store.update_hold(self.conn, hold)
        result = _hold_result(hold, self.available_after(postings))
        stored = result if key is not None else None
        self.record(postings, key or f"expire-hold:{hold.id}", print_, stored, hold=hold)
        return result


def _next_expiry(book: Book) -> int | None:
    dates = [
        to_micros(lot.expires_at)
        for lot in book.lots.values()
        if lot.expires_at is not None and lot.free.is_positive()
    ]
    return min(dates) if dates else None


@dataclass(frozen=True)
class Charge(Generic[R]):
    """A charge without an idempotency key of its own (a usage record's natural id makes
    it idempotent), as `run_command` takes it: run it with `run_charge` in a thread, or
    with `run_charge_async` from the event loop."""

    account_id: str
    result_type: type[R]
    body: Callable[[Command], R]
    usage: tuple[str, str] | None = None
    unlocked_ok: bool = False


@dataclass(eq=False)
class _Queued:
    """A command waiting in its account's queue, and its outcome once run."""

    account_id: str
    key: str | None
    print_: str | None
    result_type: type[Any]
    body: Callable[[Command], Any]
    usage: tuple[str, str] | None
    unlocked_ok: bool = False
    done: bool = False
    result: Any = None
    error: Exception | None = None
    kinds: list[str] = field(default_factory=list)
    after: _Known | None = None  # the account as this command left it (see _step)
    unlocked: bool = False  # its last run started from `_Known`, without the locking read


@dataclass(frozen=True, slots=True)
class _Known:
    """An account's state and open lots as a committed transaction of this process left
    them (a copy, never changed)."""

    state: store.AccountState
    lots: tuple[Lot, ...]


class _Unconfirmed(Exception):
    """A command run from a state read without the lock wrote no posting, so nothing
    confirmed the state it decided on: it runs again the usual way."""


class _Stripe:
    """The queue of the accounts whose ids hash to one stripe; one command group at a time."""

    def __init__(self) -> None:
        self.turn = threading.Condition(threading.Lock())
        self.queue: list[_Queued] = []
        self.busy = False
        # while a charge on an event loop has the turn: that loop, and a future done when
        # it gives the turn back (the loop's next charges wait for it there, not in threads)
        self.on_loop: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    def take(self, account_id: str) -> list[_Queued]:
        """The oldest queued commands of `account_id`, out of the queue (hold `turn`)."""
        group: list[_Queued] = []
        rest: list[_Queued] = []
        for queued in self.queue:
            mine = queued.account_id == account_id and len(group) < GROUP_COMMANDS_MAX
            (group if mine else rest).append(queued)
        self.queue = rest
        return group


class LedgerService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        on_balance_change: Callable[[str], None] | None = None,
        on_entry: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self._on_balance_change = on_balance_change
        self._on_entry = on_entry
        self._triggers: list[Callable[[Command], None]] = []
        self._stripes = [_Stripe() for _ in range(ACCOUNT_LOCK_STRIPES)]
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._known_lock = threading.Lock()
        # commands run from a remembered state: committed so, or rolled back (each is then
        # run again, the usual way or from the state its predecessor committed)
        self.unlocked_runs = {"committed": 0, "rolled_back": 0}
        self.loop_commits = 0  # of the committed: on the event loop (run_charge_async)

    def add_trigger(self, trigger: Callable[[Command], None]) -> None:
        """Run `trigger` inside every command that moved money, after its body and before
        its commit (alerts, auto-recharge): what it writes commits with the change that
        caused it, or not at all. `Command.available_before` tells a crossing."""
        self._triggers.append(trigger)

    def set_entry_observer(self, on_entry: Callable[[str], None]) -> None:
        """Called with each journal entry's type after its transaction commits (metrics)."""
        self._on_entry = on_entry

    # -- the command skeleton ----------------------------------------------------------
    def run_command(
        self,
        account_id: str,
        key: str | None,
        print_: str | None,
        result_type: type[R],
        body: Callable[[Command], R],
        usage: tuple[str, str] | None = None,
        unlocked_ok: bool = False,
    ) -> R:
        """Run one money-moving command in one transaction: lock the account, answer a replay
        of `key` from the journal (409 if `print_` differs), forfeit what fell due, run
        `body`, commit, tell listeners. Other services compose their commands with it.
        `usage`: the (service, natural id) of a usage record the body needs, read with the
        lock, in the same statement: `Command.usage_row`. `body` may run more than once (a
        group commit that rolled back runs it again alone, see `_run`): it leaves nothing
        outside its transaction but what it returns.

        `unlocked_ok` (a charge that is one posting): on PostgreSQL the body may first run
        from the account's state as this process last committed it, without the locking
        read, with `usage_row` None: its first posting writes only if the balance version and
        config_version are unchanged (and takes the lock), and the natural id's unique index
        refuses a replay. Any other outcome -- a stale state, a replay, a refusal, an error,
        no posting -- rolls back and the command runs again the usual way, which decides.
        The body must then read nothing before its first posting that can change without
        either version moving (a campaign's row can: such charges do not ask for it)."""
        assert key is None or not unlocked_ok, "a replay by key needs the locking read"
        try:
            return self._run(account_id, key, print_, result_type, body, usage, unlocked_ok)
        except Refusal as refusal:
            if refusal.then is not None:
                self._run(account_id, None, None, type(None), refusal.then)
            raise refusal.error from None

    def run_charge(self, charge: Charge[R]) -> R:
        return self.run_command(
            charge.account_id,
            None,
            None,
            charge.result_type,
            charge.body,
            usage=charge.usage,
            unlocked_ok=charge.unlocked_ok,
        )

    async def run_charge_async(
        self, charge: Charge[R], offload: Callable[[Callable[[], R]], Awaitable[R]]
    ) -> R:
        """`run_charge` from the event loop. On PostgreSQL, a charge that may run from the
        account's remembered state (`unlocked_ok`), when no other command of its account
        runs or waits in this process (or the one that runs is such a charge on this loop,
        which it then waits for here), runs here: its body on the loop against a
        connection that sends nothing (`Database.unsent`), then its one statement awaited
        on the loop's own connection -- no worker thread on its way. Anything else goes
        the usual way, in a worker thread (`offload`), which then decides: a body that
        would read or write more than its posting (a cache miss, an alert's notice), a
        stale state, a refusal, an error. Until the statement is sent nothing has
        happened; once sent, it is the one statement whose checks (the balance version,
        the natural id's unique index) make running the charge again harmless."""
        run = functools.partial(self.run_charge, charge)
        loops = self.db.loop_connections
        if loops is None or not charge.unlocked_ok:
            return await offload(run)
        stripe = self._stripes[hash(charge.account_id) % ACCOUNT_LOCK_STRIPES]
        loop = asyncio.get_running_loop()
        while True:
            with stripe.turn:  # never held across I/O or an await: a moment at most
                mine = not stripe.busy and not stripe.queue
                if mine:  # as `_run` takes it: this account's commands wait for this one
                    stripe.busy = True
                    stripe.on_loop = (loop, loop.create_future())
                    break
                holder = stripe.on_loop
            if holder is None or holder[0] is not loop:
                return await offload(run)  # a thread has the turn: queue behind it there
            await asyncio.shield(holder[1])  # another charge on this loop: then try again
        queued = _Queued(
            charge.account_id, None, None, charge.result_type, charge.body, charge.usage, True
        )
        try:
            # read with the stripe held: what this process last committed on the account
            known = self._known_of(charge.account_id)
            sent = known is not None and await self._run_on_loop(queued, known, loops)
        finally:
            with stripe.turn:
                stripe.busy = False
                _, given_back = stripe.on_loop or (None, None)
                stripe.on_loop = None
                stripe.turn.notify_all()
            if given_back is not None:
                given_back.set_result(None)
        if not sent:
            return await offload(run)
        if self._on_entry is not None:
            for kind in queued.kinds:
                self._on_entry(kind)
        return queued.result  # type: ignore[no-any-return]

    async def _run_on_loop(self, queued: _Queued, known: _Known, loops: LoopConnections) -> bool:
        """`_run_alone` for `run_charge_async`: True when the charge committed, False when
        it must run the usual way. Holds its stripe."""
        conn = self.db.unsent()
        try:
            queued.result = self._step(conn, queued, known)
        except Exception:  # WouldBlock, a refusal, ...: nothing was sent, the usual way decides
            return False
        held = take_deferred(conn)
        if not queued.unlocked or held is None:
            return False
        taken = await loops.take()
        if taken is None:  # this loop's connections are all in use
            return False
        sql, args, check = held
        try:
            check(await loops.first(taken, sql, args))
        except Exception:
            # refused (a stale state, a replay) or failed; whether a failed one took is
            # unknown, and the usual way, from the locked state, finds out
            self._forget(queued.account_id)
            self._count_unlocked("rolled_back")
            return False
        except BaseException:  # cancelled while it ran: it may have taken
            self._forget(queued.account_id)
            raise
        self._count_unlocked("committed")
        with self._known_lock:
            self.loop_commits += 1
        self._remember(queued.after)
        for callback in conn.info["after_commit"]:
            try:
                callback()
            except Exception:
                log.exception("a callback after commit failed")
        return True

    def _run(
        self,
        account_id: str,
        key: str | None,
        print_: str | None,
        result_type: type[R],
        body: Callable[[Command], R],
        usage: tuple[str, str] | None = None,
        unlocked_ok: bool = False,
    ) -> R:
        # Commands of this process on one account queue here, before their transaction,
        # instead of on the balance row lock inside it (which stays the guarantee, across
        # processes): a PostgreSQL statement that waited for that lock must read the book
        # again (see store.lock_and_load), under the lock, so a queue on it makes each
        # waiting command longer and the queue longer still. Striped: bounded memory, and
        # two accounts rarely share a stripe.
        #
        # The thread whose turn it is runs every command then queued for its account, up to
        # GROUP_COMMANDS_MAX, one after the other in one transaction (group commit): each
        # sees the one before it as if it had committed, and their commit is one. If any of
        # them fails, the transaction rolls back and each runs again in a transaction of
        # its own, so a command's outcome never depends on the others in its group.
        stripe = self._stripes[hash(account_id) % ACCOUNT_LOCK_STRIPES]
        mine = _Queued(account_id, key, print_, result_type, body, usage, unlocked_ok)
        with stripe.turn:
            stripe.queue.append(mine)
        while True:
            with stripe.turn:
                while stripe.busy and not mine.done:
                    stripe.turn.wait()
                if mine.done:
                    break
                stripe.busy = True
                group = stripe.take(account_id)
            try:
                self._run_group(group)
            finally:
                with stripe.turn:
                    stripe.busy = False
                    stripe.turn.notify_all()
        if mine.error is not None:
            raise mine.error
        if self._on_entry is not None:
            for kind in mine.kinds:
                self._on_entry(kind)
        return mine.result  # type: ignore[no-any-return]

    def _run_group(self, group: list[_Queued]) -> None:
        try:
            if len(group) == 1 or not self._run_together(group):
                for queued in group:
                    self._run_alone(queued)
        finally:
            for queued in group:  # an interrupt: nobody waits for ever
                if not queued.done:
                    queued.error = RuntimeError("the command was interrupted")
                    queued.done = True

    def _run_together(self, group: list[_Queued]) -> bool:
        """Run `group` in one transaction; False if one of them failed and it rolled back.
        Each command starts from the state the one before it left (it holds the lock)."""
        ran = False
        known = self._known_of(group[0].account_id)
        try:
            with self.db.write() as conn:
                for queued in group:
                    queued.result = self._step(conn, queued, known)
                    known = queued.after
                flush_deferred(conn)  # its failure is one of theirs, not the commit's
                ran = True
        except Exception as exc:
            self._forget(group[0].account_id)
            for queued in group:
                if queued.unlocked:
                    self._count_unlocked("rolled_back")
            if not ran:
                return False
            for queued in group:  # the commit failed: whether it took is unknown
                queued.error = exc
        else:
            for queued in group:
                if queued.unlocked:
                    self._count_unlocked("committed")
            self._remember(group[-1].after)
        for queued in group:
            queued.done = True
        return True

    def _run_alone(self, queued: _Queued) -> None:
        known = self._known_of(queued.account_id)
        while True:
            try:
                with self.db.write() as conn:
                    queued.result = self._step(conn, queued, known)
            except Exception as exc:
                self._forget(queued.account_id)
                if queued.unlocked:
                    self._count_unlocked("rolled_back")
                    known = None  # it ran from a state read without the lock: the usual way
                    continue
                queued.error = exc
            else:
                if queued.unlocked:
                    self._count_unlocked("committed")
                self._remember(queued.after)
            break
        queued.done = True

    def _step(self, conn: Connection, queued: _Queued, known: _Known | None) -> Any:
        """One command inside a write transaction (`_run`): lock, replay, body, triggers.
        `known`: the account as this process's last transaction on it committed it (or as
        the command before it in this transaction left it), for a command that may run
        from it without the locking read (`run_command(unlocked_ok=True)`)."""
        account_id, key, print_ = queued.account_id, queued.key, queued.print_
        queued.kinds = []
        queued.after = None
        now = self.clock.now()
        queued.unlocked = unlocked = (
            queued.unlocked_ok
            and known is not None
            and conn.dialect.name == "postgresql"
            and (
                known.state.next_expiry_at_us is None
                or known.state.next_expiry_at_us > to_micros(now)
            )
        )
        if unlocked:
            assert known is not None
            state, lots, usage_row = replace(known.state), list(known.lots), None
        else:
            locked = store.lock_and_load(conn, account_id, key, queued.usage)
            if locked is None:
                raise NotFound("account_not_found", f"no account {account_id!r}")
            state, prior, lots, usage_row = (
                locked.state,
                locked.prior,
                locked.lots,
                locked.usage_row,
            )
            if prior is not None:
                if prior.fingerprint != print_ or prior.result_json is None:
                    raise Conflict(
                        "idempotency_key_reused",
                        "this idempotency key was already used with a different request",
                    )
                queued.after = _Known(replace(state), tuple(lots))
                return queued.result_type(**json.loads(prior.result_json))
            # The time, once the lock is held: after that of every command before it on the
            # account. (Unlocked, a command that committed since `now` moved the version.)
            now = self.clock.now()
        version_before = state.version
        book = Book.of(lots, Money(state.overdraft_micros))
        command = Command(
            conn,
            state,
            book,
            now,
            usage_key=queued.usage,
            usage_row=usage_row,
            unlocked=unlocked,
        )
        command.available_before = state.available_micros
        command.expire_due_lots()
        result = queued.body(command)
        command.book.assert_settled(command.now)
        if state.version != version_before:
            for trigger in self._triggers:
                trigger(command)
            self._announce(conn, account_id)
        elif unlocked:
            raise _Unconfirmed(account_id)
        queued.kinds = command.kinds
        open_lots = (lot for lot in command.book.lots.values() if lot.remaining.is_positive())
        queued.after = _Known(replace(state), tuple(open_lots))
        return result

    # -- what this process last committed, per account ----------------------------------
    def _known_of(self, account_id: str) -> _Known | None:
        with self._known_lock:
            return self._known.get(account_id)

    def _remember(self, known: _Known | None) -> None:
        if known is None or self.db.is_sqlite:  # SQLite's locking read costs no round trip
            return
        with self._known_lock:
            self._known[known.state.account_id] = known
            self._known.move_to_end(known.state.account_id)
            if len(self._known) > KNOWN_ACCOUNTS_MAX:
                self._known.popitem(last=False)

    def _count_unlocked(self, outcome: str) -> None:
        with self._known_lock:
            self.unlocked_runs[outcome] += 1

    def _forget(self, account_id: str) -> None:
        with self._known_lock:
            self._known.pop(account_id, None)

    def _announce(self, conn: Connection, account_id: str) -> None:
        # Other processes hear of it through PostgreSQL NOTIFY, sent by apply_posting.
        if self._on_balance_change is not None:
            callback = self._on_balance_change
            after_commit(conn, lambda: callback(account_id))

    # -- credits -----------------------------------------------------------------------
    def add_credit(
        self,
        account_id: str,
        kind: LotKind,
        amount: Money,
        *,
        expires_at: datetime | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> CreditResult:
        _check_amount(amount)
        if kind is LotKind.PROMOTIONAL and expires_at is None:
            raise Invalid(
                "expires_at_required", "promotional credit needs expires_at", "expires_at"
            )
        if kind is LotKind.PAID and expires_at is not None:
            raise Invalid("expires_at_not_allowed", "paid credit does not expire", "expires_at")
        key = f"credit:{idempotency_key or secrets.token_hex(16)}"
        print_ = fingerprint(
            {
                "kind": kind.value,
                "amount": amount.micros,
                "description": description,
                "expires_at": to_micros(expires_at) if expires_at else None,
            }
        )

        def body(cmd: Command) -> CreditResult:
            if expires_at is not None and expires_at <= cmd.now:
                raise Invalid(
                    "expires_at_in_past", "expires_at must be in the future", "expires_at"
                )
            total = cmd.state.paid_micros + cmd.state.promotional_micros + amount.micros
            if total > BALANCE_MICROS_MAX:
                raise Invalid(
                    "balance_limit_exceeded", "the balance would exceed its maximum", "amount"
                )
            lot = Lot(
                id=new_id("cr"),
                kind=kind,
                amount=amount,
                remaining=amount,
                held=Money.zero(),
                expires_at=expires_at,
                created_seq=cmd.state.version + 1,
            )
            store.insert_lot(cmd.conn, account_id, lot, description, cmd.now)
            posting = cmd.book.credit(lot, cmd.now)
            result = CreditResult(
                id=lot.id,
                kind=kind.value,
                amount_micros=amount.micros,
                remaining_micros=cmd.book.lots[lot.id].remaining.micros,
                expires_at_us=to_micros(expires_at) if expires_at else None,
                description=description,
                created_at_us=cmd.now_us,
            )
            cmd.record([posting], key, print_, result, lot_id=lot.id, description=description)
            return result

        return self.run_command(account_id, key, print_, CreditResult, body)

    # -- holds -------------------------------------------------------------------------
    # A hold past its TTL is expired, whether or not the sweeper has reached it yet: every
    # hold command treats it so, so outcomes never depend on the sweeper's timing.
    def place_hold(
        self, account_id: str, reference: str, amount: Money, ttl_seconds: int
    ) -> HoldResult:
        """Reserve `amount` for `reference` (a call) until now + ttl. The reference is the
        idempotency key: placing the same hold again returns the first result."""
        _check_amount(amount)
        _check_ttl(ttl_seconds)
        key = f"hold:{reference}"
        print_ = fingerprint({"amount": amount.micros, "ttl": ttl_seconds})

        return self.run_command(
            account_id,
            key,
            print_,
            HoldResult,
            lambda cmd: cmd.place_hold(reference, amount, ttl_seconds, key, print_),
        )

    def extend_hold(
        self, account_id: str, reference: str, amount: Money, ttl_seconds: int, step: str
    ) -> HoldResult:
        """Reserve `amount` more for an open hold and push its expiry to now + ttl.
        `step` names this extension (e.g. its sequence number) and makes it idempotent."""
        _check_amount(amount)
        _check_ttl(ttl_seconds)
        key = f"extend:{reference}:{step}"
        print_ = fingerprint({"amount": amount.micros, "ttl": ttl_seconds})

        return self.run_command(
            account_id,
            key,
            print_,
            HoldResult,
            lambda cmd: cmd.extend_hold(reference, amount, ttl_seconds, key, print_),
        )

    def capture_hold(self, account_id: str, reference: str, price: Money) -> HoldResult:
        """Charge `price` against the hold and release the rest. Above the hold, the excess
        is charged too and any shortfall is recorded as an explicit overrun. A hold that
        already expired is still charged, once (a late capture, from free money)."""
        if price.is_negative() or price.micros > AMOUNT_MICROS_MAX:
            code = "amount_too_large" if price.is_positive() else "amount_not_positive"
            raise Invalid(code, "price out of range", "amount")
        key = f"capture:{reference}"
        print_ = fingerprint({"price": price.micros})

        return self.run_command(
            account_id,
            key,
            print_,
            HoldResult,
            lambda cmd: cmd.capture_hold(reference, price, key, print_),
        )

    def release_hold(self, account_id: str, reference: str) -> HoldResult:
        """Return the whole hold (the call failed or never connected). A hold already past
        its TTL ends as `expired`, which returns the money just the same."""
        key = f"release:{reference}"
        print_ = fingerprint({})

        return self.run_command(
            account_id,
            key,
            print_,
            HoldResult,
            lambda cmd: cmd.release_hold(reference, key, print_),
        )

    # -- plain charges -----------------------------------------------------------------
    def debit(
        self,
        account_id: str,
        reference: str,
        amount: Money,
        *,
        allow_overrun: bool = False,
        description: str | None = None,
    ) -> DebitResult:
        """Charge `amount` once for `reference` (a message id). Refused when available cannot
        cover it, unless `allow_overrun` (usage that already happened): then the shortfall is
        owed as an explicit overrun."""
        _check_amount(amount)
        key = f"debit:{reference}"
        print_ = fingerprint({"amount": amount.micros, "overrun": allow_overrun})

        def body(cmd: Command) -> DebitResult:
            overdraft_before = cmd.book.overdraft
            posting = cmd.book.debit(amount, cmd.now, allow_overrun)
            result = DebitResult(
                reference=reference,
                amount_micros=amount.micros,
                overrun_micros=(cmd.book.overdraft - overdraft_before).micros,
                available_after_micros=cmd.available_after([posting]),
            )
            cmd.record([posting], key, print_, result, reference=reference, description=description)
            return result

        return self.run_command(account_id, key, print_, DebitResult, body)

    # -- time-driven work --------------------------------------------------------------
    def run_due(self) -> int:
        """Expire every hold and promotional lot that has fallen due by now. Returns how many
        accounts were touched. Safe to run in several processes at once."""
        now_us = to_micros(self.clock.now())
        touched = 0
        with self.db.read() as conn:
            due_holds = store.due_holds(conn, now_us, SWEEP_BATCH_MAX)
            due_lot_accounts = store.accounts_with_due_lots(conn, now_us, SWEEP_BATCH_MAX)
        for account_id, reference in due_holds:
            self._expire_hold(account_id, reference)
            touched += 1
        for account_id in due_lot_accounts:
            self.expire_account(account_id)
            touched += 1
        return touched

    def expire_account(self, account_id: str) -> None:
        """Forfeit the account's promotional credit whose expiry has come (every command
        does this first; this runs it alone)."""
        self.run_command(account_id, None, None, type(None), lambda cmd: None)

    def _expire_hold(self, account_id: str, reference: str) -> None:
        def body(cmd: Command) -> None:
            hold = store.find_hold(cmd.conn, account_id, reference)
            if hold is None or hold.status != "open" or hold.expires_at_us > cmd.now_us:
                return  # another worker got there first, or it was extended
            cmd.close_hold(hold, "expired", EntryKind.HOLD_EXPIRED, None, None)

        self.run_command(account_id, None, None, type(None), body)

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            due = store.next_due_at_us(conn)
        return from_micros(due) if due is not None else None


def _hold_result(hold: store.HoldRow, available_after_micros: int) -> HoldResult:
    return HoldResult(
        hold_id=hold.id,
        reference=hold.reference,
        status=hold.status,
        amount_micros=hold.amount_micros,
        expires_at_us=hold.expires_at_us,
        captured_micros=hold.captured_micros,
        available_after_micros=available_after_micros,
    )


def _state_of(hold: store.HoldRow, cmd: Command) -> str:
    return "expired" if hold.status == "open" and hold.expires_at_us <= cmd.now_us else hold.status


def _dump(result: Any) -> str:
    return json.dumps(asdict(result), separators=(",", ":"))


def _check_amount(amount: Money) -> None:
    if not amount.is_positive():
        raise Invalid("amount_not_positive", "the amount must be greater than zero", "amount")
    if amount.micros > AMOUNT_MICROS_MAX:
        raise Invalid("amount_too_large", "the amount exceeds 1,000,000,000", "amount")


def _check_ttl(ttl_seconds: int) -> None:
    if not 1 <= ttl_seconds <= HOLD_TTL_SECONDS_MAX:
        raise Invalid("invalid_duration", "hold TTL must be 1 to 86400 seconds", "ttl_seconds")

"""Balance change notifications for live views (Server-Sent Events).

Within a process, the ledger calls `publish_local` after each commit that changed a balance
(its `version`). Across processes: PostgreSQL delivers NOTIFY (sent in the same transaction
as the change, naming the account) to a LISTEN thread. SQLite is watched through `PRAGMA
data_version`, which moves when any other connection commits, this process's own included
(which `publish_local` already announced): when it moves, the watcher reads the balance
versions of the subscribed accounts (one statement) and wakes only those whose version
moved since it last looked, so a commit elsewhere, or on another account, wakes no one.
Subscribers are woken; they re-read the balance and send it only if it changed, so a
duplicate wake-up costs one cheap read and never a wrong event.

Live views share their reads through `FanOut`: all the open streams of one account (200
dashboards, say) hold one subscription, and one wake-up is one read (at most one every
`FANOUT_INTERVAL_SECONDS`, coalescing a burst of changes into its final state) whose result
every stream receives, unless it equals the previous read (a duplicate wake-up): then no
stream is woken. So the cost of a change does not grow with the number of viewers.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import balances
from usagewatch.adapters.db.store import BALANCE_CHANNEL

log = logging.getLogger(__name__)
WILDCARD = "*"
SQLITE_POLL_SECONDS = 0.2
SQLITE_VERSIONS_PER_STATEMENT = 500  # bound on the watcher's IN list (SQLite variables)
FANOUT_INTERVAL_SECONDS = 0.5  # at most this often one read per account with open streams
# Every listener is woken this often with nothing new (`Listener.ticks` moves), so an idle
# stream can send a keepalive and notice that its client has gone: one timer per account,
# not one per stream and wait.
FANOUT_TICK_SECONDS = 15.0
NOTHING: Any = object()  # what a listener has before the first read


@dataclass(eq=False)
class Subscription:
    account_id: str
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        # Already set: the reader has not consumed it yet and will read after this change
        # committed, so one more wake-up (a self-pipe write) would add nothing.
        if not self.event.is_set():
            self.loop.call_soon_threadsafe(self.event.set)


class BalanceFeed:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._subscribers: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fanout = FanOut(self)

    # -- subscribers -------------------------------------------------------------------
    def subscribe(self, account_id: str) -> Subscription:
        sub = Subscription(account_id, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(account_id, set()).add(sub)
        self._ensure_started()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subscribers.get(sub.account_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[sub.account_id]

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscribers.values())

    # -- publishers --------------------------------------------------------------------
    def publish_local(self, account_id: str) -> None:
        self._dispatch(account_id)

    def _dispatch(self, account_id: str) -> None:
        with self._lock:
            if account_id == WILDCARD:
                targets = [s for subs in self._subscribers.values() for s in subs]
            else:
                targets = list(self._subscribers.get(account_id, ()))
        for sub in targets:
            sub.wake()

    # -- cross-process watcher ---------------------------------------------------------
    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            target = self._watch_sqlite if self.db.is_sqlite else self._listen_postgres
            self._thread = threading.Thread(target=target, name="balance-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    def _watch_sqlite(self) -> None:
        path = sa.engine.make_url(self.db.url).database or ":memory:"
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        seen: dict[str, int] = {}  # account -> its balance version when last looked at
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self._stop.wait(SQLITE_POLL_SECONDS):
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version  # read before the versions: a later commit moves it again
                    try:
                        moved = self._moved_balances(conn, seen)
                    except sqlite3.Error:  # never miss a change: wake everyone instead
                        log.exception("balance feed could not read the balance versions")
                        seen.clear()
                        moved = [WILDCARD]
                    for account_id in moved:
                        self._dispatch(account_id)
        finally:
            conn.close()

    def _moved_balances(self, conn: sqlite3.Connection, seen: dict[str, int]) -> list[str]:
        """The subscribed accounts whose balance version differs from `seen` (updated), or
        that `seen` does not know yet (a new subscriber: its join made a read, but a change
        may have come after it)."""
        with self._lock:
            accounts = list(self._subscribers)
        for gone in seen.keys() - set(accounts):
            del seen[gone]
        moved = []
        sql = f"SELECT account_id, version FROM {balances.name} WHERE account_id IN "
        for i in range(0, len(accounts), SQLITE_VERSIONS_PER_STATEMENT):
            chunk = accounts[i : i + SQLITE_VERSIONS_PER_STATEMENT]
            marks = ", ".join("?" * len(chunk))
            for account_id, version in conn.execute(f"{sql}({marks})", chunk):
                if seen.get(account_id) != version:
                    seen[account_id] = version
                    moved.append(account_id)
        return moved

    def _listen_postgres(self) -> None:
        url = sa.engine.make_url(self.db.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {BALANCE_CHANNEL}")
                    self._dispatch(WILDCARD)  # catch up on anything missed while away
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._dispatch(note.payload)
            except psycopg.Error:
                log.exception("balance feed lost its PostgreSQL connection; reconnecting")
                self._stop.wait(1.0)


@dataclass(eq=False)
class Listener:
    """One open stream: `event` is set when `latest` (a reader's result, or the exception it
    raised) is new, or when `ticks` moved (every FANOUT_TICK_SECONDS). `latest` is
    `NOTHING` until the first read."""

    channel: _Channel
    event: asyncio.Event = field(default_factory=asyncio.Event)
    latest: Any = NOTHING
    ticks: int = 0


@dataclass(eq=False)
class _Channel:
    account_id: str
    sub: Subscription
    read: Callable[[str], Awaitable[Any]]
    listeners: set[Listener] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    ticker: asyncio.Task[None] | None = None
    joined: bool = False  # a listener joined: the next read goes to everyone, even unchanged


class FanOut:
    """Per account and event loop: one feed subscription, one reader task, one ticker task
    (FANOUT_TICK_SECONDS) and many listeners."""

    def __init__(self, feed: BalanceFeed) -> None:
        self.feed = feed
        self._channels: dict[tuple[asyncio.AbstractEventLoop, str], _Channel] = {}

    def join(self, account_id: str, read: Callable[[str], Awaitable[Any]]) -> Listener:
        """Listen to `account_id`'s changes; `read(account_id)` makes what listeners get (the
        first joiner's reader serves the channel). A read follows every join, so a change
        committed before it is not lost."""
        key = (asyncio.get_running_loop(), account_id)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = _Channel(
                account_id, self.feed.subscribe(account_id), read
            )
            loop = asyncio.get_running_loop()
            channel.task = loop.create_task(self._run(channel))
            channel.ticker = loop.create_task(self._tick(channel))
        listener = Listener(channel)
        channel.listeners.add(listener)
        channel.joined = True
        channel.sub.event.set()
        return listener

    def leave(self, listener: Listener) -> None:
        channel = listener.channel
        channel.listeners.discard(listener)
        if channel.listeners:
            return
        key = (channel.sub.loop, channel.account_id)
        if self._channels.get(key) is channel:
            del self._channels[key]
        self.feed.unsubscribe(channel.sub)
        if not channel.sub.loop.is_closed():
            for task in (channel.task, channel.ticker):
                if task is not None:
                    task.cancel()

    async def _run(self, channel: _Channel) -> None:
        previous: Any = NOTHING
        while True:
            await channel.sub.event.wait()
            channel.sub.event.clear()
            # Every listener has had `previous` (or a later read) unless one joined since:
            # a read that starts after a join goes to everyone.
            joined, channel.joined = channel.joined, False
            result: Any
            try:
                result = await channel.read(channel.account_id)
            except Exception as exc:  # every listener ends with it, as a lone reader would
                result = exc
            if joined or isinstance(result, BaseException) or result != previous:
                previous = result
                for listener in list(channel.listeners):
                    listener.latest = result
                    listener.event.set()
            await asyncio.sleep(FANOUT_INTERVAL_SECONDS)

    async def _tick(self, channel: _Channel) -> None:
        while True:
            await asyncio.sleep(FANOUT_TICK_SECONDS)
            for listener in list(channel.listeners):
                listener.ticks += 1
                listener.event.set()

"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with synchronous=FULL (durable commits). Write transactions start
with BEGIN IMMEDIATE behind a process-wide lock, so writers queue instead of failing with
"database is locked"; other processes wait on busy_timeout. PostgreSQL uses READ COMMITTED
with a row lock on the account's balance row in every command (see store.lock_and_load).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from usagewatch.adapters.db.on_loop import LoopConnections
from usagewatch.adapters.db.prepared import DEFERRED, Unsent, flush_deferred

SQLITE_BUSY_TIMEOUT_MS = 60_000

log = logging.getLogger(__name__)


def _flush_before(conn: Connection, *_: Any) -> None:
    if DEFERRED in conn.info:
        flush_deferred(conn)


def normalize_url(url: str) -> str:
    """Accept the URLs people type: postgres://, postgresql:// and sqlite paths."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Database:
    """An engine plus the transaction discipline every command follows."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self._write_lock = threading.RLock()
        self._local = threading.local()
        # PostgreSQL: connections for statements awaited on an event loop (`on_loop`)
        self.loop_connections: LoopConnections | None = None
        if self.url.startswith("sqlite"):
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = sa.create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800
            )
            # A statement held back (Prepared.first_deferred) goes before any other, also
            # one run through SQLAlchemy.
            event.listen(self.engine, "before_cursor_execute", _flush_before)
            conninfo = self.engine.url.set(drivername="postgresql")
            self.loop_connections = LoopConnections(conninfo.render_as_string(hide_password=False))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One read-write transaction. Callbacks given to `after_commit` run once it commits."""
        callbacks: list[Callable[[], None]] = []
        lock = self._write_lock if self.is_sqlite else None
        if lock is not None:
            lock.acquire()
        try:
            with self.engine.connect() as conn:
                conn.info["after_commit"] = callbacks
                try:
                    with conn.begin():
                        if self.is_sqlite:
                            conn.exec_driver_sql("BEGIN IMMEDIATE")
                        yield conn
                        flush_deferred(conn, alone=True)
                finally:  # rolled back: a statement held back is never sent
                    conn.info.pop(DEFERRED, None)
        finally:
            if lock is not None:
                lock.release()
        for callback in callbacks:  # the transaction committed: each one runs, whatever
            try:
                callback()
            except Exception:
                log.exception("a callback after commit failed")

    def unsent(self) -> Connection:
        """A stand-in for a write transaction's connection that sends nothing
        (`prepared.Unsent`): a command run against it on the event loop holds back its one
        statement for the caller to send there (`take_deferred`, `loop_connections`);
        anything else it tries raises `WouldBlock`. Its `after_commit` callbacks are the
        caller's to run."""
        return Unsent(self.engine)  # type: ignore[return-value]

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read-only transaction: a consistent snapshot, never blocks writers."""
        with self.engine.connect() as conn, conn.begin():
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN")
            yield conn

    def dispose(self) -> None:
        if self.loop_connections is not None:
            self.loop_connections.close()
        self.engine.dispose()


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run `callback` after the current write transaction commits (never if it rolls back).
    An exception it raises is logged: the transaction stays committed, its caller gets its
    result, and the callbacks after it still run."""
    conn.info["after_commit"].append(callback)


def _sqlite_engine(url: str) -> Engine:
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module: we issue BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return engine

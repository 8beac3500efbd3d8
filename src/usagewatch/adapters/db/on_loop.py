"""PostgreSQL statements awaited on the event loop, for the one-statement charges.

An SMS or WhatsApp charge from the account's remembered state is one statement in
autocommit (`Prepared.first_deferred`). Sent from a worker thread, its request crosses two
thread hand-offs the statement itself does not need (event loop to worker, worker back to
the loop), and at one client those wake-ups show: sent from the loop instead, one
client's SMS went from 0.29-0.31x a bare endpoint to 0.35-0.39x (README, Benchmarks,
2026-12-07). `LoopConnections` keeps a few psycopg `AsyncConnection`s in autocommit per
event loop (a psycopg async connection belongs to the loop it was opened on) and runs one
statement on one of them; the ledger decides which statements may go this way
(`LedgerService.run_charge_async`).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg

LOOP_CONNECTIONS_MAX = 10  # per event loop, open at once; past it a charge takes a thread


class LoopConnections:
    def __init__(self, conninfo: str, size: int = LOOP_CONNECTIONS_MAX) -> None:
        self._conninfo = conninfo
        self._size = size
        self._lock = threading.Lock()
        # per loop: its idle connections (with their reused cursor) and how many are open
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )
        self._open: set[psycopg.AsyncConnection[Any]] = set()  # every loop's, to close them
        self._closed = False

    async def take(self) -> _Taken | None:
        """A connection of the running loop, opened if none is idle; None when the loop
        already has `size` open (the caller goes another way)."""
        pool = self._pool()
        if pool.idle:
            return pool.idle.pop()
        if pool.open >= self._size or self._closed:
            return None
        pool.open += 1
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except BaseException:
            pool.open -= 1
            raise
        with self._lock:
            self._open.add(conn)
        return _Taken(conn, psycopg.AsyncRawCursor(conn))

    async def first(self, taken: _Taken, sql: str, args: Any) -> Sequence[Any] | None:
        """Run one statement (`$n` placeholders, as `Prepared` compiles them) on `taken` and
        give it back; its first row. On any failure, or a cancellation while it runs, the
        connection is closed, not reused: its state is unknown."""
        try:
            await taken.cursor.execute(sql, args)
            rows = await taken.cursor.fetchall()
        except BaseException:
            await self._discard(taken)
            raise
        self.give_back(taken)
        return rows[0] if rows else None

    def give_back(self, taken: _Taken) -> None:
        if self._closed or taken.conn.closed:
            self._drop(taken)
            taken.conn.pgconn.finish()
        else:
            self._pool().idle.append(taken)

    async def close_loop(self) -> None:
        """Close the running loop's idle connections (its app is shutting down)."""
        pool = self._pool()
        while pool.idle:
            await self._discard(pool.idle.pop())

    def close(self) -> None:
        """Close every connection of every loop (the database is disposed of). libpq's
        `finish` closes the socket without the loop: these loops may be gone."""
        with self._lock:
            self._closed = True
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.pgconn.finish()

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._loops.get(loop)
            if pool is None:
                pool = self._loops[loop] = _LoopPool()
            return pool

    async def _discard(self, taken: _Taken) -> None:
        self._drop(taken)
        await taken.conn.close()

    def _drop(self, taken: _Taken) -> None:
        """Count `taken` out of its loop's pool and of the set `close` closes."""
        self._pool().open -= 1
        with self._lock:
            self._open.discard(taken.conn)


class _Taken:
    __slots__ = ("conn", "cursor")

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], cursor: psycopg.AsyncRawCursor[Any]
    ) -> None:
        self.conn = conn
        self.cursor = cursor


class _LoopPool:
    __slots__ = ("idle", "open")

    def __init__(self) -> None:
        self.idle: list[_Taken] = []
        self.open = 0

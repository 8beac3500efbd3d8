"""Statements of the hot paths, compiled once per dialect and run on the driver's cursor.

`Connection.execute` spends about 40 µs of Python per statement before the driver sees it
(execution context, parameter and result processing, events): more than SQLite needs to
run a keyed insert, and on a charge that runs ten statements, the biggest cost left. The
statements every charge, call and batch runs are written with SQLAlchemy Core as usual,
compiled here once per dialect, and executed through the DBAPI connection of the caller's
transaction (one cursor per connection, reused: a new psycopg cursor costs a third of a
statement) -- same SQL, same transaction, driver errors raised as SQLAlchemy's
(`IntegrityError`, ...) and a broken connection invalidated, as `Connection.execute`
would. Rows come back as plain tuples, fetched at once: only statements whose values need
no type processing qualify (text, integers; `Prepared` refuses any other at compile time).
"""

from __future__ import annotations

import operator
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

CURSOR = "usagewatch.cursor"  # Connection.info key: (DBAPI connection, its reused cursor)
# Connection.info key: the statement `Prepared.first_deferred` holds back
DEFERRED = "usagewatch.deferred"
UNSENT = "usagewatch.unsent"  # Connection.info key: set on an `Unsent` stand-in


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...] | None  # positional dialects and PostgreSQL: names in order
    defaults: dict[str, Any]  # values bound in the statement itself
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None  # params -> positional args


def _picker(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if not names:
        return lambda params: ()
    if len(names) == 1:
        (name,) = names
        return lambda params: (params[name],)
    get = operator.itemgetter(*names)
    return lambda params: get(params)


_PYFORMAT = re.compile(r"%\((\w+)\)s|%%")


def _native_placeholders(sql: str) -> tuple[str, tuple[str, ...]]:
    """PostgreSQL: `%(name)s` placeholders as `$1, $2, ...` (one number per name) and the
    names in number order, for a psycopg RawCursor. psycopg would otherwise parse the query
    for its placeholders on every execution of a statement longer than 4 KB or with more
    than 50 of them (those it does not cache): 0.7 ms for a charge's posting statement."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in numbers:
            numbers[name] = len(numbers) + 1
        return f"${numbers[name]}"

    return _PYFORMAT.sub(number, sql), tuple(numbers)


class Prepared:
    def __init__(self, statement: sa.Executable, columns: Sequence[str] | None = None) -> None:
        """`columns`: for an INSERT or UPDATE without values, the columns it sets (each
        bound by its own name)."""
        self.statement = statement
        self.columns = list(columns) if columns is not None else None
        self._by_dialect: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, conn: Connection) -> _Compiled:
        name = conn.dialect.name
        found = self._by_dialect.get(name)
        if found is None:
            with self._lock:
                found = self._by_dialect.get(name) or self._compile(conn.dialect)
                self._by_dialect[name] = found
        return found

    def _compile(self, dialect: sa.Dialect) -> _Compiled:
        compiled: Any = self.statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=self.columns
        )
        assert not compiled._bind_processors, f"values need processing: {compiled}"
        sql = str(compiled)
        assert "POSTCOMPILE" not in sql, f"expanding parameters are not supported: {sql}"
        names = tuple(compiled.positiontup) if compiled.positional else None
        if dialect.name == "postgresql" and names is None:
            sql, names = _native_placeholders(sql)
        bound = compiled.construct_params(_check=False)
        defaults = {name: value for name, value in bound.items() if value is not None}
        pick = None if names is None else _picker(names)
        return _Compiled(sql, names, defaults, pick)

    def bind(self, conn: Connection, params: Mapping[str, Any]) -> tuple[str, Any]:
        """(SQL, driver arguments) of this statement with `params` (by bind name)."""
        compiled = self._compiled(conn)
        if compiled.defaults:
            params = {**compiled.defaults, **params}
        return compiled.sql, params if compiled.pick is None else compiled.pick(params)

    # -- running -------------------------------------------------------------------------
    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a write; returns the rows it changed."""
        rowcount: int = _execute(conn, *self.bind(conn, params)).rowcount
        return rowcount

    def executemany(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        sql = None
        args = []
        for row in rows:
            sql, bound = self.bind(conn, row)
            args.append(bound)
        if sql is not None:
            _execute(conn, sql, args, many=True)

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Any] | None:
        # fetchall: a SQLite statement left unfinished would keep its read snapshot open
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = _execute(conn, *self.bind(conn, params)).fetchall()
        return rows

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        row = self.first(conn, params)
        return row[0] if row is not None else None

    def first_deferred(
        self,
        conn: Connection,
        params: Mapping[str, Any],
        check: Callable[[Sequence[Any] | None], None],
    ) -> None:
        """PostgreSQL: run this statement as `first` does, and give `check` its first row --
        but when it would be its transaction's first statement, hold it back: it runs just
        before the transaction's next statement, or, if there is none, at commit on its own,
        as the whole transaction (autocommit: one round trip instead of `BEGIN`, it and
        `COMMIT`; `Database.write` calls `flush_deferred`). `check` may raise: the
        transaction then fails as if the statement had. Only for a statement that writes
        nothing when `check` refuses its row (it commits, alone).

        On an `Unsent` stand-in it is only held back: `take_deferred` gives it to the caller
        to send; a second statement raises `WouldBlock`."""
        if UNSENT in conn.info:
            if DEFERRED in conn.info:
                raise WouldBlock("a second statement")
            conn.info[DEFERRED] = (*self.bind(conn, params), check)
            return
        raw = conn.connection.dbapi_connection
        if DEFERRED in conn.info or raw is None or raw.info.transaction_status != IDLE:
            flush_deferred(conn)
            check(self.first(conn, params))
            return
        conn.info[DEFERRED] = (*self.bind(conn, params), check)


IDLE = psycopg.pq.TransactionStatus.IDLE


class WouldBlock(Exception):
    """Something tried to reach the database through an `Unsent` stand-in."""


class Unsent:
    """Stands in for a write transaction's connection where no I/O may happen (on an event
    loop): it has its engine, dialect and `info`, so a command can price, decide and hold
    back its posting statement (`Prepared.first_deferred`), and nothing else. Every other
    use -- a statement, a read, a flush -- goes through an attribute it does not have and
    raises `WouldBlock` before anything is sent: it cannot send anything at all."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.info: dict[str, Any] = {UNSENT: True, "after_commit": []}

    def __getattr__(self, name: str) -> Any:
        raise WouldBlock(f"{name}: this connection sends nothing")


def take_deferred(
    conn: Connection,
) -> tuple[str, Any, Callable[[Sequence[Any] | None], None]] | None:
    """The statement held back on `conn`, out of it: (SQL, driver arguments, check)."""
    held: tuple[str, Any, Callable[[Sequence[Any] | None], None]] | None
    held = conn.info.pop(DEFERRED, None)
    return held


def flush_deferred(conn: Connection, alone: bool = False) -> None:
    """Run the statement `first_deferred` held back, if any: `alone` (at commit), as the
    whole transaction when it is still its only statement."""
    held = conn.info.pop(DEFERRED, None)
    if held is None:
        return
    sql, args, check = held
    raw: Any = conn.connection.dbapi_connection
    if alone and raw.info.transaction_status == IDLE:
        raw.autocommit = True
        try:
            rows = _execute(conn, sql, args).fetchall()
        finally:
            raw.autocommit = False
    else:
        rows = _execute(conn, sql, args).fetchall()
    check(rows[0] if rows else None)


def _cursor(conn: Connection) -> tuple[Any, Any]:
    """The connection's DBAPI connection and its reused cursor."""
    raw: Any = conn.connection.dbapi_connection
    assert raw is not None
    found = conn.info.get(CURSOR)
    if found is None or found[0] is not raw:
        # PostgreSQL: a RawCursor, which takes the statements' $n placeholders as they are
        cursor = psycopg.RawCursor(raw) if conn.dialect.name == "postgresql" else raw.cursor()
        found = conn.info[CURSOR] = (raw, cursor)
    return found


def _execute(conn: Connection, sql: str, args: Any, many: bool = False) -> Any:
    if DEFERRED in conn.info:
        flush_deferred(conn)
    raw, cursor = _cursor(conn)
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, raw, cursor, sql, args, exc) from exc
    return cursor


def _translated(
    conn: Connection, raw: Any, cursor: Any, sql: str, args: Any, exc: Any
) -> sa.exc.StatementError:
    """The driver's error as SQLAlchemy raises it; a dead connection is invalidated."""
    dialect = conn.dialect
    disconnected = dialect.is_disconnect(exc, raw, cursor)
    if disconnected:
        conn.invalidate(exc)
    error: sa.exc.StatementError = sa.exc.DBAPIError.instance(
        sql,
        args,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=disconnected,
        dialect=dialect,
    )
    return error


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Any]) -> None:
    """PostgreSQL: rows (value tuples in `columns` order) into `table` with COPY, through
    the connection's reused cursor: twice the rows per second of a multi-row INSERT, whose
    parameters psycopg would quote one by one in Python. Constraints are checked as usual;
    a violation is raised as SQLAlchemy's error and leaves the transaction failed (run it
    under a savepoint to go on)."""
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    raw, cursor = _cursor(conn)
    try:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, raw, cursor, sql, None, exc) from exc

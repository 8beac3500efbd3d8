"""Schema migrations (Alembic), run programmatically: no alembic.ini to find."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from usagewatch.adapters.db.engine import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(db: Database) -> None:
    """Bring the database to the newest schema (idempotent)."""
    with _migrating(db) as config:
        command.upgrade(config, "head")


def downgrade(db: Database, revision: str) -> None:
    """Take the database back to `revision` (for tests of data migrations)."""
    with _migrating(db) as config:
        command.downgrade(config, revision)


@contextmanager
def _migrating(db: Database) -> Iterator[Config]:
    """One transaction for the migrations, holding the lock that keeps other processes out.

    SQLite cannot alter a foreign key or a constraint in place: a migration copies the table
    (Alembic's batch mode), and with foreign keys on, dropping a table that other tables
    refer to fails. So, as SQLite's documentation prescribes for such changes, foreign keys
    are off while the migrations run (the pragma is a no-op inside a transaction, so it is
    set before it), every reference is checked with `PRAGMA foreign_key_check` before
    committing when a migration ran (a violation rolls it all back), and they are on again
    after."""
    config = _config()
    with db.engine.connect() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                if db.is_sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:  # several processes starting at once: one migrates, the others wait
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
                config.attributes["connection"] = conn
                before = MigrationContext.configure(conn).get_current_revision()
                yield config
                after = MigrationContext.configure(conn).get_current_revision()
                if db.is_sqlite and after != before:  # (a full check reads every table)
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"a migration broke references: {broken[:5]}")
        finally:
            if db.is_sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(db: Database) -> bool:
    return current_revision(db) == head_revision()

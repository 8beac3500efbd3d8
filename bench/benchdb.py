"""A throwaway PostgreSQL database for one benchmark run, shared by the bench scripts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from usagewatch.adapters.db.engine import normalize_url


@contextlib.contextmanager
def postgres_database(admin_url: str, name: str) -> Iterator[str]:
    """Create database `name` (dropping any leftover), yield its URL, drop it at the end."""
    admin_sa_url = sa.engine.make_url(normalize_url(admin_url))
    admin = sa.create_engine(admin_sa_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin_sa_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

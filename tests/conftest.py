"""Fixtures shared by every test: databases on both engines, a fake clock, services, and
an in-process HTTP client.

The PostgreSQL half of the suite runs when USAGEWATCH_TEST_POSTGRES_URL names a server
(for example postgresql://postgres@127.0.0.1:5432/postgres); each test process then creates
its own database there and drops it at the end. If the variable is set and the server cannot
be reached, the tests fail: they never skip silently.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from usagewatch.adapters.db import migrate
from usagewatch.adapters.db.engine import Database, normalize_url
from usagewatch.adapters.db.schema import metadata
from usagewatch.api.app import create_app
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.clock import ManualClock

PG_ADMIN_URL = os.environ.get("USAGEWATCH_TEST_POSTGRES_URL")
ENGINES = ["sqlite", "postgresql"] if PG_ADMIN_URL else ["sqlite"]
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# 2026-11-28 10:00 in Asia/Kolkata
START = datetime(2026, 11, 28, 4, 30, tzinfo=UTC)

settings.register_profile(
    "usagewatch", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("usagewatch")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    db.dispose()
    return path


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    assert PG_ADMIN_URL, "set USAGEWATCH_TEST_POSTGRES_URL to run the PostgreSQL suite"
    admin_url = sa.engine.make_url(normalize_url(PG_ADMIN_URL))
    name = f"usagewatch_test_{os.getpid()}_{_worker()}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    migrate.upgrade(db)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated, empty database on each engine in turn."""
    if request.param == "sqlite":
        target = tmp_path / "usagewatch.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def container(database_url: str, clock: ManualClock) -> Iterator[Container]:
    c = build(Settings(database_url=database_url, test_clock=True), ADMIN_TOKEN, clock=clock)
    yield c
    c.close()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container, run_sweeper=False)) as test_client:
        yield test_client


@pytest.fixture
def live_server(container: Container) -> Iterator[str]:
    """The app served by a real uvicorn in a background thread on a free loopback port
    (for what TestClient cannot show: streamed request bodies, Server-Sent Events).
    Yields the base URL."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(container),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


from collections.abc import Callable  # noqa: E402  (appended helper; see fresh_container)


@pytest.fixture(params=ENGINES)
def fresh_container(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[ManualClock], Container]]:
    """A factory of containers, each on its own empty migrated database, for tests that
    need many clean databases in one test (a hypothesis state machine: one per example).
    SQLite: a fresh copy of the template each call; PostgreSQL: the tables truncated (so
    close the previous container first). Every container built is closed at the end."""
    engine = request.param
    source = request.getfixturevalue("sqlite_template" if engine == "sqlite" else "postgres_url")
    built: list[Container] = []

    def make(clock: ManualClock) -> Container:
        if engine == "sqlite":
            target = tmp_path / f"example-{len(built)}.db"
            shutil.copyfile(source, target)
            url = f"sqlite:///{target}"
        else:
            url = str(source)
            _truncate_postgres(url)
        c = build(Settings(database_url=url, test_clock=True), ADMIN_TOKEN, clock=clock)
        built.append(c)
        return c

    yield make
    for c in built:
        c.close()

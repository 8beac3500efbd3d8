"""Several delivery workers on one PostgreSQL database never send a notice twice: each
claims due deliveries with FOR UPDATE SKIP LOCKED and a lease. And `usagewatch worker
--once` delivers what is due from the command line (SQLite)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.conftest import ADMIN_TOKEN, PG_ADMIN_URL
from tests.test_alerts import Receiver, receiver  # noqa: F401  (fixture)
from tests.test_usage_concurrency import pg_url  # noqa: F401  (fixture)
from usagewatch.adapters.db.schema import deliveries
from usagewatch.bootstrap import Container, build
from usagewatch.cli import app
from usagewatch.config import Settings
from usagewatch.service import notifications
from usagewatch.service.notifications import Notice


def settings(url: str, hook: str) -> Settings:
    return Settings(database_url=url, webhook_allow_private=True, sms_gateway_url=hook)


def seed(c: Container, hook: str, count: int) -> None:
    c.accounts.create_account("Acme", "acme")
    c.alerts.put_settings("acme", [], ["+919800000001"], hook)
    with c.db.write() as conn:
        for i in range(count):
            notice = Notice("test", f"notice {i}", {"n": i})
            notifications.record(conn, "acme", notice, 1_000_000)


@pytest.mark.skipif(not PG_ADMIN_URL, reason="set USAGEWATCH_TEST_POSTGRES_URL")
@pytest.mark.postgres_only
def test_two_workers_deliver_each_notice_once(
    pg_url: str,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    workers = [build(settings(pg_url, receiver.url), ADMIN_TOKEN) for _ in range(2)]
    try:
        seed(workers[0], receiver.url, 30)  # 30 notices x (sms + webhook) = 60 deliveries
        barrier = threading.Barrier(2)
        done: list[int] = []

        def work(c: Container) -> None:
            barrier.wait()
            while (n := c.notifications.run_due()) > 0:
                done.append(n)

        threads = [threading.Thread(target=work, args=(c,)) for c in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sum(done) == 60
        assert len(receiver.requests) == 60
        ids = Counter(h.get("webhook-id") for h, _ in receiver.requests if "webhook-id" in h)
        assert len(ids) == 30 and set(ids.values()) == {1}
        with workers[0].db.read() as conn:
            rows = conn.execute(sa.select(deliveries.c.status, deliveries.c.attempts)).all()
        assert Counter(tuple(r) for r in rows) == {("sent", 1): 90}  # 30 inbox rows too
    finally:
        for c in workers:
            c.close()


@pytest.fixture
def sqlite_url(tmp_path: Any) -> Iterator[str]:
    yield f"sqlite:///{tmp_path}/worker.db"


def test_worker_once_delivers_from_the_command_line(
    sqlite_url: str,
    receiver: Receiver,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = build(settings(sqlite_url, receiver.url), ADMIN_TOKEN)
    seed(c, receiver.url, 3)
    c.close()
    monkeypatch.setenv("USAGEWATCH_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("USAGEWATCH_SMS_GATEWAY_URL", receiver.url)
    result = CliRunner().invoke(app, ["worker", "--once", "--database-url", sqlite_url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ran ")
    assert len(receiver.requests) == 6

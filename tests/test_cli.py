"""The `usagewatch` command: serve, migrate, verify, and the admin-token rules."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.conftest import ADMIN_TOKEN
from usagewatch.adapters.db.migrate import head_revision
from usagewatch.cli import app

runner = CliRunner()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGEWATCH_")}
    env.update(extra)
    return env


def test_migrate_then_verify_agrees(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(app, ["migrate", "--database-url", url], env=_env())
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.output
    result = runner.invoke(app, ["verify", "--database-url", url], env=_env())
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok")


def test_verify_exits_1_and_names_the_difference(container: object, database_url: str) -> None:
    from usagewatch.bootstrap import Container
    from usagewatch.domain.ledger import LotKind
    from usagewatch.domain.money import Money

    assert isinstance(container, Container)
    container.accounts.create_account("Acme", "acme")
    container.ledger.add_credit("acme", LotKind.PAID, Money.parse("10.00"))
    ok = runner.invoke(app, ["verify", "--database-url", database_url], env=_env())
    assert ok.exit_code == 0, ok.output
    with container.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE balances SET reserved_micros = 5 WHERE account_id = 'acme'"))
    bad = runner.invoke(app, ["verify", "--database-url", database_url], env=_env())
    assert bad.exit_code == 1
    assert "account acme: reserved cached 5 but journal says 0" in bad.output


def test_placeholder_admin_token_is_refused_outside_dev_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(
        app, ["serve", "--database-url", url], env=_env(USAGEWATCH_ADMIN_TOKEN="changeme")
    )
    assert result.exit_code != 0
    assert "placeholder" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "usagewatch", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("server did not become ready")


def test_serve_generates_and_prints_a_token_when_none_is_set(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start(
        ["serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path / 'a.db'}"],
        _env(),
    )
    try:
        _wait_ready(port, proc)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert f"listening on http://127.0.0.1:{port}" in output
    token_line = next(line for line in output.splitlines() if "admin token" in line)
    token = token_line.rsplit(" ", 1)[-1]
    assert len(token) >= 32


def test_serve_runs_the_api_with_the_test_clock(tmp_path: Path) -> None:
    port = _free_port()
    env = _env(USAGEWATCH_ADMIN_TOKEN=ADMIN_TOKEN, USAGEWATCH_PORT=str(port))
    proc = _start(
        ["serve", "--test-clock", "--database-url", f"sqlite:///{tmp_path / 'b.db'}"], env
    )
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        _wait_ready(port, proc)
        base = f"http://127.0.0.1:{port}"
        before = httpx.get(f"{base}/v1/test-clock", headers=auth).json()["now"]
        moved = httpx.post(f"{base}/v1/test-clock/advance", json={"seconds": 3600}, headers=auth)
        assert moved.status_code == 200
        assert moved.json()["now"] > before
        created = httpx.post(f"{base}/v1/accounts", json={"name": "A", "id": "a"}, headers=auth)
        assert created.status_code == 201
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("command", ["serve", "migrate", "verify", "version"])
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env=_env())
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_notice_links_follow_the_served_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from usagewatch.cli import _settings

    monkeypatch.delenv("USAGEWATCH_PUBLIC_URL", raising=False)
    assert _settings(port=8765).public_url == "http://127.0.0.1:8765"
    assert _settings(host="::1", port=9000).public_url == "http://[::1]:9000"
    assert _settings(host="0.0.0.0", port=9000).public_url == "http://127.0.0.1:8000"
    assert _settings(database_url="sqlite:///x.db").public_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("USAGEWATCH_PUBLIC_URL", "https://billing.example.com")
    assert _settings(port=8765).public_url == "https://billing.example.com"

"""The dashboard's sessions and forms, in process: signed cookies, CSRF, the sign-in
throttle, roles, and the demo's history (the browser half is test_dashboard_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from usagewatch.api.app import create_app
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.clock import ManualClock
from usagewatch.service.verify import verify
from usagewatch.web.sessions import COOKIE_NAME, SessionSigner, SignInThrottle, new_session

from .conftest import ADMIN_TOKEN

PASSWORD = "correct-horse-battery"


@pytest.fixture
def web(container: Container) -> Iterator[TestClient]:
    container.settings = container.settings.model_copy(update={"session_secret": "k" * 40})
    container.accounts.create_account("Acme Ltd", "acme")
    container.accounts.create_user("acme", "owner@acme.example", PASSWORD, "owner")
    container.accounts.create_user("acme", "viewer@acme.example", PASSWORD, "viewer")
    with TestClient(create_app(container, run_sweeper=False)) as client:
        yield client


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> str:
    token = csrf(client.get("/login").text)
    answer = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf(client.get("/billing/usage").text)


def test_pages_need_a_session(web: TestClient) -> None:
    for path in ("/billing/usage", "/billing/credits", "/settings/api-keys"):
        answer = web.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    assert web.get("/dashboard/balance/stream").status_code == 401


def test_the_cookie_is_signed_httponly_and_samesite(web: TestClient) -> None:
    sign_in(web, "owner@acme.example")
    header = web.get("/login").headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=lax" in header
    cookie = web.cookies[COOKIE_NAME]
    payload, _, mac = cookie.partition(".")
    web.cookies.set(COOKIE_NAME, payload + "." + mac[::-1])
    assert web.get("/billing/usage", follow_redirects=False).status_code == 303


def test_sessions_expire_and_forgeries_fail() -> None:
    signer = SessionSigner(b"x" * 40, max_age_seconds=60)
    session = new_session(user_id="u", account_id="acme", role="owner")
    cookie = signer.dumps(session)
    assert signer.loads(cookie) == session
    assert signer.loads(cookie, now=session.issued_at + 61) is None
    assert SessionSigner(b"y" * 40, 60).loads(cookie) is None
    assert signer.loads("garbage") is None


def test_a_wrong_password_shows_an_error_and_nothing_else(web: TestClient) -> None:
    token = csrf(web.get("/login").text)
    answer = web.post(
        "/login",
        data={"email": "owner@acme.example", "password": "wrong-password!", "csrf_token": token},
    )
    assert answer.status_code == 401
    assert "Wrong email or password." in answer.text
    assert "header-balance" not in answer.text and "Acme" not in answer.text


def test_repeated_failures_are_slowed_down() -> None:
    throttle = SignInThrottle(free_failures=3, window_seconds=900, delay_max_seconds=8)
    keys = ("email:a@b.example", "client:1.2.3.4")
    delays = []
    for i in range(8):
        delays.append(throttle.delay_seconds(keys, now=float(i)))
        throttle.failed(keys, now=float(i))
    assert delays[:4] == [0, 0, 0, 0.25]
    assert delays[4:] == [0.5, 1.0, 2.0, 4.0]
    assert throttle.delay_seconds(keys, now=2000.0) == 0  # the window passed
    throttle.succeeded(keys[0])
    assert throttle.delay_seconds(keys[:1], now=8.0) == 0


def test_every_form_needs_its_csrf_token(web: TestClient) -> None:
    token = sign_in(web, "owner@acme.example")
    for path in ("/billing/spending-limits", "/billing/campaigns", "/settings/api-keys", "/logout"):
        assert web.post(path, data={"daily_cap": "1.00"}).status_code == 403
        assert web.post(path, data={"csrf_token": token + "x"}).status_code == 403
    assert (
        web.post("/login", data={"email": "owner@acme.example", "password": PASSWORD}).status_code
        == 403
    )
    saved = web.post(
        "/billing/spending-limits",
        data={"csrf_token": token, "enabled": "on", "daily_cap": "100.00"},
        follow_redirects=False,
    )
    assert saved.status_code == 303


def test_viewers_read_but_do_not_change(web: TestClient, container: Container) -> None:
    token = sign_in(web, "viewer@acme.example")
    assert web.get("/billing/spending-limits").status_code == 200
    answer = web.post("/billing/spending-limits", data={"csrf_token": token, "daily_cap": "1.00"})
    assert answer.status_code == 403
    assert container.limits.get("acme").limits.daily_cap is None
    assert (
        web.post("/settings/api-keys", data={"csrf_token": token, "role": "owner"}).status_code
        == 403
    )


def test_the_operator_signs_in_with_the_admin_token_and_switches_accounts(
    web: TestClient, container: Container
) -> None:
    container.accounts.create_account("Beta Ltd", "beta")
    token = sign_in(web, "admin", ADMIN_TOKEN)
    page = web.get("/billing/usage").text
    assert 'id="account-switch"' in page and "Beta Ltd" in page
    web.post(
        "/switch-account",
        data={"csrf_token": token, "account_id": "beta", "next": "/billing/credits"},
    )
    assert '<option value="beta" selected>' in web.get("/billing/credits").text


def test_form_errors_are_shown_not_raised(web: TestClient) -> None:
    token = sign_in(web, "owner@acme.example")
    answer = web.post("/billing/spending-limits", data={"csrf_token": token, "daily_cap": "-5"})
    assert answer.status_code == 422 and "cannot be negative" in answer.text


def test_the_demo_history_is_consistent(tmp_path: object) -> None:
    from usagewatch.demo import history_start, seed

    now = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    clock = ManualClock(history_start(now, 35))
    url = f"sqlite:///{tmp_path}/demo.db"
    c = build(Settings(database_url=url, test_clock=True), ADMIN_TOKEN, clock=clock)
    try:
        made = seed(c, clock, now, 35)
        assert made.events > 10_000
        assert verify(c.db) == []
        campaign = c.limits.get_campaign("demo", made.campaign_id).campaign
        assert 0 < campaign.budget_micros - campaign.spent_micros <= 40_000_000
        services = c.reports.services  # every service has history
        from usagewatch.service.reports import parse_period

        b = services("demo", parse_period("2026-10-25", "2026-11-28"))
        assert b.voice_calls and b.sms_messages and b.whatsapp_conversations
        assert b.numbers_active == 3 and b.agents_active == 4
    finally:
        c.close()

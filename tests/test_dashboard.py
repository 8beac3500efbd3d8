"""The dashboard's sessions and forms, in process: signed cookies, CSRF, the sign-in
throttle, roles, and the demo's history (the browser half is test_dashboard_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from usagewatch.adapters.payments import SimulatedGateway
from usagewatch.api.app import create_app
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain import limits as limit_codes
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.ledger import EntryKind, LotKind
from usagewatch.domain.limits import Limits
from usagewatch.domain.money import Money
from usagewatch.service.alerts import AlertSpec
from usagewatch.service.verify import verify
from usagewatch.web.context import BLOCK_REASONS, ENTRY_LABELS, block_text
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


def test_the_address_notices_link_to_leads_to_a_page(web: TestClient) -> None:
    answer = web.get("/billing", follow_redirects=False)  # every notice links to <url>/billing
    assert answer.status_code == 303 and answer.headers["location"] == "/billing/usage"


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


def test_the_limits_form_sets_a_weekly_cap(web: TestClient, container: Container) -> None:
    token = sign_in(web, "owner@acme.example")
    form = {"csrf_token": token, "enabled": "on", "weekly_cap": "700.00", "daily_cap": ""}
    saved = web.post("/billing/spending-limits", data=form, follow_redirects=False)
    assert saved.status_code == 303
    limits = container.limits.get("acme").limits
    assert (limits.weekly_cap, limits.daily_cap) == (Money.parse("700.00"), None)
    page = web.get("/billing/spending-limits").text
    assert 'id="weekly_cap"' in page and 'value="700.00"' in page and "this week" in page


def test_the_forms_refuse_a_count_that_is_not_ascii_digits(
    web: TestClient, container: Container
) -> None:
    """ "²" is a digit to `str.isdigit` but not to `int`: a field error, never a 500."""
    token = sign_in(web, "owner@acme.example")
    limits_form = {"csrf_token": token, "enabled": "on", "per_call_max_duration_seconds": "²"}
    refused = web.post("/billing/spending-limits", data=limits_form)
    assert refused.status_code == 422  # this page shows one error above the form
    shown = re.search(r'data-testid="form-error">([^<]*)<', refused.text)
    assert shown and shown.group(1).startswith("per_call_max_duration_seconds:")
    rule_form = {
        "csrf_token": token,
        "enabled": "on",
        "threshold": "100.00",
        "amount": "500",
        "max_recharges_per_day": "²",
    }
    refused = web.post("/billing/auto-recharge", data=rule_form)
    assert refused.status_code == 422 and field_error(refused.text, "max_recharges_per_day")
    assert container.payments.rule("acme").rule is None


def banner(html: str) -> str:
    """The paused banner's words, or "" when it is hidden."""
    found = re.search(r'<div id="paused-banner"[^>]*>(.*?)</div>', html, re.S)
    assert found, "no banner on the page"
    if re.search(r'<div id="paused-banner"[^>]*\bhidden\b', html):
        return ""
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def test_the_banner_says_why_outbound_is_paused_and_what_to_do(
    web: TestClient, container: Container
) -> None:
    sign_in(web, "owner@acme.example")
    assert banner(web.get("/billing/usage").text) == (
        "Outbound calls and messages are paused: the available balance is zero. "
        "Add credits to resume at once."
    )
    container.ledger.add_credit("acme", LotKind.PAID, Money.parse("10.00"))
    assert banner(web.get("/billing/credits").text) == ""
    container.limits.put("acme", Limits(enabled=True, daily_cap=Money.parse("0.40")))
    container.usage.charge_sms("acme", "s1", "transactional", to="+919800000001", units=2)
    page = web.get("/billing/spending-limits").text
    assert banner(page) == (
        "Outbound calls and messages are paused: the daily spending cap is reached. "
        "They resume at midnight (account time), or raise the daily cap under Spending Limits."
    )
    assert "Daily cap reached: paused until 2026-11-29 00:00 IST." in page  # account time


def test_every_reason_outbound_can_stop_for_has_banner_words() -> None:
    # the balance's outbound_block_reason is one of these (domain.limits.outbound_block)
    codes = {limit_codes.ACCOUNT_NOT_ACTIVE, limit_codes.INSUFFICIENT_BALANCE}
    assert set(BLOCK_REASONS) == codes | set(limit_codes.PERIOD_CAPS)
    assert block_text(None) is None


def test_the_journal_on_the_credits_page_speaks_words(
    web: TestClient, container: Container
) -> None:
    container.ledger.add_credit("acme", LotKind.PAID, Money.parse("100.00"))
    container.calls.authorize("acme", "call-1", "outbound", to="+919800000002")
    held = container.queries.balance("acme").reserved_micros
    container.calls.end("acme", "call-1", "completed", 45)
    container.usage.charge_sms("acme", "sms-1", "transactional", to="+919800000001", units=1)
    sign_in(web, "owner@acme.example")
    page = web.get("/billing/credits").text
    table = page[page.index('data-testid="journal-entries"') :]
    rows = [
        " ".join(re.sub(r"<[^>]+>", " ", row).split())
        for row in re.findall(r"<tr><td.*?</tr>", table, re.S)
    ]
    words = [row.split(" IST ", 1)[1] for row in rows]  # less the time
    assert words[0].startswith("Usage charged -0.20") and words[0].endswith("sms-1")
    assert words[1].startswith("Call charged -") and f"-{Money(held).format()}" in words[1]
    assert words[2].startswith(f"Held for a call 0.00 {Money(held).format()}")
    assert words[3].startswith("Credit (paid) 100.00")
    assert "debit" not in table and "credit_paid" not in table


def test_every_journal_entry_type_has_words() -> None:
    assert set(ENTRY_LABELS) == set(EntryKind)


def test_monthly_statements_are_listed_and_downloaded_on_the_usage_page(
    web: TestClient, container: Container
) -> None:
    sign_in(web, "viewer@acme.example")
    assert "No statement yet" in web.get("/billing/usage").text
    container.ledger.add_credit("acme", LotKind.PAID, Money.parse("10.00"))
    container.usage.charge_sms("acme", "nov-1", "transactional", to="+919800000001", units=3)
    december = datetime(2026, 11, 30, 18, 30, tzinfo=UTC)  # 2026-12-01 00:00 in Kolkata
    container.scheduler.advance(int((december - container.clock.now()).total_seconds()) + 60)
    page = web.get("/billing/usage").text
    table = page[page.index('data-testid="statements"') :]
    assert "2026-11" in table and "INR 0.60" in table
    [statement_id] = re.findall(r'href="/dashboard/statements/([^/"]+)/csv"', table)
    csv_file = web.get(f"/dashboard/statements/{statement_id}/csv")
    assert csv_file.status_code == 200 and "nov-1" in csv_file.text
    pdf = web.get(f"/dashboard/statements/{statement_id}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    # an SMS of November reported late: November's statement is made again
    late = {
        "kind": "sms",
        "sms_sid": "nov-late",
        "type": "transactional",
        "to": "+919800000001",
        "units": 1,
        "occurred_at": "2026-11-29T06:00:00Z",
    }
    assert container.batch.ingest("acme", [late])[0].status == "applied"
    container.scheduler.advance(1)
    table = web.get("/billing/usage").text
    table = table[table.index('data-testid="statements"') :]
    assert "2026-11 <span" in table and "(revised)" in table and "INR 0.80" in table
    # the latest revision first, and the one it replaced, as it was sent
    latest, before = re.findall(r'href="/dashboard/statements/([^/"]+)/csv"', table)[:2]
    assert latest != statement_id and before == statement_id
    assert "nov-late" in web.get(f"/dashboard/statements/{latest}/csv").text
    assert "nov-late" not in web.get(f"/dashboard/statements/{before}/csv").text
    web.cookies.clear()
    assert web.get(f"/dashboard/statements/{statement_id}/csv").status_code == 401


def test_the_trend_names_the_month_to_date_and_starts_with_the_first_usage(
    web: TestClient, container: Container
) -> None:
    def trend_rows() -> list[list[str]]:
        page = web.get("/billing/usage").text
        table = page[page.index('data-testid="trend"') :]
        table = table[: table.index("</table>")]
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]  # after the header
        return [
            [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells[:3]]
            for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows)
        ]

    sign_in(web, "viewer@acme.example")
    # no usage yet: only the current month, not five empty months before the account
    assert trend_rows() == [["November 2026 1\u201328 Nov, month to date", "0.00", "—"]]
    container.ledger.add_credit("acme", LotKind.PAID, Money.parse("10.00"))
    container.usage.charge_sms("acme", "nov-1", "transactional", to="+919800000001", units=3)
    december = datetime(2026, 12, 27, 18, 30, tzinfo=UTC)  # 2026-12-28 00:00 in Kolkata
    container.scheduler.advance(int((december - container.clock.now()).total_seconds()) + 60)
    container.usage.charge_sms("acme", "dec-1", "transactional", to="+919800000001", units=1)
    # 1-28 December (0.20) against 1-28 November (0.60), not against all of November
    assert trend_rows() == [
        ["November 2026", "0.60", "—"],
        ["December 2026 1\u201328 Dec, month to date", "0.20", "-66.67% vs 1\u201328 Nov"],
    ]
    # the chart's figures as a table, for a screen reader or exact amounts
    page = web.get("/billing/usage?from=2026-11-01&to=2026-12-31").text
    table = page[page.index('data-testid="daily-table"') :]
    table = table[: table.index("</table>")]
    assert re.findall(r'<th scope="row">([^<]+)</th><td class="num">([^<]+)</td>', table) == [
        ("2026-11-28", "0.60"),
        ("2026-12-28", "0.20"),
    ]


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
        # the history's SMS came with their delivery reports: ~95% delivered
        assert b.sms_delivery_rate_percent is not None
        assert Decimal("90") <= Decimal(b.sms_delivery_rate_percent) <= Decimal("99")
        # the recommended levels, a low-balance alert and auto-recharge just below the
        # balance: the simulator's traffic makes the alert fire, then a recharge start
        alerts = c.alerts.all("demo")
        assert sorted(a.threshold_percent_bp or 0 for a in alerts) == [0, 500, 1500, 3000]
        assert all(a.state == "armed" for a in alerts)
        rule = c.payments.rule("demo").rule
        assert rule is not None and rule.enabled
        (line,) = [a for a in alerts if a.threshold_micros is not None]
        assert line.threshold_micros is not None and rule.threshold.micros < line.threshold_micros
        for i in range(400):
            c.usage.charge_sms("demo", f"sim-{i}", "promotional", to="+919800000000", units=3)
            if c.payments.list("demo", 5, None):
                break
        assert c.alerts.get("demo", line.id).state == "triggered"
        fired = [v.row for v in c.notifications.list("demo", 50, None)]
        assert any(n.alert_id == line.id for n in fired)
        assert c.payments.list("demo", 5, None)[0].kind == "auto"
        c.scheduler.run_due()
        assert verify(c.db) == []
    finally:
        c.close()


# -- Alerts, notification settings, the webhook secret, auto-recharge, Add Credits ----------
NEW_FORMS = (
    "/billing/alerts",
    "/billing/alerts/recommended",
    "/billing/notification-settings",
    "/billing/webhook-secret",
    "/billing/webhook-secret/rotate",
    "/billing/auto-recharge",
    "/billing/payments",
)


def alert_form(token: str, **fields: object) -> dict[str, object]:
    form: dict[str, object] = {
        "csrf_token": token,
        "name": "Low balance",
        "type": "low_balance",
        "threshold_kind": "amount",
        "threshold": "5000.00",
        "channels": ["dashboard"],
        "frequency": "once",
    }
    form.update(fields)
    return form


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<small class="field-error" id="(?:[a-z]+-)?err-{field}">([^<]*)<', html)
    assert found, f"no error shown next to {field}"
    return found.group(1)


def test_the_new_forms_need_their_csrf_token(web: TestClient, container: Container) -> None:
    token = sign_in(web, "owner@acme.example")
    alert = container.alerts.create(
        "acme", AlertSpec(name="x", type="low_balance", channels=["dashboard"], threshold=Money(1))
    )
    paths = (*NEW_FORMS, f"/billing/alerts/{alert.id}", f"/billing/alerts/{alert.id}/delete")
    for path in paths:
        assert web.post(path, data={"confirm": "yes", "amount": "5.00"}).status_code == 403, path
        assert web.post(path, data={"csrf_token": token + "x"}).status_code == 403, path
    assert [a.id for a in container.alerts.all("acme")] == [alert.id]
    assert container.payments.list("acme", 10, None) == []


def test_add_alert_through_the_form_and_read_it_through_the_api(
    web: TestClient, container: Container
) -> None:
    token = sign_in(web, "owner@acme.example")
    page = web.get("/billing/alerts")
    assert page.status_code == 200 and "Add Alert" in page.text and "No alerts yet." in page.text
    answer = web.post(
        "/billing/alerts",
        data=alert_form(
            token,
            name="Month's SMS",
            type="usage",
            threshold_kind="percent",
            threshold="30%",
            period="month",
            service="sms",
            channels=["dashboard", "email"],
            emails="billing@acme.example, ops@acme.example",
            frequency="every_24_hours",
            action="Check the campaign",
        ),
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    (alert,) = container.alerts.all("acme")
    assert alert.name == "Month's SMS" and alert.period == "month" and alert.service == "sms"
    assert alert.threshold_percent_bp == 3000 and alert.channels == ["dashboard", "email"]
    assert alert.recipients["emails"] == ["billing@acme.example", "ops@acme.example"]
    listed = web.get("/billing/alerts").text
    assert "Month&#39;s SMS" in listed and "Every 24 hours" in listed and "Watching" in listed
    assert "30% of avg. monthly usage" in listed

    # edit: the threshold becomes an amount; then delete
    token = csrf(listed)
    edit = web.get(f"/billing/alerts/{alert.id}/edit")
    assert edit.status_code == 200 and 'value="Month&#39;s SMS"' in edit.text
    changed = web.post(
        f"/billing/alerts/{alert.id}",
        data=alert_form(
            token, name="Month's SMS", threshold="250.00", period="day", channels=["dashboard"]
        ),
        follow_redirects=False,
    )
    assert changed.status_code == 303, changed.text
    fresh = container.alerts.get("acme", alert.id)
    assert fresh.threshold_micros == 250_000_000 and fresh.threshold_percent_bp is None
    assert fresh.period == "day" and fresh.type == "usage" and fresh.channels == ["dashboard"]
    gone = web.post(
        f"/billing/alerts/{alert.id}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert gone.status_code == 303 and container.alerts.all("acme") == []


@pytest.mark.parametrize(
    ("fields", "where", "code"),
    [
        ({"threshold": ""}, "threshold", "threshold_required"),
        ({"threshold": "-5"}, "threshold", "amount_negative"),
        ({"threshold": "abc"}, "threshold", "invalid_amount"),
        ({"threshold_kind": "percent", "threshold": "0"}, "threshold", "invalid_threshold_percent"),
        ({"channels": []}, "channels", "validation_error"),
        ({"channels": ["sms"]}, "phones", "recipients_required"),
        ({"channels": ["sms"], "phones": "+91 98"}, "phones", "invalid_phone"),
        ({"channels": ["email"], "emails": "not-an-email"}, "emails", "invalid_email"),
        ({"channels": ["webhook"]}, "webhook_url", "recipients_required"),
        ({"webhook_url": "http://127.0.0.1/x"}, "webhook_url", "webhook_url_not_allowed"),
        ({"name": ""}, "name", "validation_error"),
        ({"type": "usage", "period": "year"}, "period", "literal_error"),
    ],
)
def test_alert_form_errors_are_shown_next_to_their_field(
    web: TestClient, container: Container, fields: dict[str, object], where: str, code: str
) -> None:
    token = sign_in(web, "owner@acme.example")
    answer = web.post("/billing/alerts", data=alert_form(token, **fields))
    assert answer.status_code == 422
    shown = field_error(answer.text, where)
    assert shown.endswith(f"({code})") or code == "literal_error", shown
    assert 'aria-invalid="true"' in answer.text
    assert container.alerts.all("acme") == []


def test_every_field_at_fault_is_shown_in_words(web: TestClient, container: Container) -> None:
    token = sign_in(web, "owner@acme.example")
    answer = web.post("/billing/alerts", data=alert_form(token, name="", channels=[]))
    assert answer.status_code == 422
    assert field_error(answer.text, "name") == "Enter a value. (validation_error)"
    assert "(validation_error)" in field_error(answer.text, "channels")  # both at once
    assert "String should have" not in answer.text


def test_one_click_adds_the_recommended_levels(web: TestClient, container: Container) -> None:
    token = sign_in(web, "owner@acme.example")
    container.alerts.put_settings("acme", ["billing@acme.example"], [], None)
    answer = web.post(
        "/billing/alerts/recommended", data={"csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 303
    made = container.alerts.all("acme")
    assert sorted(a.threshold_percent_bp for a in made) == [500, 1500, 3000]
    assert all(a.channels == ["dashboard", "email"] for a in made)
    page = web.get("/billing/alerts").text
    assert "Warning: 30% of average monthly usage" in page and "already set up" in page


def test_notification_settings_and_the_webhook_secret(
    web: TestClient, container: Container
) -> None:
    token = sign_in(web, "owner@acme.example")
    bad = web.post(
        "/billing/notification-settings",
        data={"csrf_token": token, "emails": "a@acme.example", "phones": "12345"},
    )
    assert bad.status_code == 422 and field_error(bad.text, "phones").endswith("(invalid_phone)")
    saved = web.post(
        "/billing/notification-settings",
        data={"csrf_token": token, "emails": "a@acme.example\nb@acme.example", "phones": ""},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert container.alerts.settings("acme").emails == ["a@acme.example", "b@acme.example"]
    secret = container.alerts.settings("acme").webhook_secret
    assert secret not in web.get("/billing/alerts").text  # hidden until revealed
    shown = web.post("/billing/webhook-secret", data={"csrf_token": token})
    assert shown.status_code == 200 and secret in shown.text
    unconfirmed = web.post("/billing/webhook-secret/rotate", data={"csrf_token": token})
    assert (
        unconfirmed.status_code == 422
        and container.alerts.settings("acme").webhook_secret == secret
    )
    rotated = web.post(
        "/billing/webhook-secret/rotate", data={"csrf_token": token, "confirm": "yes"}
    )
    fresh = container.alerts.settings("acme").webhook_secret
    assert rotated.status_code == 200 and fresh != secret and fresh in rotated.text


def test_viewers_read_alerts_and_payments_but_change_nothing(
    web: TestClient, container: Container
) -> None:
    container.alerts.create(
        "acme",
        AlertSpec(name="Floor", type="low_balance", channels=["dashboard"], threshold=Money(10)),
    )
    token = sign_in(web, "viewer@acme.example")
    page = web.get("/billing/alerts").text
    assert "Floor" in page and "Add Alert" not in page and "webhook-secret" not in page
    assert "Add Credits" in web.get("/billing/auto-recharge").text
    (alert,) = container.alerts.all("acme")
    container.alerts.webhook_secret("acme")  # made on first use: now there is one to leak
    before = container.alerts.settings("acme")
    for path in (*NEW_FORMS, f"/billing/alerts/{alert.id}", f"/billing/alerts/{alert.id}/delete"):
        data = {
            **alert_form(token),
            "confirm": "yes",
            "amount": "10.00",
            "idempotency_key": "dash-viewer-key",
            "enabled": "on",
            "max_recharges_per_day": "3",
        }
        answer = web.post(path, data=data)
        assert answer.status_code == 403, path
        assert before.webhook_secret not in answer.text
    assert [a.id for a in container.alerts.all("acme")] == [alert.id]
    assert container.alerts.settings("acme") == before
    assert container.payments.list("acme", 10, None) == []
    assert container.payments.rule("acme").rule is None


def test_auto_recharge_rule_and_its_field_errors(web: TestClient, container: Container) -> None:
    token = sign_in(web, "owner@acme.example")
    page = web.get("/billing/auto-recharge")
    assert page.status_code == 200 and "Recharges today" in page.text
    bad = web.post(
        "/billing/auto-recharge",
        data={
            "csrf_token": token,
            "enabled": "on",
            "threshold": "100.00",
            "amount": "",
            "max_recharges_per_day": "0",
        },
    )
    assert bad.status_code == 422 and field_error(bad.text, "amount").endswith("(missing_field)")
    bad = web.post(
        "/billing/auto-recharge",
        data={
            "csrf_token": token,
            "enabled": "on",
            "threshold": "100.00",
            "amount": "500",
            "max_recharges_per_day": "0",
        },
    )
    assert bad.status_code == 422 and field_error(bad.text, "max_recharges_per_day")
    ok = web.post(
        "/billing/auto-recharge",
        data={
            "csrf_token": token,
            "enabled": "on",
            "threshold": "1,000.00",
            "amount": "500",
            "max_recharges_per_day": "2",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text
    rule = container.payments.rule("acme").rule
    assert rule is not None and rule.enabled and rule.threshold == Money.parse("1000")
    assert rule.max_recharges_per_day == 2
    # the balance is zero, below the threshold: saving it started a recharge
    shown = web.get("/billing/auto-recharge").text
    assert "Auto-recharge" in shown and "pay_" in shown


def test_add_credits_twice_with_one_form_charges_once(
    web: TestClient, container: Container
) -> None:
    token = sign_in(web, "owner@acme.example")
    page = web.get("/billing/auto-recharge").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key
    form = {"csrf_token": token, "idempotency_key": key.group(1), "amount": "1,500.00"}
    first = web.post("/billing/payments", data=form, follow_redirects=False)
    second = web.post("/billing/payments", data=form, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    (payment,) = container.payments.list("acme", 10, None)
    assert payment.status == "succeeded" and payment.amount_micros == 1_500_000_000
    assert container.queries.balance("acme").available_micros == 1_500_000_000
    shown = web.get(first.headers["location"]).text
    assert "succeeded" in shown and "1,500.00" in shown
    # a fresh rendering has a fresh key
    assert key.group(1) not in shown
    # the same key with another amount charges nothing
    other = web.post("/billing/payments", data={**form, "amount": "9.00"})
    assert other.status_code == 409 and len(container.payments.list("acme", 10, None)) == 1
    bad = web.post(
        "/billing/payments", data={**form, "idempotency_key": "dash-2-abcdef", "amount": "-1"}
    )
    assert bad.status_code == 422 and field_error(bad.text, "amount")
    assert (
        web.post("/billing/payments", data={"csrf_token": token, "amount": "5"}).status_code == 400
    )


def test_a_pending_payment_says_when_it_is_tried_again_in_account_time(
    web: TestClient, container: Container
) -> None:
    token = sign_in(web, "owner@acme.example")
    assert isinstance(container.payments.gateway, SimulatedGateway)
    container.payments.gateway.outcome = "timeout"
    page = web.get("/billing/auto-recharge").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key
    form = {"csrf_token": token, "idempotency_key": key.group(1), "amount": "10.00"}
    shown = web.post("/billing/payments", data=form).text
    row = shown[shown.index('data-testid="payment-row"') :]
    row = " ".join(re.sub(r"<[^>]+>", " ", row[: row.index("</tr>")]).split())
    # asked at 10:00 IST (04:30 UTC), again 30 s later: shown in the account's zone
    assert "pending 1 the payment provider did not answer in time" in row
    assert "the payment gateway is asked again 2026-11-28 10:00 IST" in row


def test_notifications_show_each_delivery_and_its_attempts(
    web: TestClient, container: Container
) -> None:
    sign_in(web, "owner@acme.example")
    container.alerts.create(
        "acme",
        AlertSpec(
            name="Below 100",
            type="low_balance",
            channels=["dashboard", "email"],
            threshold=Money.parse("100.00"),
            emails=["billing@acme.example"],
        ),
    )  # the balance is zero: it fires at once
    page = web.get("/notifications")
    assert page.status_code == 200, page.text
    assert "Below 100" in page.text
    assert '<span class="pill">Email</span>' in page.text and "billing@acme.example" in page.text
    assert (
        "status-pending" in page.text or "status-sent" in page.text or "status-failed" in page.text
    )
    # the dashboard copy is this inbox itself: no attempts to count; the email's are counted
    assert page.text.count("in this inbox") == 1 and " attempt" in page.text


def test_the_alerts_list_says_what_each_state_means(web: TestClient, container: Container) -> None:
    sign_in(web, "viewer@acme.example")
    container.alerts.create(
        "acme",
        AlertSpec(name="Floor", type="low_balance", channels=["dashboard"], threshold=Money(10)),
    )  # the balance is zero: it has fired
    container.alerts.create(
        "acme",
        AlertSpec(
            name="Busy day",
            type="usage",
            period="day",
            channels=["dashboard"],
            threshold=Money.parse("50.00"),
        ),
    )
    rows = {
        name: " ".join(re.sub(r"<[^>]+>", " ", state).split())
        for name, state in re.findall(
            r'<td data-label="Name"><strong>([^<]+)</strong>.*?<td data-label="State">(.*?)</td>',
            web.get("/billing/alerts").text,
            re.S,
        )
    }
    assert rows == {
        "Floor": "Sent watches again once the balance recovers",
        "Busy day": "Watching",
    }

"""The dashboard in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium;
flags in DEVELOPERS.md) against a real uvicorn server: sign-in, the live header balance,
the breakdown, the exports, a wrong password, a CSRF-less post. Screenshots of every page
go to tests/artifacts/ (light, dark, phone) for a person to look at."""

from __future__ import annotations

import csv
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from pypdf import PdfReader

from usagewatch.api.app import create_app
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money

from .conftest import ADMIN_TOKEN, START

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Debian's chromium in a container: no sandbox (we run as root), no GPU, nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
EMAIL, PASSWORD = "owner@acme.example", "correct-horse-battery"
PAGES = {
    "usage": "/billing/usage",
    "spending-limits": "/billing/spending-limits",
    "credits": "/billing/credits",
    "notifications": "/notifications",
    "api-keys": "/settings/api-keys",
    "alerts": "/billing/alerts",
    "auto-recharge": "/billing/auto-recharge",
}

# The page's CSP refuses eval: a bare expression that has to poll fails, a function does not
LIVE = "() => document.querySelector('.live-status').textContent === 'Live.'"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Container, str]]:
    """A live server over a SQLite account with some usage; yields (url, container,
    platform token)."""
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    path = tmp_path_factory.mktemp("browser") / "usagewatch.db"
    settings = Settings(database_url=f"sqlite:///{path}", session_secret="s" * 48, test_clock=True)
    c = build(settings, ADMIN_TOKEN, clock=ManualClock(START))
    c.accounts.create_account("Acme Ltd", "acme")
    c.accounts.create_user("acme", EMAIL, PASSWORD, "owner")
    c.ledger.add_credit("acme", LotKind.PAID, Money.parse("5000.00"))
    c.ledger.add_credit(
        "acme", LotKind.PROMOTIONAL, Money.parse("250.00"), expires_at=START.replace(year=2027)
    )
    c.limits.create_campaign("acme", "launch", "Launch", Money.parse("10.00"))
    for i in range(30):
        c.usage.charge_sms(
            "acme",
            f"seed-{i}",
            "promotional",
            to="+919800000000",
            units=1 + i % 3,
            consumer="marketing-bot" if i % 2 else "otp-service",
            campaign_id="launch" if i % 3 == 0 else None,
        )
    token = c.accounts.create_api_key("acme", "platform", Principal(Role.ADMIN, None, None)).token
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(c), log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", c, token
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        c.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def sign_in(page: Any, url: str, email: str = EMAIL, password: str = PASSWORD) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate(
        "window.scrollTo(0, 0)"
    )  # a full-page shot of a scrolled page misplaces the sticky header
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sign_in_live_balance_breakdown_and_every_page(
    server: tuple[str, Container, str], browser: Any
) -> None:
    url, c, platform_token = server
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    sign_in(page, url)
    page.wait_for_url(f"{url}/billing/usage")
    header = page.get_by_test_id("header-balance")
    before = header.inner_text()
    assert "INR" in before
    expected = c.queries.balance("acme").available_micros
    # The live feed is connected once the breakdown says so; then charge an SMS.
    page.wait_for_function(LIVE)
    shown = header.locator(".balance-amount").inner_text()
    answer = httpx.post(
        f"{url}/v1/accounts/acme/sms",
        headers={"Authorization": f"Bearer {platform_token}"},
        json={"sms_sid": "browser-1", "type": "transactional", "to": "+919811111111", "units": 5},
    )
    assert answer.status_code == 201, answer.text
    started = time.monotonic()
    page.wait_for_function(
        "before => document.querySelector('[data-testid=header-balance] .balance-amount')"
        ".textContent !== before",
        arg=shown,
        timeout=2000,
    )
    assert time.monotonic() - started < 2.0
    after = c.queries.balance("acme").available_micros
    assert after == expected - 1_000_000  # 5 units x 0.20
    assert header.locator(".balance-amount").inner_text() == "INR " + _grouped(after)

    header.click()
    breakdown = page.get_by_test_id("balance-breakdown")
    assert breakdown.is_visible()
    for label in (
        "Available Balance",
        "Paid Credits",
        "Promotional Credits",
        "Reserved Amount",
        "Today's Usage",
        "This Month's Usage",
    ):
        assert breakdown.get_by_text(label, exact=True).is_visible()
    assert "expires" in breakdown.inner_text()  # the promotional lot's expiry date
    shot(page, "balance-breakdown")
    page.keyboard.press("Escape")
    assert not breakdown.is_visible()
    header.click()
    assert breakdown.is_visible()
    page.keyboard.press("Tab")  # focus leaves the balance (to Sign out): the panel closes
    assert not breakdown.is_visible()

    for name, path in PAGES.items():
        page.goto(f"{url}{path}")
        assert page.get_by_test_id("header-balance").is_visible()
        if name == "usage":
            page.wait_for_selector("#daily-chart .main-svg")  # plotly drew the chart
            assert page.locator("#daily-chart .modebar-btn").count() == 0  # no tool buttons
            title = page.locator("#daily-chart .ytitle").text_content()
            assert title == "cost (INR)", title
            # the SMS bars' orange keeps 3:1 against the white card (WCAG 1.4.11)
            fills = page.locator("#daily-chart .trace.bars .point path").evaluate_all(
                "paths => paths.map(p => getComputedStyle(p).fill)"
            )
            assert "rgb(242, 142, 43)" not in fills and "rgb(194, 87, 12)" in fills, fills
            page.get_by_text("Show these figures as a table").click()
            assert page.get_by_test_id("daily-table").is_visible()
        shot(page, name)

    page.goto(f"{url}/billing/spending-limits")
    page.get_by_label("Daily spending cap (INR)").fill("1.00")
    page.get_by_test_id("dry-run").click()
    result = page.get_by_test_id("dry-run-result")
    assert result.is_visible()
    assert "daily cap reached" in result.inner_text()  # words, not the API's code
    assert "daily_cap_reached" not in result.inner_text()
    # money grouped with its currency; the pause's time with the account's zone
    assert re.search(r"Actual spend\s+INR [0-9,]+\.[0-9]{2}", result.inner_text())
    assert re.search(r"[0-9]{2}:[0-9]{2} IST · daily cap reached", result.inner_text())
    shot(page, "spending-limits-dry-run")
    context.close()

    for scheme in ("dark", "light"):  # the same pages at a phone's width, and in dark
        width = {"dark": 1280, "light": 390}[scheme]
        context = browser.new_context(viewport={"width": width, "height": 844}, color_scheme=scheme)
        page = context.new_page()
        sign_in(page, url)
        page.wait_for_selector("#daily-chart .main-svg")
        shot(page, f"usage-{'dark' if scheme == 'dark' else 'phone'}")
        page.wait_for_function(LIVE)
        sms = {"sms_sid": f"phone-{scheme}", "type": "transactional", "to": "+919811111111"}
        answer = httpx.post(
            f"{url}/v1/accounts/acme/sms",
            headers={"Authorization": f"Bearer {platform_token}"},
            json={**sms, "units": 1},
        )
        assert answer.status_code == 201, answer.text
        # the live update (promotional credit is spent first) writes the expiry as the
        # server does: account time, its zone
        promo = c.queries.balance("acme").promotional_micros
        page.wait_for_function(
            "text => document.querySelector('[data-field=promotional_expiries] li')"
            ".textContent === text",
            arg=f"INR {_grouped(promo)} expires 2027-11-28 10:00 IST",
        )
        page.get_by_test_id("header-balance").click()  # the breakdown fits the screen
        box = page.get_by_test_id("balance-breakdown").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
        if scheme == "light":
            shot(page, "balance-breakdown-phone")
        context.close()


def _grouped(micros: int) -> str:
    units, frac = divmod(micros, 1_000_000)
    return f"{units:,}." + f"{frac:06d}".rstrip("0").ljust(2, "0")


def test_each_export_downloads_and_opens(server: tuple[str, Container, str], browser: Any) -> None:
    url, _c, _ = server
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    sign_in(page, url)
    page.wait_for_url(f"{url}/billing/usage")
    files = {}
    for fmt in ("csv", "xlsx", "pdf"):
        with page.expect_download() as info:
            page.get_by_test_id(f"export-{fmt}").click()
        download = info.value
        target = ARTIFACTS / f"export.{fmt}"
        ARTIFACTS.mkdir(exist_ok=True)
        download.save_as(str(target))
        assert download.suggested_filename.endswith(f".{fmt}")
        files[fmt] = target
    rows = list(csv.DictReader(io.StringIO(files["csv"].read_text(encoding="utf-8"))))
    assert len(rows) >= 30 and all(r["service"] == "sms" for r in rows)
    workbook = openpyxl.load_workbook(files["xlsx"], read_only=True)
    assert len(workbook.sheetnames) >= 2
    text = "".join(p.extract_text() for p in PdfReader(str(files["pdf"])).pages)
    assert "acme" in text.lower()
    context.close()


def test_a_wrong_password_stays_out(server: tuple[str, Container, str], browser: Any) -> None:
    url, _, _ = server
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, url, password="not-the-password")
    assert page.get_by_test_id("login-error").inner_text() == "Wrong email or password."
    assert page.get_by_test_id("header-balance").count() == 0
    assert page.url.startswith(f"{url}/login")
    shot(page, "login-wrong-password")
    page.goto(f"{url}/billing/usage")
    assert re.match(rf"{re.escape(url)}/login\?next=", page.url)
    context.close()


def test_the_paused_banner_comes_and_goes_live(
    server: tuple[str, Container, str], browser: Any
) -> None:
    """The last SMS the balance covers pauses outbound: the banner says why without a
    reload; a credit resumes it and the banner goes."""
    url, c, _ = server
    c.accounts.create_account("Pause Co", "pause")
    c.accounts.create_user("pause", "owner@pause.example", PASSWORD, "owner")
    c.ledger.add_credit("pause", LotKind.PAID, Money.parse("1.00"))
    key = c.accounts.create_api_key("pause", "platform", Principal(Role.ADMIN, None, None))
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, url, email="owner@pause.example")
    page.wait_for_url(f"{url}/billing/usage")
    banner = page.get_by_test_id("paused-banner")
    assert banner.is_hidden()
    page.wait_for_function(LIVE)
    answer = httpx.post(
        f"{url}/v1/accounts/pause/sms",
        headers={"Authorization": f"Bearer {key.token}"},
        json={"sms_sid": "last-one", "type": "transactional", "to": "+919811111111", "units": 5},
    )
    assert answer.status_code == 201, answer.text
    banner.wait_for(state="visible", timeout=5000)
    assert " ".join(banner.inner_text().split()) == (
        "Outbound calls and messages are paused: the available balance is zero. "
        "Add credits to resume at once."
    )
    # An account without usage: the chart's axis still spans the chosen period.
    page.wait_for_selector("#daily-chart .main-svg")
    ticks = " ".join(page.locator("#daily-chart .xtick text").all_text_contents())
    assert "2026" in ticks and "2000" not in ticks, ticks
    shot(page, "paused-banner")
    c.ledger.add_credit("pause", LotKind.PAID, Money.parse("2.00"))
    banner.wait_for(state="hidden", timeout=5000)
    context.close()


def test_a_form_post_without_its_csrf_token_is_refused(
    server: tuple[str, Container, str], browser: Any
) -> None:
    url, c, _ = server
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, url)
    page.wait_for_url(f"{url}/billing/usage")
    before = c.limits.get("acme").limits
    refused = page.request.post(
        f"{url}/billing/spending-limits", form={"enabled": "on", "daily_cap": "1.00"}
    )
    assert refused.status == 403
    forged = page.request.post(
        f"{url}/billing/spending-limits",
        form={"enabled": "on", "daily_cap": "1.00", "csrf_token": "forged"},
    )
    assert forged.status == 403
    assert c.limits.get("acme").limits == before
    context.close()


def test_create_an_alert_through_the_form_and_find_it_through_the_api(
    server: tuple[str, Container, str], browser: Any
) -> None:
    """Issue 7's acceptance test: Add Alert in the browser, then GET …/alerts sees it."""
    url, c, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, url)
    page.wait_for_url(f"{url}/billing/usage")
    page.goto(f"{url}/billing/alerts")
    form = page.locator("#alert-form")
    # a refused form first: the field error sits next to the field, the values stay
    form.get_by_label("Name").fill("Balance below 4,000")
    form.get_by_label("Threshold value").fill("4000.00")
    form.get_by_label("SMS", exact=True).check()
    form.get_by_role("button", name="Save Alert").click()
    phones_error = page.locator("#err-phones")
    assert "recipients_required" in phones_error.inner_text()
    assert page.get_by_label("Phone numbers (SMS)").get_attribute("aria-invalid") == "true"
    shot(page, "alerts-field-error")
    form = page.locator("#alert-form")
    form.get_by_label("Phone numbers (SMS)").fill("+919800000001")
    form.get_by_label("Email recipients").fill("billing@acme.example")
    form.get_by_label("Email", exact=True).check()
    form.get_by_label("Frequency").select_option("every_24_hours")
    form.get_by_role("button", name="Save Alert").click()
    page.wait_for_url(re.compile(r".*/billing/alerts\?saved=created.*"))
    assert page.get_by_test_id("notice").inner_text() == "Alert saved."

    answer = httpx.get(
        f"{url}/v1/accounts/acme/alerts", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert answer.status_code == 200
    (made,) = [a for a in answer.json()["data"] if a["name"] == "Balance below 4,000"]
    assert made["type"] == "low_balance" and made["threshold"] == "4000.00"
    assert sorted(made["channels"]) == ["dashboard", "email", "sms"]
    assert made["recipients"] == {"emails": ["billing@acme.example"], "phones": ["+919800000001"]}
    assert made["frequency"] == "every_24_hours" and made["state"] == "armed"

    page.get_by_test_id("add-recommended").click()
    page.wait_for_url(re.compile(r".*saved=recommended.*"))
    assert page.get_by_test_id("alert-row").count() == 4
    shot(page, "alerts")

    page.goto(f"{url}/billing/auto-recharge")
    page.get_by_label("Recharge automatically").check()
    page.get_by_label(re.compile("When the balance falls below")).fill("1000.00")
    page.get_by_label(re.compile(r"^Add \(")).fill("2000.00")
    page.get_by_role("button", name="Save rule").click()
    page.wait_for_url(re.compile(r".*saved=rule.*"))
    before = c.queries.balance("acme").available_micros
    page.get_by_label(re.compile(r"^Amount \(")).fill("750.00")
    page.get_by_test_id("pay").dblclick()  # a double submit charges once
    page.wait_for_url(re.compile(r".*payment=pay_.*"))
    assert "succeeded" in page.get_by_test_id("notice").inner_text()
    manual = [p for p in c.payments.list("acme", 20, None) if p.kind == "manual"]
    assert len(manual) == 1
    assert c.queries.balance("acme").available_micros == before + 750_000_000
    shot(page, "auto-recharge")
    context.close()

    for scheme, width in (("dark", 1280), ("light", 390)):
        context = browser.new_context(viewport={"width": width, "height": 844}, color_scheme=scheme)
        page = context.new_page()
        sign_in(page, url)
        page.wait_for_url(f"{url}/billing/usage")
        suffix = "dark" if scheme == "dark" else "phone"
        for name in ("alerts", "auto-recharge", "notifications"):
            page.goto(f"{url}{PAGES[name]}")
            shot(page, f"{name}-{suffix}")
        if scheme == "light":
            phone_tables_fit(page, url, width)
        context.close()


# A table's cells that must fit a phone (every page; the auto-recharge page holds a payment).
TABLES_TO_FIT = "table:not(.breakdown table)"


def phone_tables_fit(page: Any, url: str, width: int) -> None:
    """At a phone's width nothing makes a page scroll sideways, and no table is wider than
    the box it sits in (so none scrolls sideways inside its .table-scroll either)."""
    too_wide: dict[str, list[str]] = {}
    for name, path in PAGES.items():
        page.goto(f"{url}{path}")
        if name == "auto-recharge":
            assert page.get_by_test_id("payment-row").count() >= 1
            # stacked, the payments stay a table to a screen reader, header cells and all
            payments = page.get_by_role("table").filter(has=page.get_by_test_id("payment-row"))
            assert payments.get_by_role("columnheader", name="Outcome").count() == 1
            assert payments.get_by_role("row").count() >= 2
        if name == "usage":
            page.wait_for_selector("#daily-chart .main-svg")  # the chart must fit too
        if name == "spending-limits":  # the dry run's table too
            page.get_by_label("Daily spending cap (INR)").fill("1.00")
            page.get_by_test_id("dry-run").click()
            page.get_by_test_id("dry-run-result").wait_for()
            shot(page, "spending-limits-dry-run-phone")
        elif name not in ("alerts", "auto-recharge", "notifications"):
            shot(page, f"{name}-phone")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, name
        wider = page.evaluate(
            """selector => [...document.querySelectorAll(selector)]
                .filter(t => t.getClientRects().length)
                .filter(t => t.scrollWidth > t.parentElement.clientWidth)
                .map(t => (t.dataset.testid || t.className || t.tBodies[0]?.rows[0]?.id
                           || t.querySelector('th')?.textContent)
                          + ' ' + t.scrollWidth + ' > ' + t.parentElement.clientWidth)""",
            TABLES_TO_FIT,
        )
        if wider:
            too_wide[name] = wider
    assert not too_wide, too_wide

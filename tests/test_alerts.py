"""Alerts end to end, on both engines: thresholds crossed by real charges fire once (edge
triggered, with hysteresis), repeat every 24 hours on the test clock, re-arm after a top-up;
notices reach a real SMTP server (aiosmtpd), an HTTP SMS gateway and a webhook receiver
that checks the Standard Webhooks signature; failed deliveries are retried with backoff and
every attempt is visible; webhook URLs to private networks are refused."""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN
from usagewatch.api.app import create_app
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain import alerts as alert_rules
from usagewatch.domain import webhooks
from usagewatch.domain.clock import ManualClock

BASE = "/v1/accounts/acme"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- receivers ---------------------------------------------------------------------------------
@dataclass
class Inbox:
    messages: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@dataclass
class Receiver:
    """An HTTP endpoint that records requests; answers `statuses` in turn, then 200."""

    url: str
    requests: list[tuple[dict[str, str], bytes]]
    statuses: list[int]
    delays: list[float] = field(default_factory=list)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got: list[tuple[dict[str, str], bytes]] = []
    statuses: list[int] = []
    delays: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            if delays:
                time.sleep(delays.pop(0))
            self.send_response(statuses.pop(0) if statuses else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Receiver(f"http://127.0.0.1:{server.server_port}/hook", got, statuses, delays)
    server.shutdown()


@pytest.fixture
def wired(
    database_url: str, clock: ManualClock, smtp: tuple[Inbox, int], receiver: Receiver
) -> Iterator[Container]:
    settings = Settings(
        database_url=database_url,
        test_clock=True,
        smtp_host="127.0.0.1",
        smtp_port=smtp[1],
        smtp_from="alerts@usagewatch.test",
        sms_gateway_url=receiver.url.replace("/hook", "/sms"),
        webhook_allow_private=True,
        public_url="https://billing.example.com",
    )
    c = build(settings, ADMIN_TOKEN, clock=clock)
    yield c
    c.close()


@pytest.fixture
def api(wired: Container) -> Iterator[TestClient]:
    with TestClient(create_app(wired, run_sweeper=False)) as test_client:
        test_client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
        yield test_client


@pytest.fixture
def platform(api: TestClient) -> dict[str, str]:
    key = api.post(f"{BASE}/api-keys", json={"role": "platform"}, headers=ADMIN)
    return {"Authorization": f"Bearer {key.json()['token']}"}


def credit(api: TestClient, amount: str) -> None:
    body = {"type": "paid", "amount": amount}
    assert api.post(f"{BASE}/credits", json=body, headers=ADMIN).status_code == 201


def sms(api: TestClient, headers: dict[str, str], n: int, count: int = 1) -> None:
    for i in range(count):
        body = {"sms_sid": f"SM{n}-{i}", "type": "transactional", "to": "+919800000001", "units": 1}
        response = api.post(f"{BASE}/sms", json=body, headers=headers)
        assert response.status_code == 201, response.text


def alert(api: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Low", "type": "low_balance", "channels": ["dashboard"], **fields}
    response = api.post(f"{BASE}/alerts", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def notices(api: TestClient, statements: bool = False) -> list[dict[str, Any]]:
    """The inbox, oldest first; without the monthly statements' notices unless asked (the
    test clock crosses month starts)."""
    data = api.get(f"{BASE}/notifications", headers=ADMIN).json()["data"]
    return [n for n in reversed(data) if statements or n["event"] != "monthly_statement"]


def deliver(c: Container) -> None:
    c.scheduler.run_due()


# -- low balance -------------------------------------------------------------------------------
def test_low_balance_fires_once_per_crossing_and_reaches_every_channel(
    api: TestClient,
    platform: dict[str, str],
    wired: Container,
    smtp: tuple[Inbox, int],
    receiver: Receiver,
) -> None:
    credit(api, "2.00")
    created = alert(
        api,
        name="Runway",
        threshold="1.00",
        channels=["email", "sms", "dashboard", "webhook"],
        recipients={"emails": ["billing@acme.test"], "phones": ["+919800000009"]},
        webhook_url=receiver.url,
        action="Top up from the finance card.",
    )
    assert created["state"] == "armed" and created["last_triggered_at"] is None
    sms(api, platform, 1, count=5)  # 2.00 -> 1.00: not below yet
    assert notices(api) == []
    sms(api, platform, 2)  # 0.80: crossed
    sms(api, platform, 3)  # 0.60: still below, no second notice
    fired = [n for n in notices(api) if n["event"] == "low_balance"]
    assert len(fired) == 1
    note = fired[0]
    assert note["alert_id"] == created["alert_id"]
    for text in (
        "acme",
        "INR 0.80",
        "INR 1.00",
        "Used today: INR 1.20",
        "a day",
        "Top up from the finance card.",
        "https://billing.example.com/billing",
        "a day) the balance lasts about 5 days. What to do:",  # 0.80 at 1.20 a week
    ):
        assert text in note["message"], (text, note["message"])
    assert note["message"].count("7 days") == 1
    got = api.get(f"{BASE}/alerts/{created['alert_id']}", headers=ADMIN).json()
    assert got["state"] == "triggered" and got["last_triggered_at"] == "2026-11-28T04:30:00Z"

    deliver(wired)
    inbox, _ = smtp
    assert len(inbox.messages) == 1
    assert inbox.messages[0].rcpt_tos == ["billing@acme.test"]
    assert b"Low balance: Runway" in inbox.messages[0].content
    paths = {headers.get("webhook-id", "sms"): body for headers, body in receiver.requests}
    assert len(receiver.requests) == 2  # the SMS gateway and the webhook
    sms_body = json.loads(next(b for h, b in receiver.requests if "webhook-id" not in h))
    assert sms_body["to"] == "+919800000009" and "INR 0.80" in sms_body["body"]
    hook_headers, hook_body = next((h, b) for h, b in receiver.requests if "webhook-id" in h)
    secret = api.get(f"{BASE}/webhook-secret", headers=ADMIN).json()["secret"]
    assert webhooks.verify(
        secret,
        hook_headers["webhook-id"],
        int(hook_headers["webhook-timestamp"]),
        hook_body,
        hook_headers["webhook-signature"],
    )
    payload = json.loads(hook_body)
    assert payload["type"] == "low_balance" and payload["data"]["account_id"] == "acme"
    assert paths  # every request was recorded
    listed = {d["channel"]: d for d in notices(api)[-1]["deliveries"]}
    assert set(listed) == {"email", "sms", "webhook", "dashboard"}
    assert all(d["status"] == "sent" for d in listed.values())
    assert listed["email"]["attempts"][0]["outcome"] == "sent"


def test_the_runway_sentence_reads_in_every_case() -> None:
    assert alert_rules.runway_sentence(None, "INR 0.00") == (
        "There was no usage in the last 7 days, so no estimate of when it runs out."
    )
    assert alert_rules.runway_sentence(0.0, "INR 3.00") == "The balance has run out."
    assert alert_rules.runway_sentence(30.0, "INR 3.00") == (
        "At the last 7 days' rate (INR 3.00 a day) the balance lasts about 30 hours."
    )
    assert alert_rules.describe_runway(24.0 * 9) == "about 9 days"


def test_once_rearms_only_after_a_top_up_clears_the_margin(
    api: TestClient, platform: dict[str, str]
) -> None:
    credit(api, "1.20")
    created = alert(api, threshold="1.00")
    sms(api, platform, 1)  # 1.00: not below
    sms(api, platform, 2)  # 0.80: fires
    credit(api, "1.00")  # 1.80: above 1.00 but below 1.00 + 1.00 (margin at least 1.00)
    assert api.get(f"{BASE}/alerts/{created['alert_id']}", headers=ADMIN).json()["state"] == (
        "triggered"
    )
    sms(api, platform, 3)
    credit(api, "0.40")  # 2.00: re-armed
    assert api.get(f"{BASE}/alerts/{created['alert_id']}", headers=ADMIN).json()["state"] == (
        "armed"
    )
    sms(api, platform, 4, count=6)  # 0.80: fires again
    assert [n["event"] for n in notices(api)].count("low_balance") == 2


def test_every_24_hours_repeats_while_the_balance_stays_low(
    api: TestClient, platform: dict[str, str], wired: Container
) -> None:
    credit(api, "1.00")
    created = alert(api, threshold="5.00", frequency="every_24_hours")
    # already below when created: fires at once
    assert created["state"] == "triggered"
    wired.scheduler.advance(23 * 3600)
    assert len(notices(api)) == 1
    wired.scheduler.advance(3600)
    assert len(notices(api)) == 2
    wired.scheduler.advance(3 * 86_400)
    assert len(notices(api)) == 5
    credit(api, "100.00")  # cleared: no more repeats
    wired.scheduler.advance(3 * 86_400)
    assert len([n for n in notices(api) if n["event"] == "low_balance"]) == 5


# -- usage alerts ------------------------------------------------------------------------------
def test_a_daily_usage_alert_fires_once_a_day(
    api: TestClient, platform: dict[str, str], wired: Container
) -> None:
    credit(api, "100.00")
    created = alert(api, name="Busy day", type="usage", period="day", threshold="1.00")
    sms(api, platform, 1, count=4)
    assert notices(api) == []
    sms(api, platform, 2)  # 1.00 used today
    sms(api, platform, 3)
    fired = notices(api)
    assert [n["event"] for n in fired] == ["usage_threshold"]
    assert "INR 1.00" in fired[0]["message"]
    # local midnight (14 h later) re-arms it; the next day's usage fires it again
    wired.scheduler.advance(14 * 3600)
    got = api.get(f"{BASE}/alerts/{created['alert_id']}", headers=ADMIN).json()
    assert got["state"] == "armed"
    sms(api, platform, 4, count=5)
    assert [n["event"] for n in notices(api)] == ["usage_threshold", "usage_threshold"]


def test_a_per_service_usage_alert_counts_only_its_service(
    api: TestClient, platform: dict[str, str]
) -> None:
    credit(api, "100.00")
    alert(api, type="usage", period="month", service="whatsapp", threshold="1.00")
    sms(api, platform, 1, count=10)
    assert notices(api) == []
    body = {"conversation_id": "WA1", "category": "marketing"}
    api.post(f"{BASE}/whatsapp/conversations", json=body, headers=platform)
    body = {"conversation_id": "WA2", "category": "marketing"}
    api.post(f"{BASE}/whatsapp/conversations", json=body, headers=platform)
    assert [n["event"] for n in notices(api)] == ["usage_threshold"]


# -- percentages of average monthly usage -----------------------------------------------------
def test_recommended_levels_wait_for_history_then_follow_average_usage(
    api: TestClient, platform: dict[str, str], wired: Container
) -> None:
    credit(api, "1000.00")
    made = api.post(f"{BASE}/alerts/recommended", json={}, headers=ADMIN)
    assert made.status_code == 201, made.text
    levels = made.json()["data"]
    assert [a["threshold_percent_of_average_monthly_usage"] for a in levels] == ["30", "15", "5"]
    assert levels[0]["action"] == "Plan to add credits soon."
    # a new account has no history: nothing fires, whatever the balance
    assert notices(api) == []
    # ten days of 20.00 a day (100 SMS); no complete month yet, so the average is the
    # usage so far projected to 30 days: 200.00 over 11 days -> 545.454545; 30% = 163.636363
    for day in range(10):
        sms(api, platform, 100 + day, count=100)
        wired.scheduler.advance(86_400)
    assert api.get(f"{BASE}/balance", headers=ADMIN).json()["available_balance"] == "800.00"
    average = wired.alerts.average_monthly_usage("acme")
    assert average == 545_454_545
    assert notices(api) == []
    # spend it down (10-unit SMS, 2.00 each): the Warning level fires first, with its action
    for i in range(400):
        body = {"sms_sid": f"BIG{i}", "type": "transactional", "to": "+919800000001", "units": 10}
        assert api.post(f"{BASE}/sms", json=body, headers=platform).status_code == 201
        if notices(api):
            break
    fired = notices(api)
    assert [n["event"] for n in fired] == ["low_balance"] and "Warning" in fired[0]["title"]
    data = fired[0]["data"]
    assert Decimal(data["available_balance"]) < Decimal(data["threshold"])
    message = fired[0]["message"]
    assert "30% of your average monthly usage of INR" in message
    assert "Plan to add credits soon." in message
    # averages for people to the cent (the data keeps them exact), thousands grouped
    assert "average monthly usage of INR 1,505.45)" in message  # 451.636363 is 30% of it
    assert re.search(r"\(INR [0-9]{1,3}(,[0-9]{3})*\.[0-9]{2} a day\)", message), message


# -- system notices ----------------------------------------------------------------------------
def test_balance_at_zero_notifies_the_billing_recipients(
    api: TestClient, platform: dict[str, str], wired: Container, smtp: tuple[Inbox, int]
) -> None:
    put = api.put(
        f"{BASE}/notification-settings",
        json={"emails": ["finance@acme.test"], "phones": []},
        headers=ADMIN,
    )
    assert put.status_code == 200, put.text
    credit(api, "0.40")
    sms(api, platform, 1, count=2)
    zero = [n for n in notices(api) if n["event"] == "balance_zero"]
    assert len(zero) == 1 and "add credits now" in zero[0]["message"]
    deliver(wired)
    assert smtp[0].messages[0].rcpt_tos == ["finance@acme.test"]


def test_promotional_credit_expiring_is_announced_once(api: TestClient, wired: Container) -> None:
    expires = (wired.clock.now() + timedelta(days=10)).isoformat().replace("+00:00", "Z")
    body = {"type": "promotional", "amount": "50.00", "expires_at": expires}
    assert api.post(f"{BASE}/credits", json=body, headers=ADMIN).status_code == 201
    wired.scheduler.advance(2 * 86_400)
    assert notices(api) == []
    wired.scheduler.advance(86_400)  # 7 days before
    expiring = [n for n in notices(api) if n["event"] == "promotional_credit_expiring"]
    assert len(expiring) == 1 and "INR 50.00" in expiring[0]["message"]
    wired.scheduler.advance(3 * 86_400)
    assert len([n for n in notices(api) if n["event"] == "promotional_credit_expiring"]) == 1


# -- delivery retries --------------------------------------------------------------------------
def test_failed_deliveries_are_retried_with_backoff_and_every_attempt_shows(
    api: TestClient, platform: dict[str, str], wired: Container, receiver: Receiver
) -> None:
    receiver.statuses.extend([500, 503])
    credit(api, "1.00")
    alert(api, threshold="5.00", channels=["webhook"], webhook_url=receiver.url)
    deliver(wired)
    hook = notices(api)[0]["deliveries"][0]
    assert hook["status"] == "pending" and hook["last_error"] == "HTTP 500"
    wired.scheduler.advance(29)
    assert len(receiver.requests) == 1
    wired.scheduler.advance(1)  # 30 s after the first attempt
    assert len(receiver.requests) == 2
    wired.scheduler.advance(60)  # then 60 s
    assert len(receiver.requests) == 3
    hook = notices(api)[0]["deliveries"][0]
    assert hook["status"] == "sent"
    assert [a["outcome"] for a in hook["attempts"]] == ["error", "error", "sent"]
    assert [a["detail"] for a in hook["attempts"]][:2] == ["HTTP 500", "HTTP 503"]
    # one notice: three attempts with the same webhook-id, so receivers can deduplicate
    assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1


def test_email_without_smtp_fails_visibly(api: TestClient, wired: Container) -> None:
    wired.notifications.channels.settings = Settings(smtp_host=None)
    credit(api, "1.00")
    alert(api, threshold="5.00", channels=["email"], recipients={"emails": ["a@acme.test"]})
    deliver(wired)
    email = notices(api)[0]["deliveries"][0]
    assert email["status"] == "pending" and "smtp not configured" in email["last_error"]


# -- bad input and attackers -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"threshold": "1.00", "threshold_percent_of_average_monthly_usage": "30"},
            "threshold_required",
        ),
        ({}, "threshold_required"),
        ({"threshold": "-1.00"}, "amount_negative"),
        ({"threshold_percent_of_average_monthly_usage": "0"}, "invalid_threshold_percent"),
        ({"threshold_percent_of_average_monthly_usage": "ten"}, "invalid_threshold_percent"),
        ({"threshold": "1.00", "period": "day"}, "invalid_period"),
        ({"threshold": "1.00", "type": "usage"}, "invalid_period"),
        ({"threshold": "1.00", "channels": ["email"]}, "recipients_required"),
        ({"threshold": "1.00", "channels": ["webhook"]}, "recipients_required"),
        ({"threshold": "1.00", "channels": ["pager"]}, "validation_error"),
        (
            {"threshold": "1.00", "channels": ["sms"], "recipients": {"phones": ["98000"]}},
            "invalid_phone",
        ),
        (
            {"threshold": "1.00", "channels": ["email"], "recipients": {"emails": ["nope"]}},
            "invalid_email",
        ),
        (
            {"threshold": "1.00", "channels": ["webhook"], "webhook_url": "ftp://x.test/h"},
            "webhook_url_not_allowed",
        ),
    ],
)
def test_bad_alerts_are_refused(api: TestClient, body: dict[str, Any], code: str) -> None:
    full = {"name": "Bad", "type": "low_balance", "channels": ["dashboard"], **body}
    response = api.post(f"{BASE}/alerts", json=full, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert api.get(f"{BASE}/alerts", headers=ADMIN).json()["data"] == []


def test_private_webhook_urls_are_refused_by_default(client: TestClient) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    for url in (
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://user:pw@example.com/hook",
    ):
        body = {
            "name": "Hook",
            "type": "low_balance",
            "threshold": "1.00",
            "channels": ["webhook"],
            "webhook_url": url,
        }
        response = client.post(f"{BASE}/alerts", json=body, headers=ADMIN)
        assert response.status_code == 422, url
        assert response.json()["error"]["code"] == "webhook_url_not_allowed"
        settings = client.put(
            f"{BASE}/notification-settings", json={"webhook_url": url}, headers=ADMIN
        )
        assert settings.json()["error"]["code"] == "webhook_url_not_allowed"


def test_alerts_crud_and_secret_rotation(api: TestClient) -> None:
    created = alert(api, threshold="1.00")
    patched = api.patch(
        f"{BASE}/alerts/{created['alert_id']}",
        json={"threshold_percent_of_average_monthly_usage": "12.5", "name": "Renamed"},
        headers=ADMIN,
    ).json()
    assert patched["name"] == "Renamed" and patched["threshold"] is None
    assert patched["threshold_percent_of_average_monthly_usage"] == "12.5"
    listed = api.get(f"{BASE}/alerts", headers=ADMIN).json()["data"]
    assert [a["alert_id"] for a in listed] == [created["alert_id"]]
    assert api.delete(f"{BASE}/alerts/{created['alert_id']}", headers=ADMIN).status_code == 204
    missing = api.get(f"{BASE}/alerts/{created['alert_id']}", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "alert_not_found"
    first = api.get(f"{BASE}/webhook-secret", headers=ADMIN).json()["secret"]
    assert first.startswith("whsec_")
    rotated = api.post(f"{BASE}/webhook-secret/rotate", headers=ADMIN).json()["secret"]
    assert rotated != first
    assert api.get(f"{BASE}/webhook-secret", headers=ADMIN).json()["secret"] == rotated
    viewer = api.post(f"{BASE}/api-keys", json={"role": "viewer"}, headers=ADMIN).json()
    as_viewer = {"Authorization": f"Bearer {viewer['token']}"}
    assert api.get(f"{BASE}/webhook-secret", headers=as_viewer).status_code == 403
    assert api.get(f"{BASE}/alerts", headers=as_viewer).status_code == 200


# -- faults: nothing is lost ---------------------------------------------------------------
def test_smtp_down_then_back_delivers_everything(
    api: TestClient, wired: Container, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    wired.notifications.channels.settings = Settings(smtp_host="127.0.0.1", smtp_port=free_port())
    credit(api, "1.00")
    alert(api, threshold="5.00", channels=["email"], recipients={"emails": ["a@acme.test"]})
    deliver(wired)  # nothing listens there: refused
    email = notices(api)[0]["deliveries"][0]
    assert email["status"] == "pending" and email["last_error"].startswith("smtp:")
    wired.notifications.channels.settings = Settings(smtp_host="127.0.0.1", smtp_port=port)
    wired.scheduler.advance(30)
    assert len(inbox.messages) == 1
    assert notices(api)[0]["deliveries"][0]["status"] == "sent"


def test_a_receiver_that_times_out_gets_the_notice_again(
    api: TestClient,
    wired: Container,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from usagewatch.adapters import channels

    monkeypatch.setattr(channels, "TIMEOUT_SECONDS", 0.2)
    receiver.delays.append(1.0)  # the first answer comes after the timeout
    credit(api, "1.00")
    alert(api, threshold="5.00", channels=["webhook"], webhook_url=receiver.url)
    deliver(wired)
    first = notices(api)[0]["deliveries"][0]
    assert first["status"] == "pending" and "Timeout" in first["last_error"]
    wired.scheduler.advance(30)
    hook = notices(api)[0]["deliveries"][0]
    assert hook["status"] == "sent"
    assert [a["outcome"] for a in hook["attempts"]] == ["error", "sent"]
    # at least once: the receiver saw it twice, with one webhook-id to de-duplicate by
    ids = [h["webhook-id"] for h, _ in receiver.requests]
    assert len(ids) == 2 and len(set(ids)) == 1


def test_too_many_alerts_are_refused(api: TestClient) -> None:
    for i in range(50):
        alert(api, name=f"A{i}", threshold="1.00")
    response = api.post(
        f"{BASE}/alerts",
        json={
            "name": "one more",
            "type": "low_balance",
            "threshold": "1.00",
            "channels": ["dashboard"],
        },
        headers=ADMIN,
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "too_many_alerts"


def test_the_monthly_statement_is_emailed_with_its_files(
    api: TestClient, platform: dict[str, str], wired: Container, smtp: tuple[Inbox, int]
) -> None:
    api.put(f"{BASE}/notification-settings", json={"emails": ["books@acme.test"]}, headers=ADMIN)
    credit(api, "10.00")
    sms(api, platform, 1, count=3)
    # 2026-12-01 00:00 Asia/Kolkata is 2026-11-30T18:30Z, 2 days and 14 hours away
    wired.scheduler.advance(2 * 86_400 + 14 * 3600)
    statement = [n for n in notices(api, statements=True) if n["event"] == "monthly_statement"]
    assert len(statement) == 1 and "2026-11" in statement[0]["message"]
    deliver(wired)
    [mail] = [m for m in smtp[0].messages if m.rcpt_tos == ["books@acme.test"]]
    message = email.message_from_bytes(mail.content, policy=email.policy.default)
    names = sorted(part.get_filename() for part in message.iter_attachments())
    assert names == ["usagewatch-acme-2026-11.csv", "usagewatch-acme-2026-11.pdf"]
    parts = {p.get_filename(): p.get_payload(decode=True) for p in message.iter_attachments()}
    assert parts["usagewatch-acme-2026-11.pdf"].startswith(b"%PDF")
    assert parts["usagewatch-acme-2026-11.csv"].count(b"\n") == 4  # header + 3 SMS

"""Spending limits and campaign budgets over HTTP, on both engines: the caps stop spending,
open holds count, reached caps pause outbound until the next local day or month and
resume by themselves (following the test clock), campaigns pause alone, every event is a
notification, sandbox accounts start capped, and the dry run replays real usage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN
from usagewatch.adapters.db import limits_store
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.service.verify import verify

BASE = "/v1/accounts/acme"
# The test clock starts at 2026-11-28 10:00 Asia/Kolkata (04:30Z); built-in rates: SMS
# transactional 0.20, outbound calls 0.60 per 60 s pulse, inbound 0.30.
NEXT_LOCAL_MIDNIGHT = 14 * 3600  # from 10:00 to 00:00 the next day


@pytest.fixture
def platform(client: TestClient) -> dict[str, str]:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    key = client.post(f"{BASE}/api-keys", json={"role": "platform"}, headers=ADMIN)
    credit(client, "100.00")
    return {"Authorization": f"Bearer {key.json()['token']}"}


def credit(client: TestClient, amount: str) -> None:
    body = {"type": "paid", "amount": amount}
    assert client.post(f"{BASE}/credits", json=body, headers=ADMIN).status_code == 201


def put_limits(client: TestClient, **limits: Any) -> Any:
    body = {"enabled": True, **limits}
    return client.put(f"{BASE}/spending-limits", json=body, headers=ADMIN)


def sms(client: TestClient, headers: dict[str, str], sid: str, **extra: Any) -> Any:
    body = {"sms_sid": sid, "type": "transactional", "to": "+919800000001", "units": 1}
    return client.post(f"{BASE}/sms", json={**body, **extra}, headers=headers)


def call(client: TestClient, headers: dict[str, str], sid: str, **extra: Any) -> Any:
    body = {"call_sid": sid, "direction": "outbound", "to": "+919800000001", **extra}
    return client.post(f"{BASE}/calls", json=body, headers=headers)


def end(client: TestClient, headers: dict[str, str], sid: str, seconds: int) -> Any:
    body = {"status": "completed", "duration_seconds": seconds}
    return client.post(f"{BASE}/calls/{sid}/end", json=body, headers=headers)


def balance(client: TestClient) -> dict[str, Any]:
    return client.get(f"{BASE}/balance", headers=ADMIN).json()  # type: ignore[no-any-return]


def events(client: TestClient) -> list[str]:
    """The inbox's events, oldest first, without the monthly statements' notices (the test
    clock crosses month starts)."""
    page = client.get(f"{BASE}/notifications", headers=ADMIN).json()
    return [n["event"] for n in reversed(page["data"]) if n["event"] != "monthly_statement"]


def code_of(response: Any) -> str:
    return response.json()["error"]["code"]  # type: ignore[no-any-return]


# -- settings ----------------------------------------------------------------------------------
def test_limits_start_empty_and_round_trip(client: TestClient, platform: dict[str, str]) -> None:
    got = client.get(f"{BASE}/spending-limits", headers=ADMIN).json()
    assert got["enabled"] is False and got["daily_cap"] is None and got["updated_at"] is None
    put = put_limits(
        client,
        daily_cap="50.00",
        weekly_cap="200",
        monthly_cap="500",
        per_call_max_duration_seconds=1800,
        per_call_max_cost="20.000001",
    )
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["daily_cap"], body["monthly_cap"], body["per_call_max_cost"]) == (
        "50.00",
        "500.00",
        "20.000001",
    )
    assert body["per_call_max_duration_seconds"] == 1800
    assert body["weekly_cap"] == "200.00" and body["spent_this_week"] == "0.00"
    assert body["spent_today"] == "0.00" and body["daily_paused_until"] is None
    assert body["weekly_paused_until"] is None
    assert client.get(f"{BASE}/spending-limits", headers=ADMIN).json() == body


def test_a_put_without_weekly_cap_keeps_it_and_null_removes_it(
    client: TestClient, platform: dict[str, str]
) -> None:
    """API.md's PUT body predates the weekly cap: a client that sends only those fields must
    not remove a weekly cap set elsewhere (the dashboard); an explicit null does."""
    assert put_limits(client, daily_cap="50.00", weekly_cap="200").status_code == 200
    kept = put_limits(client, daily_cap="60.00", monthly_cap="500.00").json()
    assert (kept["daily_cap"], kept["weekly_cap"], kept["monthly_cap"]) == (
        "60.00",
        "200.00",
        "500.00",
    )
    preview = client.post(f"{BASE}/spending-limits/simulate", json={}, headers=ADMIN).json()
    assert preview["limits"]["weekly_cap"] == "200.00"
    removed = put_limits(client, daily_cap="60.00", weekly_cap=None).json()
    assert removed["weekly_cap"] is None and removed["monthly_cap"] is None


@pytest.mark.parametrize(
    ("limits", "code", "field"),
    [
        ({"daily_cap": "-1.00"}, "amount_negative", "daily_cap"),
        ({"monthly_cap": "-0.01"}, "amount_negative", "monthly_cap"),
        ({"daily_cap": "1.0000001"}, "amount_too_precise", "daily_cap"),
        ({"daily_cap": 5}, "money_must_be_string", "daily_cap"),
        ({"per_call_max_duration_seconds": 59}, "per_call_duration_too_short", None),
        ({"per_call_max_duration_seconds": 0}, "per_call_duration_too_short", None),
        ({"per_call_max_cost": "0"}, "amount_not_positive", "per_call_max_cost"),
        ({"weekly_cap": "-1.00"}, "amount_negative", "weekly_cap"),
        ({"yearly_cap": "1.00"}, "unknown_field", "yearly_cap"),
    ],
)
def test_bad_limits_are_refused_and_change_nothing(
    client: TestClient,
    platform: dict[str, str],
    limits: dict[str, Any],
    code: str,
    field: str | None,
) -> None:
    response = put_limits(client, **limits)
    assert response.status_code == 422, response.text
    assert code_of(response) == code
    if field is not None:
        assert response.json()["error"]["field"] == field
    assert client.get(f"{BASE}/spending-limits", headers=ADMIN).json()["enabled"] is False


def test_only_owners_and_admins_set_limits(client: TestClient, platform: dict[str, str]) -> None:
    viewer = client.post(f"{BASE}/api-keys", json={"role": "viewer"}, headers=ADMIN).json()
    headers = {"Authorization": f"Bearer {viewer['token']}"}
    assert client.get(f"{BASE}/spending-limits", headers=headers).status_code == 200
    refused = client.put(f"{BASE}/spending-limits", json={"enabled": True}, headers=headers)
    assert refused.status_code == 403
    owner = client.post(f"{BASE}/api-keys", json={"role": "owner"}, headers=ADMIN).json()
    headers = {"Authorization": f"Bearer {owner['token']}"}
    ok = client.put(f"{BASE}/spending-limits", json={"enabled": True}, headers=headers)
    assert ok.status_code == 200
    client.post("/v1/accounts", json={"id": "other", "name": "Other"}, headers=ADMIN)
    hidden = client.get("/v1/accounts/other/spending-limits", headers=headers)
    assert hidden.status_code == 404


# -- daily and monthly caps ------------------------------------------------------------------
def test_daily_cap_pauses_outbound_until_the_next_local_day(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    assert put_limits(client, daily_cap="1.00").status_code == 200
    for i in range(5):
        assert sms(client, platform, f"SM{i}").status_code == 201
    # exactly used up: paused now, before any refusal
    after = balance(client)
    assert (after["outbound_allowed"], after["outbound_block_reason"]) == (
        False,
        "daily_cap_reached",
    )
    refused = sms(client, platform, "SM5")
    assert refused.status_code == 402 and code_of(refused) == "daily_cap_reached"
    assert code_of(call(client, platform, "CA1")) == "daily_cap_reached"
    assert events(client) == ["daily_cap_reached"]
    notice = client.get(f"{BASE}/notifications", headers=ADMIN).json()["data"][0]
    assert "1.00" in notice["message"] and "2026-11-29 00:00" in notice["message"]
    assert notice["data"]["paused_until"] == "2026-11-28T18:30:00Z"
    limits = client.get(f"{BASE}/spending-limits", headers=ADMIN).json()
    assert limits["daily_paused_until"] == "2026-11-28T18:30:00Z"
    assert limits["spent_today"] == "1.00"
    # nothing was charged for the refused ones
    assert balance(client)["available_balance"] == "99.00"
    # one second before local midnight: still paused; at midnight it resumes by itself
    container.scheduler.advance(NEXT_LOCAL_MIDNIGHT - 1)
    assert code_of(sms(client, platform, "SM6")) == "daily_cap_reached"
    container.scheduler.advance(1)
    assert events(client) == ["daily_cap_reached", "outbound_resumed"]
    assert balance(client)["outbound_allowed"] is True
    assert sms(client, platform, "SM7").status_code == 201
    assert verify(container.db) == []


def test_a_refusal_pauses_even_when_room_is_left(
    client: TestClient, platform: dict[str, str]
) -> None:
    put_limits(client, daily_cap="0.30")
    assert sms(client, platform, "SM1").status_code == 201  # 0.10 left
    assert code_of(sms(client, platform, "SM2")) == "daily_cap_reached"
    # a 0.10 message would fit, but the day is paused: the cap was reached
    assert code_of(sms(client, platform, "SM3", type="service")) == "daily_cap_reached"
    assert balance(client)["outbound_block_reason"] == "daily_cap_reached"


def test_raising_the_cap_resumes_at_once(client: TestClient, platform: dict[str, str]) -> None:
    put_limits(client, daily_cap="0.20")
    assert sms(client, platform, "SM1").status_code == 201
    assert code_of(sms(client, platform, "SM2")) == "daily_cap_reached"
    put_limits(client, daily_cap="0.40")
    assert events(client) == ["daily_cap_reached", "outbound_resumed"]
    assert sms(client, platform, "SM2").status_code == 201
    # disabled limits enforce nothing
    client.put(
        f"{BASE}/spending-limits", json={"enabled": False, "daily_cap": "0.00"}, headers=ADMIN
    )
    assert sms(client, platform, "SM3").status_code == 201


def test_monthly_cap_pauses_until_the_next_local_month(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    put_limits(client, monthly_cap="0.40", daily_cap="10.00")
    assert sms(client, platform, "SM1").status_code == 201
    assert sms(client, platform, "SM2").status_code == 201
    assert balance(client)["outbound_block_reason"] == "monthly_cap_reached"
    container.scheduler.advance(NEXT_LOCAL_MIDNIGHT)  # a new day is not enough
    assert code_of(sms(client, platform, "SM3")) == "monthly_cap_reached"
    # 2026-12-01 00:00 IST = 2026-11-30T18:30Z; now 2026-11-28T18:30Z
    container.scheduler.advance(2 * 86_400)
    assert sms(client, platform, "SM3").status_code == 201
    assert events(client) == ["monthly_cap_reached", "outbound_resumed"]


# 2026-11-28 is a Saturday: the next local week begins Monday 2026-11-30 00:00 IST.
NEXT_LOCAL_MONDAY = 38 * 3600


def test_weekly_cap_pauses_outbound_until_monday(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    put_limits(client, weekly_cap="0.40", daily_cap="10.00", monthly_cap="100.00")
    assert sms(client, platform, "SM1").status_code == 201
    assert sms(client, platform, "SM2").status_code == 201  # the week's room used up
    assert balance(client)["outbound_block_reason"] == "weekly_cap_reached"
    assert code_of(sms(client, platform, "SM3")) == "weekly_cap_reached"
    assert code_of(call(client, platform, "CA1")) == "weekly_cap_reached"
    limits = client.get(f"{BASE}/spending-limits", headers=ADMIN).json()
    assert limits["spent_this_week"] == "0.40"
    assert limits["weekly_paused_until"] == "2026-11-29T18:30:00Z"
    notice = client.get(f"{BASE}/notifications", headers=ADMIN).json()["data"][0]
    assert notice["event"] == "weekly_cap_reached"
    assert "weekly cap of INR 0.40" in notice["message"]
    assert "2026-11-30 00:00" in notice["message"] and notice["data"]["cap"] == "weekly"
    container.scheduler.advance(NEXT_LOCAL_MIDNIGHT)  # Sunday: a new day is not enough
    assert code_of(sms(client, platform, "SM3")) == "weekly_cap_reached"
    container.scheduler.advance(NEXT_LOCAL_MONDAY - NEXT_LOCAL_MIDNIGHT - 1)
    assert code_of(sms(client, platform, "SM3")) == "weekly_cap_reached"
    container.scheduler.advance(1)  # Monday 00:00: it resumes by itself
    assert events(client) == ["weekly_cap_reached", "outbound_resumed"]
    assert sms(client, platform, "SM3").status_code == 201
    assert client.get(f"{BASE}/spending-limits", headers=ADMIN).json()["spent_this_week"] == (
        "0.20"
    )
    assert verify(container.db) == []


def test_a_week_that_spans_two_months_counts_both(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    container.scheduler.advance(NEXT_LOCAL_MONDAY)  # Monday 2026-11-30 00:00 IST
    put_limits(client, weekly_cap="0.60", monthly_cap="100.00")
    assert sms(client, platform, "SM1").status_code == 201
    assert sms(client, platform, "SM2").status_code == 201
    container.scheduler.advance(86_400)  # Tuesday 2026-12-01: a new month, the same week
    limits = client.get(f"{BASE}/spending-limits", headers=ADMIN).json()
    assert (limits["spent_this_month"], limits["spent_this_week"]) == ("0.00", "0.40")
    assert sms(client, platform, "SM3").status_code == 201  # 0.60: used up exactly
    assert code_of(sms(client, platform, "SM4")) == "weekly_cap_reached"
    # the dry run applies the same week: the cap pauses on December 1st at the third SMS
    result = client.post(
        f"{BASE}/spending-limits/simulate", json={"weekly_cap": "0.40"}, headers=ADMIN
    ).json()
    days = {d["date"]: d for d in result["days"]}
    assert days["2026-11-30"]["simulated_spend"] == "0.40"
    assert days["2026-11-30"]["pause_reason"] == "weekly_cap_reached"
    assert days["2026-12-01"]["simulated_spend"] == "0.00"
    assert days["2026-12-01"]["blocked_messages"] == 1
    assert result["limits"]["weekly_cap"] == "0.40"


def test_open_holds_count_against_the_cap(client: TestClient, platform: dict[str, str]) -> None:
    put_limits(client, daily_cap="3.00")
    first = call(client, platform, "CA1")
    # 3.00 pays 5 pulses (300 s), all of it held for the first window
    assert first.status_code == 201, first.text
    assert first.json()["max_duration_seconds"] == 300
    assert first.json()["reserved_amount"] == "3.00"
    # the cap's room is all held: a second call gets nothing, nor does an SMS
    assert code_of(call(client, platform, "CA2")) == "daily_cap_reached"
    # the first call ends after 61 s: 1.20 charged, 1.80 released -- but the day is paused
    assert end(client, platform, "CA1", 61).json()["price"] == "1.20"
    assert code_of(sms(client, platform, "SM1")) == "daily_cap_reached"


def test_max_duration_respects_every_limit_at_once(
    client: TestClient, platform: dict[str, str]
) -> None:
    put_limits(client, daily_cap="30.00", monthly_cap="6.00", per_call_max_duration_seconds=900)
    client.post(
        f"{BASE}/campaigns",
        json={"campaign_id": "diwali", "name": "Diwali", "budget": "2.40"},
        headers=ADMIN,
    )
    # balance 100: 10000 s; daily 30.00: 3000 s; monthly 6.00: 600 s; per call 900 s
    assert call(client, platform, "CA1").json()["max_duration_seconds"] == 600
    # CA1 holds 3.00 of the monthly 6.00: 3.00 left (300 s); the campaign's 2.40 buys 240 s
    started = call(client, platform, "CA2", campaign_id="diwali")
    assert started.json()["max_duration_seconds"] == 240
    assert started.json()["reserved_amount"] == "2.40"
    # the list shows what the campaign's call in progress holds, as the campaign itself does
    one = client.get(f"{BASE}/campaigns/diwali", headers=ADMIN).json()
    [listed] = client.get(f"{BASE}/campaigns", headers=ADMIN).json()["data"]
    assert listed == one and (one["reserved"], one["remaining"]) == ("2.40", "0.00")


def test_per_call_cap_ends_the_call_at_the_limit(
    client: TestClient, platform: dict[str, str]
) -> None:
    put_limits(client, per_call_max_duration_seconds=420)
    started = call(client, platform, "CA1")
    assert started.json()["max_duration_seconds"] == 420
    extended = client.post(f"{BASE}/calls/CA1/extend", headers=platform)
    assert extended.status_code == 200, extended.text
    assert extended.json()["reserved_amount"] == "4.20"  # 7 pulses: the cap, not 10
    refused = client.post(f"{BASE}/calls/CA1/extend", headers=platform)
    assert refused.status_code == 402 and code_of(refused) == "per_call_cap_reached"
    assert end(client, platform, "CA1", 420).json()["price"] == "4.20"
    # by cost: 1.80 is 3 pulses
    put_limits(client, per_call_max_cost="1.80")
    assert call(client, platform, "CA2").json()["max_duration_seconds"] == 180
    put_limits(client, per_call_max_cost="0.59")
    assert code_of(call(client, platform, "CA3")) == "per_call_cap_reached"
    # the per-call cap pauses nothing else
    assert sms(client, platform, "SM1").status_code == 201


def test_extension_is_refused_by_the_daily_cap(
    client: TestClient, platform: dict[str, str]
) -> None:
    put_limits(client, daily_cap="4.20")
    started = call(client, platform, "CA1")
    assert started.json()["max_duration_seconds"] == 420
    assert client.post(f"{BASE}/calls/CA1/extend", headers=platform).status_code == 200
    refused = client.post(f"{BASE}/calls/CA1/extend", headers=platform)
    assert code_of(refused) == "daily_cap_reached"
    assert events(client) == ["daily_cap_reached"]


def test_inbound_calls_face_no_daily_cap(client: TestClient, platform: dict[str, str]) -> None:
    put_limits(client, daily_cap="0.00")
    assert code_of(sms(client, platform, "SM1")) == "daily_cap_reached"
    inbound = call(client, platform, "CA1", direction="inbound")
    assert inbound.status_code == 201
    assert end(client, platform, "CA1", 30).json()["price"] == "0.30"


# -- campaigns ---------------------------------------------------------------------------------
def test_a_campaign_pauses_alone_and_resumes_when_its_budget_rises(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    created = client.post(
        f"{BASE}/campaigns",
        json={"campaign_id": "diwali", "name": "Diwali offers", "budget": "1.00"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "active" and created.json()["spent"] == "0.00"
    for i in range(5):
        assert sms(client, platform, f"SM{i}", campaign_id="diwali").status_code == 201
    campaign = client.get(f"{BASE}/campaigns/diwali", headers=ADMIN).json()
    assert (campaign["status"], campaign["paused_reason"], campaign["spent"]) == (
        "paused",
        "campaign_budget_exhausted",
        "1.00",
    )
    refused = sms(client, platform, "SM5", campaign_id="diwali")
    assert code_of(refused) == "campaign_budget_exhausted"
    # the rest of the account's traffic goes on
    assert sms(client, platform, "SM6").status_code == 201
    assert sms(client, platform, "SM7", campaign_id="other").status_code == 201
    assert balance(client)["outbound_allowed"] is True
    raised = client.patch(f"{BASE}/campaigns/diwali", json={"budget": "2.00"}, headers=ADMIN)
    assert raised.json()["status"] == "active" and raised.json()["remaining"] == "1.00"
    assert sms(client, platform, "SM5", campaign_id="diwali").status_code == 201
    paused = client.patch(f"{BASE}/campaigns/diwali", json={"status": "paused"}, headers=ADMIN)
    assert paused.json()["paused_reason"] == "paused_by_user"
    assert code_of(sms(client, platform, "SM8", campaign_id="diwali")) == "campaign_paused"
    resumed = client.patch(f"{BASE}/campaigns/diwali", json={"status": "active"}, headers=ADMIN)
    assert resumed.json()["status"] == "active"
    assert events(client) == [
        "campaign_paused",
        "campaign_resumed",
        "campaign_resumed",
    ]
    assert verify(container.db) == []


def test_campaign_budget_counts_calls_in_progress(
    client: TestClient, platform: dict[str, str]
) -> None:
    client.post(
        f"{BASE}/campaigns",
        json={"campaign_id": "c1", "name": "C1", "budget": "3.60"},
        headers=ADMIN,
    )
    first = call(client, platform, "CA1", campaign_id="c1")
    assert first.json()["reserved_amount"] == "3.00"
    assert client.get(f"{BASE}/campaigns/c1", headers=ADMIN).json()["reserved"] == "3.00"
    second = call(client, platform, "CA2", campaign_id="c1")
    assert second.json()["max_duration_seconds"] == 60  # 0.60 left: one pulse
    assert code_of(call(client, platform, "CA3", campaign_id="c1")) == ("campaign_budget_exhausted")
    end(client, platform, "CA1", 59)
    end(client, platform, "CA2", 1)
    campaign = client.get(f"{BASE}/campaigns/c1", headers=ADMIN).json()
    assert (campaign["spent"], campaign["reserved"]) == ("1.20", "0.00")


def test_a_budget_below_what_was_spent_pauses_at_once(
    client: TestClient, platform: dict[str, str]
) -> None:
    for i in range(3):
        sms(client, platform, f"SM{i}", campaign_id="late")
    created = client.post(
        f"{BASE}/campaigns",
        json={"campaign_id": "late", "name": "Late budget", "budget": "0.50"},
        headers=ADMIN,
    )
    assert created.status_code == 201
    body = created.json()
    assert (body["spent"], body["status"], body["remaining"]) == ("0.60", "paused", "-0.10")
    assert events(client) == ["campaign_paused"]


def test_campaign_bad_input(client: TestClient, platform: dict[str, str]) -> None:
    body = {"campaign_id": "c1", "name": "C1", "budget": "1.00"}
    assert client.post(f"{BASE}/campaigns", json=body, headers=ADMIN).status_code == 201
    again = client.post(f"{BASE}/campaigns", json=body, headers=ADMIN)
    assert again.status_code == 409 and code_of(again) == "campaign_exists"
    negative = client.post(
        f"{BASE}/campaigns", json={**body, "campaign_id": "c2", "budget": "-1"}, headers=ADMIN
    )
    assert code_of(negative) == "amount_negative"
    for unreachable in ("c/4", "..", "."):  # ids that could not be read back by URL
        refused = client.post(
            f"{BASE}/campaigns", json={**body, "campaign_id": unreachable}, headers=ADMIN
        )
        assert refused.status_code == 422, unreachable
        assert refused.json()["error"]["field"] == "campaign_id"
    odd = client.post(f"{BASE}/campaigns", json={**body, "campaign_id": "q3 #1?"}, headers=ADMIN)
    assert odd.status_code == 201
    assert client.get(f"{BASE}/campaigns/q3%20%231%3F", headers=ADMIN).status_code == 200
    missing = client.get(f"{BASE}/campaigns/nope", headers=ADMIN)
    assert missing.status_code == 404 and code_of(missing) == "campaign_not_found"
    bad = client.patch(f"{BASE}/campaigns/c1", json={"status": "done"}, headers=ADMIN)
    assert bad.status_code == 422
    listed = client.get(f"{BASE}/campaigns", headers=ADMIN).json()
    assert [c["campaign_id"] for c in listed["data"]] == ["c1", "q3 #1?"]


# -- sandbox accounts ------------------------------------------------------------------------
def test_sandbox_accounts_start_with_conservative_limits(client: TestClient) -> None:
    created = client.post(
        "/v1/accounts", json={"id": "dev", "name": "Dev", "sandbox": True}, headers=ADMIN
    )
    assert created.status_code == 201 and created.json()["sandbox"] is True
    limits = client.get("/v1/accounts/dev/spending-limits", headers=ADMIN).json()
    assert limits["enabled"] is True
    assert (limits["daily_cap"], limits["monthly_cap"], limits["per_call_max_cost"]) == (
        "100.00",
        "1000.00",
        "50.00",
    )
    assert limits["per_call_max_duration_seconds"] == 600


# -- the dry run -----------------------------------------------------------------------------
def test_simulate_replays_the_last_30_days(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    credit(client, "1000.00")
    # three days of traffic: each day 10 SMS (2.00) and a 5-minute call (3.00)
    for day in range(3):
        for i in range(10):
            assert sms(client, platform, f"SM{day}-{i}").status_code == 201
        assert call(client, platform, f"CA{day}").status_code == 201
        container.scheduler.advance(600)
        assert end(client, platform, f"CA{day}", 300).status_code == 200
        container.scheduler.advance(86_400 - 600)
    before = client.get(f"{BASE}/ledger", headers=ADMIN).json()
    response = client.post(
        f"{BASE}/spending-limits/simulate",
        json={"daily_cap": "3.00", "per_call_max_duration_seconds": 120},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["period"]["to"] == "2026-12-01" and result["period"]["from"] == "2026-11-02"
    assert len(result["days"]) == 30
    assert result["actual_spend"] == "15.00"
    # per day: the 10 SMS (2.00) fit; the call, cut to 2 pulses (1.20) by the per-call cap,
    # does not fit the 1.00 left and is cut to 1 pulse (0.60); 0.40 is left, no pause
    days = {d["date"]: d for d in result["days"]}
    first = days["2026-11-28"]
    assert first["actual_spend"] == "5.00"
    assert first["simulated_spend"] == "2.60"
    assert (first["blocked_messages"], first["shortened_calls"], first["blocked_calls"]) == (
        0,
        1,
        0,
    )
    assert first["pause_reason"] is None
    assert result["simulated_spend"] == "7.80" and result["blocked_spend"] == "7.20"
    # a tighter cap pauses: 1.00 a day lets 5 SMS through, then the day pauses at the 6th
    tight = client.post(
        f"{BASE}/spending-limits/simulate", json={"daily_cap": "1.00"}, headers=ADMIN
    ).json()
    first = {d["date"]: d for d in tight["days"]}["2026-11-28"]
    assert (first["blocked_messages"], first["blocked_calls"]) == (5, 1)
    assert first["pause_reason"] == "daily_cap_reached"
    assert first["paused_at"].startswith("2026-11-28T10:00") and first["paused_hours"] == "14.0"
    assert tight["paused_days"] == 3
    # nothing changed
    assert client.get(f"{BASE}/ledger", headers=ADMIN).json() == before
    assert client.get(f"{BASE}/spending-limits", headers=ADMIN).json()["enabled"] is False


def test_simulate_validates_like_put(client: TestClient, platform: dict[str, str]) -> None:
    response = client.post(
        f"{BASE}/spending-limits/simulate", json={"daily_cap": "-5"}, headers=ADMIN
    )
    assert response.status_code == 422 and code_of(response) == "amount_negative"


def test_whatsapp_passes_the_same_gate(client: TestClient, platform: dict[str, str]) -> None:
    put_limits(client, daily_cap="1.00")
    body = {"conversation_id": "WA1", "category": "marketing", "campaign_id": "wa"}
    first = client.post(f"{BASE}/whatsapp/conversations", json=body, headers=platform)
    assert first.status_code == 201 and first.json()["price"] == "0.80"
    body = {**body, "conversation_id": "WA2"}
    second = client.post(f"{BASE}/whatsapp/conversations", json=body, headers=platform)
    assert second.status_code == 402 and code_of(second) == "daily_cap_reached"
    # a replay of the first still answers its first result, pause or not
    body = {**body, "conversation_id": "WA1"}
    again = client.post(f"{BASE}/whatsapp/conversations", json=body, headers=platform)
    assert again.status_code == 201 and again.json() == first.json()


def test_the_gate_reads_a_campaign_s_open_holds_by_key_not_by_the_account_s_history(
    tmp_path: Path,
) -> None:
    """SQLite's plan for the campaign's held amount: the account's open holds by index,
    each call's record by its unique key. (As a join it read every voice record of the
    account: 400 µs per decision at 1,000 calls, growing with the history.)"""
    c = build(Settings(database_url=f"sqlite:///{tmp_path}/plan.db"), "x" * 32)
    params = {"account": "acme", "campaign": "c1", "month_start": "2026-11-01"}
    params |= {"today": "2026-11-28", "week_start": "2026-11-23"}
    try:
        with c.db.engine.connect() as conn:
            sql, args = limits_store._gate_query.bind(conn, params)
            plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", args)]
    finally:
        c.close()
    assert any("holds USING INDEX ix_holds_account_status" in step for step in plan), plan
    records = [step for step in plan if "usage_records" in step]
    assert records and all("natural_id=?" in step for step in records), plan

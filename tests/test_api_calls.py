"""Calls over HTTP on both engines: authorize holds the first window, extend holds the
next, end prices whole pulses and releases the rest; max_duration_seconds is exact."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock
from usagewatch.service.verify import verify

BASE = "/v1/accounts/acme"


@pytest.fixture
def platform(client: TestClient) -> dict[str, str]:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    # 60 s pulses at 0.60 outbound (the built-in defaults)
    key = client.post(f"{BASE}/api-keys", json={"role": "platform"}, headers=ADMIN)
    return {"Authorization": f"Bearer {key.json()['token']}"}


def credit(client: TestClient, amount: str) -> None:
    body = {"type": "paid", "amount": amount}
    assert client.post(f"{BASE}/credits", json=body, headers=ADMIN).status_code == 201


def balance(client: TestClient) -> dict[str, Any]:
    return client.get(f"{BASE}/balance", headers=ADMIN).json()  # type: ignore[no-any-return]


def start(client: TestClient, headers: dict[str, str], sid: str, **extra: Any) -> Any:
    body = {"call_sid": sid, "direction": "outbound", "to": "+919800000001", **extra}
    return client.post(f"{BASE}/calls", json=body, headers=headers)


def test_a_call_from_authorize_to_end(client: TestClient, platform: dict[str, str]) -> None:
    credit(client, "10.00")
    started = start(client, platform, "CA1")
    assert started.status_code == 201, started.text
    # 10.00 buys 16 pulses of 0.60 = 960 s; the hold covers the first 300 s = 5 pulses
    assert started.json()["max_duration_seconds"] == 960
    assert started.json()["reserved_amount"] == "3.00"
    assert started.json()["status"] == "in-progress"
    running = client.get(f"{BASE}/calls/CA1", headers=platform).json()
    assert (running["reserved_amount"], running["hold_status"]) == ("3.00", "open")
    assert running["hold_expires_at"] == "2026-11-28T04:37:00Z"  # 300 s window + 120 s grace
    assert balance(client)["reserved_amount"] == "3.00"
    assert balance(client)["available_balance"] == "7.00"
    ended = client.post(
        f"{BASE}/calls/CA1/end",
        json={"status": "completed", "duration_seconds": 61},
        headers=platform,
    )
    assert ended.status_code == 200, ended.text
    assert ended.json() == {
        "call_sid": "CA1",
        "status": "completed",
        "duration_seconds": 61,
        "pulses": 2,
        "price": "1.20",
    }
    after = balance(client)
    assert (after["available_balance"], after["reserved_amount"]) == ("8.80", "0.00")
    assert after["today_usage"] == "1.20"
    again = client.post(
        f"{BASE}/calls/CA1/end",
        json={"status": "completed", "duration_seconds": 61},
        headers=platform,
    )
    assert again.json() == ended.json() and balance(client)["available_balance"] == "8.80"
    other = client.post(
        f"{BASE}/calls/CA1/end",
        json={"status": "completed", "duration_seconds": 62},
        headers=platform,
    )
    assert other.status_code == 409
    record = client.get(f"{BASE}/calls/CA1", headers=platform).json()
    assert (record["status"], record["pulses"], record["price"]) == ("completed", 2, "1.20")
    assert (record["reserved_amount"], record["hold_status"], record["hold_expires_at"]) == (
        "0.00",
        "captured",
        None,
    )


def test_failed_calls_cost_nothing_and_release_the_hold(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    credit(client, "5.00")
    start(client, platform, "CA2")
    ended = client.post(
        f"{BASE}/calls/CA2/end", json={"status": "busy", "duration_seconds": 0}, headers=platform
    )
    assert ended.json()["price"] == "0.00"
    assert balance(client)["available_balance"] == "5.00"
    assert verify(container.db) == []


def test_outbound_is_refused_when_one_pulse_is_not_covered(
    client: TestClient, platform: dict[str, str]
) -> None:
    credit(client, "0.59")
    refused = start(client, platform, "CA3")
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_balance"
    inbound = start(client, platform, "CA4", direction="inbound")  # inbound: allowed
    assert inbound.status_code == 201 and inbound.json()["max_duration_seconds"] == 60


def test_max_duration_is_exact_and_extensions_stop_at_it(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    credit(client, "4.20")  # 7 pulses
    started = start(client, platform, "CA5").json()
    assert (started["max_duration_seconds"], started["reserved_amount"]) == (420, "3.00")
    extended = client.post(f"{BASE}/calls/CA5/extend", headers=platform)
    assert extended.status_code == 200, extended.text
    assert extended.json()["reserved_amount"] == "4.20"
    assert balance(client)["available_balance"] == "0.00"
    more = client.post(f"{BASE}/calls/CA5/extend", headers=platform)
    assert more.status_code == 402  # the platform disconnects
    done = client.post(
        f"{BASE}/calls/CA5/end",
        json={"status": "completed", "duration_seconds": 420},
        headers=platform,
    )
    assert done.json()["price"] == "4.20"
    assert balance(client)["available_balance"] == "0.00"
    assert verify(container.db) == []


def test_a_call_ended_past_its_max_duration_is_charged_in_full_as_an_overrun(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    """The platform disconnects late: the minutes happened, so they are owed, not dropped.
    The excess comes from free money; the shortfall is an explicit overrun that stops
    outbound and that the next credit settles first."""
    credit(client, "4.20")  # 7 pulses
    start(client, platform, "CA9")
    client.post(f"{BASE}/calls/CA9/extend", headers=platform)  # holds all 4.20: 420 s
    done = client.post(
        f"{BASE}/calls/CA9/end",
        json={"status": "completed", "duration_seconds": 430},  # 10 s late: an 8th pulse
        headers=platform,
    )
    assert done.status_code == 200, done.text
    assert done.json()["price"] == "4.80"
    after = balance(client)
    assert (after["available_balance"], after["reserved_amount"]) == ("-0.60", "0.00")
    assert (after["outbound_allowed"], after["outbound_block_reason"]) == (
        False,
        "insufficient_balance",
    )
    assert start(client, platform, "CA10").status_code == 402
    credit(client, "1.00")
    assert balance(client)["available_balance"] == "0.40"
    assert verify(container.db) == []


def test_a_call_whose_end_never_arrives_releases_its_hold_then_is_charged_once(
    client: TestClient, platform: dict[str, str], container: Container, clock: ManualClock
) -> None:
    credit(client, "10.00")
    start(client, platform, "CA6")
    assert container.test_clock is not None
    container.scheduler.advance(300 + 120)  # window + grace: the hold expires
    assert balance(client)["reserved_amount"] == "0.00"
    # the record still says in-progress (no end came), and that its hold lapsed
    lapsed = client.get(f"{BASE}/calls/CA6", headers=platform).json()
    assert (lapsed["status"], lapsed["reserved_amount"], lapsed["hold_status"]) == (
        "in-progress",
        "0.00",
        "expired",
    )
    listed = client.get(f"{BASE}/calls", headers=platform).json()["data"]
    assert [(c["call_sid"], c["hold_status"]) for c in listed] == [("CA6", "expired")]
    assert client.post(f"{BASE}/calls/CA6/extend", headers=platform).status_code == 409
    late = client.post(
        f"{BASE}/calls/CA6/end",
        json={"status": "completed", "duration_seconds": 400},
        headers=platform,
    )
    assert late.status_code == 200 and late.json()["price"] == "4.20"
    assert balance(client)["available_balance"] == "5.80"
    assert verify(container.db) == []


def test_bad_input_gets_stable_codes(client: TestClient, platform: dict[str, str]) -> None:
    credit(client, "1.00")
    assert start(client, platform, "X", direction="sideways").json()["error"]["code"] == (
        "invalid_call_direction"
    )
    start(client, platform, "CA7")
    bad = client.post(
        f"{BASE}/calls/CA7/end",
        json={"status": "completed", "duration_seconds": -1},
        headers=platform,
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_duration"
    missing = client.post(
        f"{BASE}/calls/NOPE/end",
        json={"status": "completed", "duration_seconds": 1},
        headers=platform,
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "call_not_found"
    conflict = start(client, platform, "CA7", to="+919800000002")
    assert conflict.status_code == 409


def test_calls_are_listed_newest_first_with_a_cursor(
    client: TestClient, platform: dict[str, str]
) -> None:
    credit(client, "10.00")
    for n in range(3):
        start(client, platform, f"L{n}")
    first = client.get(f"{BASE}/calls?limit=2", headers=platform).json()
    assert [c["call_sid"] for c in first["data"]] == ["L2", "L1"]
    rest = client.get(f"{BASE}/calls?limit=2&after={first['next_cursor']}", headers=platform)
    assert [c["call_sid"] for c in rest.json()["data"]] == ["L0"]
    assert rest.json()["next_cursor"] is None
    assert first["data"][0]["from"] is None and first["data"][0]["status"] == "in-progress"


def test_inbound_at_zero_follows_the_accounts_policy(client: TestClient) -> None:
    created = client.post(
        "/v1/accounts",
        json={"id": "strict", "name": "S", "inbound_at_zero": "deny"},
        headers=ADMIN,
    )
    assert created.status_code == 201 and created.json()["inbound_at_zero"] == "deny"
    key = client.post("/v1/accounts/strict/api-keys", json={"role": "platform"}, headers=ADMIN)
    headers = {"Authorization": f"Bearer {key.json()['token']}"}
    body = {"call_sid": "IN1", "direction": "inbound"}
    denied = client.post("/v1/accounts/strict/calls", json=body, headers=headers)
    assert denied.status_code == 402
    assert denied.json()["error"]["code"] == "insufficient_balance"

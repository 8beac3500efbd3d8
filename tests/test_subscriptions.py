"""Number rentals and agent seats: charged at start and at every account-local month start,
exactly once per month — under the test clock and after downtime — and agent hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, START
from usagewatch.adapters.db.schema import usage_records, usage_rollups
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock
from usagewatch.service.verify import verify

BASE = "/v1/accounts/acme"
DECEMBER_IST = datetime(2026, 11, 30, 18, 30, tzinfo=UTC)  # 2026-12-01 00:00 Asia/Kolkata


@pytest.fixture
def owner(client: TestClient) -> dict[str, str]:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    client.post(f"{BASE}/credits", json={"type": "paid", "amount": "3000.00"}, headers=ADMIN)
    key = client.post(f"{BASE}/api-keys", json={"role": "owner"}, headers=ADMIN)
    return {"Authorization": f"Bearer {key.json()['token']}"}


def charges(container: Container, service: str) -> list[str]:
    with container.db.read() as conn:
        return list(
            conn.execute(
                sa.select(usage_records.c.natural_id)
                .where(usage_records.c.service == service, usage_records.c.sub_type == "monthly")
                .order_by(usage_records.c.id)
            ).scalars()
        )


def available(client: TestClient) -> Any:
    return client.get(f"{BASE}/balance", headers=ADMIN).json()["available_balance"]


def test_a_number_is_charged_at_start_and_once_each_local_month(
    client: TestClient, owner: dict[str, str], container: Container
) -> None:
    started = client.post(f"{BASE}/numbers", json={"number": "+919800000001"}, headers=owner)
    assert started.status_code == 201, started.text
    assert started.json()["price"] == "500.00"
    assert started.json()["next_charge_at"] == "2026-11-30T18:30:00Z"
    assert available(client) == "2500.00"
    container.scheduler.advance(int((DECEMBER_IST - START).total_seconds()) - 1)
    assert available(client) == "2500.00"  # one second before the local month starts
    container.scheduler.advance(1)
    assert available(client) == "2000.00"
    container.scheduler.advance(3600)
    assert charges(container, "number") == ["+919800000001:2026-11", "+919800000001:2026-12"]
    again = client.post(f"{BASE}/numbers", json={"number": "+919800000001"}, headers=owner)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_active"
    ended = client.delete(f"{BASE}/numbers/+919800000001", headers=owner)
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    container.scheduler.advance(40 * 86400)
    assert available(client) == "2000.00"  # no charge after it ended
    listed = client.get(f"{BASE}/numbers", headers=owner).json()["data"]
    assert [(n["id"], n["status"]) for n in listed] == [("+919800000001", "ended")]
    assert verify(container.db) == []


def test_months_missed_while_the_server_was_down_are_charged_once_each(
    client: TestClient, owner: dict[str, str], container: Container, clock: ManualClock
) -> None:
    client.post(f"{BASE}/agents", json={"agent_id": "asha"}, headers=owner)
    assert available(client) == "1800.00"
    clock.set(DECEMBER_IST + timedelta(days=62))  # down from November to February
    container.scheduler.run_due()
    container.scheduler.run_due()  # running twice charges nothing more
    assert charges(container, "agent_seat") == [
        "asha:2026-11",
        "asha:2026-12",
        "asha:2027-01",
        "asha:2027-02",
    ]
    # renewals are owed: the last one overran the balance, explicitly
    balance = client.get(f"{BASE}/balance", headers=ADMIN).json()
    assert balance["available_balance"] == "-1800.00"
    assert balance["outbound_allowed"] is False
    assert verify(container.db) == []


def test_starting_needs_the_money_and_bad_numbers_are_refused(
    client: TestClient, owner: dict[str, str]
) -> None:
    bad = client.post(f"{BASE}/numbers", json={"number": "not-a-number"}, headers=owner)
    assert bad.status_code == 422
    for n in range(6):
        client.post(f"{BASE}/numbers", json={"number": f"+91980000000{n}"}, headers=owner)
    refused = client.post(f"{BASE}/numbers", json={"number": "+919800000009"}, headers=owner)
    assert refused.status_code == 402
    missing = client.delete(f"{BASE}/numbers/+910000000000", headers=owner)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "subscription_not_found"


def test_agent_sessions_give_agent_hours(
    client: TestClient, owner: dict[str, str], container: Container, clock: ManualClock
) -> None:
    client.post(f"{BASE}/agents", json={"agent_id": "ravi"}, headers=owner)
    clock.advance(4 * 3600)
    platform = client.post(f"{BASE}/api-keys", json={"role": "platform"}, headers=ADMIN)
    headers = {"Authorization": f"Bearer {platform.json()['token']}"}
    session = {"started_at": "2026-11-28T05:00:00Z", "ended_at": "2026-11-28T07:30:00Z"}
    recorded = client.post(f"{BASE}/agents/ravi/sessions", json=session, headers=headers)
    assert recorded.status_code == 201, recorded.text
    assert recorded.json() == {"agent_id": "ravi", "duration_seconds": 9000}
    with container.db.read() as conn:
        hours = conn.execute(
            sa.select(usage_rollups.c.duration_seconds).where(usage_rollups.c.sub_type == "session")
        ).scalar()
    assert hours == 9000
    future = {"started_at": "2026-11-28T09:00:00Z", "ended_at": "2026-11-28T10:00:00Z"}
    assert (
        client.post(f"{BASE}/agents/ravi/sessions", json=future, headers=headers).status_code == 422
    )
    unknown = client.post(f"{BASE}/agents/nobody/sessions", json=session, headers=headers)
    assert unknown.status_code == 404
    assert verify(container.db) == []

"""Rates and SMS charging over HTTP, on both engines: the balance moves as messages are
sent, usage is recorded with its rollup in the same transaction, and money never goes
below zero."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN
from usagewatch.adapters.db.schema import usage_records, usage_rollups
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.domain.rating import SmsType
from usagewatch.service.verify import verify


@pytest.fixture
def platform(client: TestClient) -> dict[str, str]:
    assert (
        client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN).status_code
        == 201
    )
    credit = {"type": "paid", "amount": "1.00"}
    assert client.post("/v1/accounts/acme/credits", json=credit, headers=ADMIN).status_code == 201
    key = client.post("/v1/accounts/acme/api-keys", json={"role": "platform"}, headers=ADMIN)
    return {"Authorization": f"Bearer {key.json()['token']}"}


def _sms(client: TestClient, headers: dict[str, str], sid: str, **fields: Any) -> Any:
    body = {"sms_sid": sid, "type": "transactional", "to": "+919800000001", **fields}
    return client.post("/v1/accounts/acme/sms", json=body, headers=headers)


def test_rates_default_then_override(client: TestClient, platform: dict[str, str]) -> None:
    rates = client.get("/v1/accounts/acme/rates", headers=platform).json()
    assert rates["voice"] == {
        "pulse_seconds": 60,
        "outbound_per_pulse": "0.60",
        "inbound_per_pulse": "0.30",
    }
    assert rates["sms"]["transactional"] == "0.20"
    put = client.put(
        "/v1/accounts/acme/rates", json={"sms": {"transactional": "0.1234"}}, headers=ADMIN
    )
    assert put.status_code == 200, put.text
    assert put.json()["sms"] == {
        "transactional": "0.1234",
        "promotional": "0.25",
        "service": "0.15",
    }
    assert client.get("/v1/accounts/acme/rates", headers=ADMIN).json() == put.json()
    refused = client.put("/v1/accounts/acme/rates", json={"sms": {}}, headers=platform)
    assert refused.status_code == 403
    bad = client.put("/v1/accounts/acme/rates", json={"sms": {"transactional": 1}}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "money_must_be_string"
    negative = client.put(
        "/v1/accounts/acme/rates", json={"number_rental_monthly": "-1.00"}, headers=ADMIN
    )
    assert negative.status_code == 422 and negative.json()["error"]["code"] == "invalid_rate"


def test_sms_charges_units_times_price_and_stops_at_zero(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    # 1.00 available, 0.20 per unit: 5 one-unit messages, then 402.
    for n in range(5):
        sent = _sms(client, platform, f"SM{n}", body="hello")
        assert sent.status_code == 201, sent.text
        assert sent.json() == {
            "sms_sid": f"SM{n}",
            "type": "transactional",
            "units": 1,
            "price": "0.20",
            "status": "sent",
        }
    denied = _sms(client, platform, "SM5", body="hello")
    assert denied.status_code == 402
    assert denied.json()["error"]["code"] == "insufficient_balance"
    balance = client.get("/v1/accounts/acme/balance", headers=platform).json()
    assert balance["available_balance"] == "0.00"
    assert balance["today_usage"] == "1.00"
    assert balance["outbound_allowed"] is False
    with container.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(usage_records)).scalar() == 5
        rollup = conn.execute(sa.select(usage_rollups)).one()
    assert (rollup.records, rollup.quantity, rollup.cost_micros) == (5, 5, 1_000_000)
    assert verify(container.db) == []


def test_sms_units_follow_segmentation_and_explicit_units(
    client: TestClient, platform: dict[str, str]
) -> None:
    client.post("/v1/accounts/acme/credits", json={"type": "paid", "amount": "10"}, headers=ADMIN)
    assert _sms(client, platform, "A", body="x" * 161).json()["units"] == 2  # GSM-7: 153/unit
    assert _sms(client, platform, "B", body="₹" * 71).json()["units"] == 2  # UCS-2: 67/unit
    three = _sms(client, platform, "C", units=3, type="promotional")
    assert three.json()["units"] == 3 and three.json()["price"] == "0.75"
    both = _sms(client, platform, "D", units=1, body="hi")
    assert both.status_code == 422
    unknown = _sms(client, platform, "E", body="hi", type="marketing")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_sms_type"


@pytest.mark.parametrize("units", [True, 2.0, "2", [2]])
def test_counts_are_json_integers_not_lookalikes(
    client: TestClient, platform: dict[str, str], units: Any
) -> None:
    """`true` is not 1 unit, nor 2.0 or "2" two: the API refuses what is not an integer
    (its models are strict), and nothing is charged."""
    answer = _sms(client, platform, "L1", units=units)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["error"]["field"] == "units"
    call = {"call_sid": "CL1", "direction": "outbound", "to": "+919800000002"}
    assert client.post("/v1/accounts/acme/calls", json=call, headers=platform).status_code == 201
    end = {"status": "completed", "duration_seconds": 61.0}
    ended = client.post("/v1/accounts/acme/calls/CL1/end", json=end, headers=platform)
    assert ended.status_code == 422 and ended.json()["error"]["field"] == "duration_seconds"
    balance = client.get("/v1/accounts/acme/balance", headers=ADMIN).json()
    assert (balance["paid_credits"], balance["today_usage"]) == ("1.00", "0.00")  # a hold only


def test_sms_sid_is_idempotent(client: TestClient, platform: dict[str, str]) -> None:
    first = _sms(client, platform, "SMX", body="hello")
    again = _sms(client, platform, "SMX", body="hello")
    assert again.status_code == 201 and again.json() == first.json()
    assert client.get("/v1/accounts/acme/balance", headers=ADMIN).json()["today_usage"] == "0.20"
    other = _sms(client, platform, "SMX", body="hello world, longer")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_a_replay_answers_even_when_money_ran_out_and_a_refusal_leaves_nothing(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    first = _sms(client, platform, "SMR", units=5)  # the whole 1.00
    assert first.status_code == 201
    again = _sms(client, platform, "SMR", units=5)
    assert again.status_code == 201 and again.json() == first.json()
    assert _sms(client, platform, "SMR", units=4).status_code == 409
    assert _sms(client, platform, "SMN", body="hi").status_code == 402
    client.post("/v1/accounts/acme/credits", json={"type": "paid", "amount": "1"}, headers=ADMIN)
    retried = _sms(client, platform, "SMN", body="hi")  # the refusal left no record behind
    assert retried.status_code == 201 and retried.json()["price"] == "0.20"
    assert client.get("/v1/accounts/acme/balance", headers=ADMIN).json()["today_usage"] == "1.20"
    assert verify(container.db) == []


def test_delivery_reports_feed_the_rollup(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    _sms(client, platform, "S1", body="a")
    _sms(client, platform, "S2", body="b")
    done = client.post(
        "/v1/accounts/acme/sms/S1/status", json={"status": "delivered"}, headers=platform
    )
    assert done.status_code == 200 and done.json()["status"] == "delivered"
    client.post("/v1/accounts/acme/sms/S1/status", json={"status": "delivered"}, headers=platform)
    with container.db.read() as conn:
        assert conn.execute(sa.select(usage_rollups.c.delivered)).scalar() == 1
    missing = client.post(
        "/v1/accounts/acme/sms/NOPE/status", json={"status": "delivered"}, headers=platform
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "sms_not_found"
    bad = client.post("/v1/accounts/acme/sms/S2/status", json={"status": "lost"}, headers=platform)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_status"


def test_only_platform_keys_and_the_operator_charge_usage(
    client: TestClient, platform: dict[str, str]
) -> None:
    viewer = client.post("/v1/accounts/acme/api-keys", json={"role": "viewer"}, headers=ADMIN)
    headers = {"Authorization": f"Bearer {viewer.json()['token']}"}
    assert _sms(client, headers, "V1", body="x").status_code == 403


def test_verify_recomputes_rollups_from_usage_records(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    _sms(client, platform, "R1", body="a", consumer="app-1")
    client.post("/v1/accounts/acme/sms/R1/status", json={"status": "delivered"}, headers=platform)
    assert verify(container.db) == []
    with container.db.engine.begin() as conn:
        conn.execute(sa.update(usage_rollups).values(cost_micros=usage_rollups.c.cost_micros + 1))
    (problem,) = verify(container.db)
    assert "rollup" in problem and "app-1" in problem


def test_whatsapp_conversations_are_priced_by_category(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    body = {"conversation_id": "wa-1", "category": "marketing", "consumer": "crm"}
    first = client.post("/v1/accounts/acme/whatsapp/conversations", json=body, headers=platform)
    assert first.status_code == 201, first.text
    assert first.json() == {"conversation_id": "wa-1", "category": "marketing", "price": "0.80"}
    again = client.post("/v1/accounts/acme/whatsapp/conversations", json=body, headers=platform)
    assert again.json() == first.json()
    assert client.get("/v1/accounts/acme/balance", headers=ADMIN).json()["today_usage"] == "0.80"
    short = {"conversation_id": "wa-2", "category": "marketing"}
    denied = client.post("/v1/accounts/acme/whatsapp/conversations", json=short, headers=platform)
    assert denied.status_code == 402  # 0.20 left
    bad = {"conversation_id": "wa-3", "category": "spam"}
    invalid = client.post("/v1/accounts/acme/whatsapp/conversations", json=bad, headers=platform)
    assert invalid.json()["error"]["code"] == "invalid_whatsapp_category"
    assert verify(container.db) == []


def test_a_rate_change_applies_to_the_next_charge_and_databases_never_share_cached_cards(
    container: Container, sqlite_template: Path, tmp_path: Path, clock: ManualClock
) -> None:
    """Charges read the rate card from a per-process cache keyed by the account's
    config_version; a PUT bumps it, so the next charge pays the new price. Two databases
    in one process, each with an account `acme` at the same config_version but different
    prices, each charge their own."""
    other_path = tmp_path / "other.db"
    shutil.copyfile(sqlite_template, other_path)
    other = build(
        Settings(database_url=f"sqlite:///{other_path}", test_clock=True), ADMIN_TOKEN, clock=clock
    )
    try:
        for c, price in ((container, "0.11"), (other, "0.22")):
            c.accounts.create_account("Acme", "acme")
            c.ledger.add_credit("acme", LotKind.PAID, Money.parse("100.00"))
            c.rates.replace_overrides("acme", {"sms": {SmsType.TRANSACTIONAL: Money.parse(price)}})
        first = container.usage.charge_sms(
            "acme", "s1", "transactional", to="+919800000001", units=1
        )
        second = other.usage.charge_sms("acme", "s1", "transactional", to="+919800000001", units=1)
        assert (first.price_micros, second.price_micros) == (110_000, 220_000)
        container.rates.replace_overrides(
            "acme", {"sms": {SmsType.TRANSACTIONAL: Money.parse("0.33")}}
        )
        third = container.usage.charge_sms(
            "acme", "s2", "transactional", to="+919800000001", units=1
        )
        assert third.price_micros == 330_000
        assert verify(container.db) == [] and verify(other.db) == []
    finally:
        other.close()

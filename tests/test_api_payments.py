"""Payments and auto-recharge over HTTP, on both engines: the contract's shapes, replays of
the Idempotency-Key, roles, bad input with stable codes, and an auto-recharge that follows
the test clock through `POST /v1/test-clock/advance`."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN
from usagewatch.adapters.payments import SimulatedGateway
from usagewatch.bootstrap import Container
from usagewatch.service.verify import verify

BASE = "/v1/accounts/acme"
RULE = {"enabled": True, "threshold": "50.00", "amount": "200.00", "max_recharges_per_day": 2}


@pytest.fixture
def keys(client: TestClient) -> dict[str, dict[str, str]]:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    client.post("/v1/accounts", json={"id": "globex", "name": "Globex"}, headers=ADMIN)
    body = {"type": "paid", "amount": "100.00"}
    assert client.post(f"{BASE}/credits", json=body, headers=ADMIN).status_code == 201
    out = {}
    for role in ("owner", "viewer", "platform"):
        key = client.post(f"{BASE}/api-keys", json={"role": role}, headers=ADMIN).json()
        out[role] = {"Authorization": f"Bearer {key['token']}"}
    key = client.post("/v1/accounts/globex/api-keys", json={"role": "owner"}, headers=ADMIN)
    out["globex_owner"] = {"Authorization": f"Bearer {key.json()['token']}"}
    return out


def pay(client: TestClient, headers: dict[str, str], key: str | None, amount: Any) -> Any:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return client.post(f"{BASE}/payments", json={"amount": amount}, headers={**headers, **extra})


def error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def available(client: TestClient) -> str:
    return str(client.get(f"{BASE}/balance", headers=ADMIN).json()["available_balance"])


def test_an_owner_adds_credit_through_the_gateway(client: TestClient, keys: dict) -> None:
    response = pay(client, keys["owner"], "order-1", "250.00")
    assert response.status_code == 201
    body = response.json()
    assert body["payment_id"].startswith("pay_") and body["credit_id"].startswith("cr_")
    assert (body["amount"], body["status"], body["kind"]) == ("250.00", "succeeded", "manual")
    assert available(client) == "350.00"
    replay = pay(client, keys["owner"], "order-1", "250.00")
    assert replay.status_code == 201 and replay.json() == body
    assert available(client) == "350.00"
    error(pay(client, keys["owner"], "order-1", "300.00"), 409, "idempotency_key_reused")
    credits = client.get(f"{BASE}/credits", headers=ADMIN).json()["data"]
    assert credits[0]["id"] == body["credit_id"] and credits[0]["type"] == "paid"
    one = client.get(f"{BASE}/payments/{body['payment_id']}", headers=keys["viewer"])
    assert one.status_code == 200 and one.json() == body


def test_a_declined_payment(client: TestClient, container: Container, keys: dict) -> None:
    assert isinstance(container.payments.gateway, SimulatedGateway)
    container.payments.gateway.outcome = "decline"
    body = pay(client, ADMIN, "order-1", "10.00").json()
    assert (body["status"], body["credit_id"]) == ("declined", None)
    assert "declined" in body["error"] and available(client) == "100.00"


def test_a_pending_payment_settles_as_the_test_clock_moves(
    client: TestClient, container: Container, keys: dict
) -> None:
    assert isinstance(container.payments.gateway, SimulatedGateway)
    container.payments.gateway.outcome = "timeout"
    body = pay(client, keys["owner"], "order-1", "10.00").json()
    assert (body["status"], body["next_attempt_at"]) == ("pending", "2026-11-28T04:30:30Z")
    container.payments.gateway.outcome = "succeed"
    client.post("/v1/test-clock/advance", json={"seconds": 30}, headers=ADMIN)
    now = client.get(f"{BASE}/payments/{body['payment_id']}", headers=ADMIN).json()
    assert (now["status"], now["attempts"]) == ("succeeded", 2)
    replay = pay(client, keys["owner"], "order-1", "10.00").json()
    assert replay["status"] == "succeeded" and available(client) == "110.00"


def test_who_may_pay(client: TestClient, keys: dict) -> None:
    error(pay(client, keys["viewer"], "k", "1.00"), 403, "forbidden")
    error(pay(client, keys["platform"], "k", "1.00"), 403, "forbidden")
    error(pay(client, keys["globex_owner"], "k", "1.00"), 404, "account_not_found")
    other = client.get("/v1/accounts/globex/payments/pay_1", headers=keys["owner"])
    error(other, 404, "account_not_found")
    assert client.get(f"{BASE}/payments", headers=keys["viewer"]).status_code == 200
    assert client.get(f"{BASE}/auto-recharge", headers=keys["viewer"]).status_code == 200
    put = client.put(f"{BASE}/auto-recharge", json=RULE, headers=keys["viewer"])
    error(put, 403, "forbidden")
    assert client.put(f"{BASE}/auto-recharge", json=RULE, headers=keys["owner"]).status_code == 200


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0", "amount_not_positive"),
        ("-5.00", "amount_not_positive"),
        ("0.0000001", "amount_too_precise"),
        ("12.345678", "amount_finer_than_currency"),  # a card is charged in whole paise
        ("10.001", "amount_finer_than_currency"),
        ("1000000000.01", "amount_too_large"),
        (5, "money_must_be_string"),
        ("1e3", "invalid_amount"),
    ],
)
def test_bad_payment_amounts(client: TestClient, keys: dict, amount: Any, code: str) -> None:
    response = pay(client, keys["owner"], "k", amount)
    error(response, 422, code)
    assert response.json()["error"]["field"] == "amount"
    assert client.get(f"{BASE}/payments", headers=ADMIN).json()["data"] == []


def test_a_payment_needs_an_idempotency_key(client: TestClient, keys: dict) -> None:
    error(pay(client, keys["owner"], None, "1.00"), 400, "missing_idempotency_key")
    error(pay(client, keys["owner"], "x" * 256, "1.00"), 400, "invalid_idempotency_key")
    error(client.get(f"{BASE}/payments/pay_x", headers=ADMIN), 404, "payment_not_found")
    error(client.get(f"{BASE}/payments/pay_99", headers=ADMIN), 404, "payment_not_found")


def test_payments_are_listed_newest_first_in_pages(client: TestClient, keys: dict) -> None:
    ids = [
        pay(client, keys["owner"], f"k{i}", f"{i + 1}.00").json()["payment_id"] for i in range(5)
    ]
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = client.get(f"{BASE}/payments", params=params, headers=keys["viewer"]).json()
        seen += [p["payment_id"] for p in page["data"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert seen == list(reversed(ids))


def test_the_auto_recharge_rule(client: TestClient, keys: dict) -> None:
    empty = client.get(f"{BASE}/auto-recharge", headers=keys["viewer"]).json()
    assert empty["enabled"] is False and empty["threshold"] is None
    saved = client.put(f"{BASE}/auto-recharge", json=RULE, headers=keys["owner"])
    assert saved.status_code == 200
    body = saved.json()
    assert {k: body[k] for k in RULE} == RULE
    assert (body["recharges_today"], body["pending_payment_id"], body["paused_until"]) == (
        0,
        None,
        None,
    )
    assert client.get(f"{BASE}/auto-recharge", headers=ADMIN).json() == body
    default = {k: v for k, v in RULE.items() if k != "max_recharges_per_day"}
    put = client.put(f"{BASE}/auto-recharge", json=default, headers=ADMIN)
    assert put.json()["max_recharges_per_day"] == 3


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"threshold": "0"}, "amount_not_positive", "threshold"),
        ({"threshold": "-1.00"}, "amount_not_positive", "threshold"),
        ({"amount": "0.00"}, "amount_not_positive", "amount"),
        ({"amount": "-10"}, "amount_not_positive", "amount"),
        ({"amount": "2000000000"}, "amount_too_large", "amount"),
        ({"amount": "500.005"}, "amount_finer_than_currency", "amount"),
        ({"threshold": "100.005"}, None, None),  # a threshold may be finer: nothing charges it
        ({"amount": 10}, "money_must_be_string", "amount"),
        ({"max_recharges_per_day": 0}, "invalid_max_recharges_per_day", "max_recharges_per_day"),
        ({"max_recharges_per_day": -1}, "invalid_max_recharges_per_day", "max_recharges_per_day"),
        ({"max_recharges_per_day": 101}, "invalid_max_recharges_per_day", "max_recharges_per_day"),
        ({"max_recharges_per_day": "x"}, "validation_error", "max_recharges_per_day"),
        ({"enabled": None}, "validation_error", "enabled"),
        ({"threshold": None}, "money_must_be_string", "threshold"),
        ({"surprise": 1}, "unknown_field", "surprise"),
    ],
)
def test_bad_rules(
    client: TestClient, keys: dict, change: dict, code: str | None, field: str | None
) -> None:
    response = client.put(f"{BASE}/auto-recharge", json={**RULE, **change}, headers=ADMIN)
    if code is None:
        assert response.status_code == 200, response.text
        return
    error(response, 422, code)
    assert response.json()["error"]["field"] == field
    assert client.get(f"{BASE}/auto-recharge", headers=ADMIN).json()["threshold"] is None


def test_a_rule_needs_its_threshold_and_amount(client: TestClient, keys: dict) -> None:
    response = client.put(f"{BASE}/auto-recharge", json={"enabled": True}, headers=ADMIN)
    error(response, 422, "missing_field")


def test_sms_across_the_threshold_recharge_once(
    client: TestClient, container: Container, keys: dict
) -> None:
    client.put(f"{BASE}/auto-recharge", json={**RULE, "threshold": "99.50"}, headers=ADMIN)
    for i in range(5):  # 100.00 -> 99.00 at 0.20 each: crosses at the third
        body = {"sms_sid": f"SM{i}", "type": "transactional", "to": "+919800000001", "units": 1}
        assert client.post(f"{BASE}/sms", json=body, headers=keys["platform"]).status_code == 201
    page = client.get(f"{BASE}/payments", headers=ADMIN).json()["data"]
    assert [(p["kind"], p["status"], p["amount"]) for p in page] == [("auto", "pending", "200.00")]
    rule = client.get(f"{BASE}/auto-recharge", headers=ADMIN).json()
    assert rule["pending_payment_id"] == page[0]["payment_id"]
    client.post("/v1/test-clock/advance", json={"seconds": 0}, headers=ADMIN)
    page = client.get(f"{BASE}/payments", headers=ADMIN).json()["data"]
    assert [(p["status"], p["attempts"]) for p in page] == [("succeeded", 1)]
    assert available(client) == "299.00"
    notices = client.get(f"{BASE}/notifications", headers=ADMIN).json()["data"]
    assert [n["event"] for n in notices] == ["auto_recharge_succeeded"]
    assert verify(container.db) == []

"""Batch ingest: per-event results in order, idempotent by natural id, overruns explicit,
all-or-nothing per batch, reconciled with the journal."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import ADMIN
from usagewatch.adapters.db.schema import usage_records, usage_rollups
from usagewatch.bootstrap import Container
from usagewatch.service.verify import verify

BASE = "/v1/accounts/acme"
AT = "2026-11-28T04:00:00Z"  # half an hour before the test clock's start


@pytest.fixture
def platform(client: TestClient) -> dict[str, str]:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    client.post(f"{BASE}/credits", json={"type": "paid", "amount": "2.00"}, headers=ADMIN)
    key = client.post(f"{BASE}/api-keys", json={"role": "platform"}, headers=ADMIN)
    return {"Authorization": f"Bearer {key.json()['token']}"}


def batch(client: TestClient, headers: dict[str, str], events: list[Any]) -> Any:
    response = client.post(f"{BASE}/usage/batch", json={"events": events}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["results"]


EVENTS: list[Any] = [
    {"kind": "call", "call_sid": "C1", "direction": "outbound", "status": "completed",
     "duration_seconds": 61, "occurred_at": AT, "consumer": "dialer"},
    {"kind": "sms", "sms_sid": "S1", "type": "transactional", "to": "+919800000001",
     "body": "hi", "occurred_at": AT},
    {"kind": "whatsapp", "conversation_id": "W1", "category": "utility", "occurred_at": AT},
    {"kind": "call", "call_sid": "C2", "direction": "outbound", "status": "busy",
     "duration_seconds": 0, "occurred_at": AT},
    {"kind": "sms", "sms_sid": "S2", "type": "bulk", "to": "+9198", "body": "x", "occurred_at": AT},
    {"kind": "sms", "sms_sid": "S3", "type": "service", "units": 2, "occurred_at": "tomorrow"},
    "not an object",
    {"kind": "call", "call_sid": "C3", "direction": "outbound", "status": "completed",
     "duration_seconds": 600, "occurred_at": AT},
]  # fmt: skip


def test_results_in_order_and_money_charged_even_when_short(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    results = batch(client, platform, EVENTS)
    assert [(r["id"], r["status"], r.get("price")) for r in results] == [
        ("C1", "applied", "1.20"),
        ("S1", "applied", "0.20"),
        ("W1", "applied", "0.35"),
        ("C2", "applied", "0.00"),
        ("S2", "rejected", None),
        ("S3", "rejected", None),
        (None, "rejected", None),
        ("C3", "applied", "6.00"),
    ]
    assert results[4]["error"]["code"] == "invalid_sms_type"
    assert results[5]["error"]["code"] == "invalid_timestamp"
    balance = client.get(f"{BASE}/balance", headers=ADMIN).json()
    # 2.00 - 7.75: the shortfall is an explicit overrun that blocks outbound
    assert balance["available_balance"] == "-5.75"
    assert balance["outbound_allowed"] is False
    assert verify(container.db) == []
    with container.db.read() as conn:
        assert conn.execute(sa.select(sa.func.sum(usage_rollups.c.cost_micros))).scalar() == (
            7_750_000
        )


def test_replays_are_duplicates_and_conflicts_are_rejected(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    batch(client, platform, EVENTS[:3])
    changed = dict(EVENTS[1], body="hello again")
    again = batch(client, platform, [*EVENTS[:3], changed, EVENTS[1]])
    assert [r["status"] for r in again] == [
        "duplicate",
        "duplicate",
        "duplicate",
        "rejected",
        "duplicate",
    ]
    assert again[3]["error"]["code"] == "idempotency_key_reused"
    assert client.get(f"{BASE}/balance", headers=ADMIN).json()["today_usage"] == "1.75"
    assert verify(container.db) == []


def test_a_batch_mixing_known_and_new_ids_charges_only_the_new(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    batch(client, platform, EVENTS[:2])  # C1 1.20 + S1 0.20
    new_sms = dict(EVENTS[1], sms_sid="S9")
    again = batch(client, platform, [EVENTS[0], new_sms, EVENTS[1], EVENTS[2]])
    assert [(r["id"], r["status"], r.get("price")) for r in again] == [
        ("C1", "duplicate", None),
        ("S9", "applied", "0.20"),
        ("S1", "duplicate", None),
        ("W1", "applied", "0.35"),
    ]
    assert client.get(f"{BASE}/balance", headers=ADMIN).json()["today_usage"] == "1.95"
    assert verify(container.db) == []


def test_the_same_id_twice_in_one_batch_is_charged_once(
    client: TestClient, platform: dict[str, str]
) -> None:
    results = batch(client, platform, [EVENTS[1], EVENTS[1]])
    assert [r["status"] for r in results] == ["applied", "duplicate"]


def test_limits(client: TestClient, platform: dict[str, str]) -> None:
    empty = client.post(f"{BASE}/usage/batch", json={"events": []}, headers=platform)
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "batch_empty"
    many = [dict(EVENTS[1], sms_sid=f"M{i}") for i in range(10_001)]
    over = client.post(f"{BASE}/usage/batch", json={"events": many}, headers=platform)
    assert over.status_code == 422 and over.json()["error"]["code"] == "batch_too_large"
    future = dict(EVENTS[1], sms_sid="F1", occurred_at="2026-11-29T04:00:00Z")
    assert batch(client, platform, [future])[0]["error"]["code"] == "occurred_in_future"
    extra = dict(EVENTS[2], conversation_id="W9", price="0.01")
    assert batch(client, platform, [extra])[0]["error"]["code"] == "unknown_field"


def test_a_failed_batch_leaves_nothing_behind(
    client: TestClient,
    platform: dict[str, str],
    container: Container,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from usagewatch.adapters.db import usage_store

    def crash(*_: Any) -> None:
        raise RuntimeError("the process died mid-batch")

    monkeypatch.setattr(usage_store, "add_rollups", crash)
    with pytest.raises(RuntimeError):
        container.batch.ingest("acme", EVENTS[:3])
    with container.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(usage_records)).scalar() == 0
    assert client.get(f"{BASE}/balance", headers=ADMIN).json()["available_balance"] == "2.00"
    assert verify(container.db) == []


def test_sms_may_come_with_their_delivery_status(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    sms = {"kind": "sms", "type": "transactional", "to": "+919800000001", "units": 1}
    events = [
        {**sms, "sms_sid": "D1", "status": "delivered", "occurred_at": AT},
        {**sms, "sms_sid": "D2", "status": "delivered", "occurred_at": AT},
        {**sms, "sms_sid": "D3", "status": "failed", "occurred_at": AT},
        {**sms, "sms_sid": "D4", "occurred_at": AT},  # no report yet: sent
        {**sms, "sms_sid": "D5", "status": "read", "occurred_at": AT},
    ]
    results = batch(client, platform, events)
    assert [r["status"] for r in results] == ["applied"] * 4 + ["rejected"]
    assert results[4]["error"]["code"] == "invalid_status"
    with container.db.read() as conn:
        rows = conn.execute(sa.select(usage_records.c.natural_id, usage_records.c.status)).all()
        statuses = {natural_id: status for natural_id, status in rows}
        assert statuses == {"D1": "delivered", "D2": "delivered", "D3": "failed", "D4": "sent"}
        rollup = sa.select(usage_rollups.c.records, usage_rollups.c.delivered)
        assert conn.execute(rollup).all() == [(4, 2)]
    report = client.get(
        f"{BASE}/reports/services?from=2026-11-28&to=2026-11-28", headers=ADMIN
    ).json()
    assert report["sms"]["delivered"] == 2 and report["sms"]["delivery_rate_percent"] == "50.00"
    # a later report moves the count as for any SMS; a replay of the batch changes nothing
    client.post(f"{BASE}/sms/D4/status", json={"status": "delivered"}, headers=platform)
    assert [r["status"] for r in batch(client, platform, events[:4])] == ["duplicate"] * 4
    with container.db.read() as conn:
        assert conn.execute(sa.select(usage_rollups.c.delivered)).scalar() == 3
    assert verify(container.db) == []


VALID = {
    "call": EVENTS[0],
    "sms": {k: v for k, v in EVENTS[1].items() if k != "body"} | {"units": 1, "status": "sent"},
    "whatsapp": EVENTS[2],
}
ID_FIELDS = {"call": "call_sid", "sms": "sms_sid", "whatsapp": "conversation_id"}
ODD_VALUES: list[Any] = [["x"], {"a": 1}, 1.5, True, None, -1, "x" * 200, ""]


def test_every_field_of_every_kind_with_a_value_of_the_wrong_shape_is_rejected_alone(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    """Lists, objects, floats, booleans, nulls, negatives and overlong strings in any field
    (JSON can carry them all) give that event its own result with a stable code; the batch
    still answers 200 and charges its good events."""
    events: list[Any] = [{"kind": ["sms"]}, {"kind": {"a": 1}}, ["not", "an", "object"]]
    for kind, valid in VALID.items():
        for field in valid:
            for n, value in enumerate(ODD_VALUES):
                event = dict(valid, **{ID_FIELDS[kind]: f"{kind}-{field}-{n}"})
                event[field] = value
                events.append(event)
    good = [dict(valid, **{ID_FIELDS[kind]: f"good-{kind}"}) for kind, valid in VALID.items()]
    results = batch(client, platform, events + good)
    assert len(results) == len(events) + len(good)
    assert [r["status"] for r in results[len(events) :]] == ["applied"] * 3
    changed = [None] * 3 + [f for v in VALID.values() for f in v for _ in ODD_VALUES]
    for event, result, field in zip(events, results, changed, strict=False):
        assert result["status"] in {"applied", "rejected"}, (event, result)
        if result["status"] == "rejected":
            # the error names the field at fault (units and body stand or fall together)
            if field is not None:
                assert result["error"]["field"] in {field, "body"}, (event, result)
            assert result["error"]["code"] in {
                "validation_error",
                "missing_field",
                "unknown_field",
                "invalid_status",
                "invalid_timestamp",
                "invalid_duration",
                "invalid_units",
                "invalid_sms_type",
                "invalid_call_direction",
                "invalid_whatsapp_category",
                "invalid_number",
            }, (event, result)
    applied = [e for e, r in zip(events, results, strict=False) if r["status"] == "applied"]
    # only a null in an optional text field (or an empty consumer/campaign) is still valid
    assert all(isinstance(e, dict) for e in applied)
    assert verify(container.db) == []

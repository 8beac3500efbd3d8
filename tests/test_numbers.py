"""Malformed numbers on usage are refused with `invalid_number` and leave nothing behind:
single SMS, call authorization and batch events share one check (domain/numbers.py)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ADMIN
from usagewatch.adapters.db.schema import journal_entries, usage_records
from usagewatch.bootstrap import Container
from usagewatch.domain.errors import Invalid
from usagewatch.domain.numbers import NUMBER, check_number, check_sender
from usagewatch.service.verify import verify

BASE = "/v1/accounts/acme"
AT = "2026-11-28T04:00:00Z"
GOOD_NUMBERS = ["+919800000001", "09800000001", "56767", "+1234", "123456789012345"]
BAD_NUMBERS: list[Any] = [
    "",
    "+1",  # too short
    "12",
    "1234567890123456",  # 16 digits: longer than E.164 allows
    "+91 98000 00001",  # spaces
    "+91-9800000001",
    "++919800000001",
    "919800000001+",
    "=HYPERLINK(1)",  # a formula never reaches an export
    "EXOTEL",  # a sender ID is not a number to call
    "+919800000001\n",
    "٩٨٠٠٠",  # Arabic-Indic digits
    ["+919800000001"],
    919800000001,
]
GOOD_SENDERS = ["EXOTEL", "Acme Co", "AB-123", "X", "ABCDEFGHIJK", *GOOD_NUMBERS]
BAD_SENDERS: list[Any] = [
    "",
    " EXOTEL",
    "EXOTEL ",
    "ABCDEFGHIJKL",  # 12 characters
    "-ACME",
    "ACME!",
    "AC\tME",
    "ÄCME",
    "+1",
    None,
    12345,
]


@pytest.mark.parametrize("value", GOOD_NUMBERS)
def test_numbers_the_platform_dials_are_accepted(value: str) -> None:
    assert check_number(value, "to") == value


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_malformed_numbers_are_refused_with_their_field(value: Any) -> None:
    with pytest.raises(Invalid) as refused:
        check_number(value, "to")
    assert (refused.value.code, refused.value.field) == ("invalid_number", "to")


@pytest.mark.parametrize("value", GOOD_SENDERS)
def test_an_sms_sender_is_a_number_or_a_sender_id(value: str) -> None:
    assert check_sender(value) == value


@pytest.mark.parametrize("value", BAD_SENDERS)
def test_malformed_senders_are_refused(value: Any) -> None:
    with pytest.raises(Invalid) as refused:
        check_sender(value)
    assert (refused.value.code, refused.value.field) == ("invalid_number", "from")


@given(st.text(max_size=20))
def test_a_number_is_accepted_exactly_when_it_is_a_plus_and_3_to_15_ascii_digits(
    text: str,
) -> None:
    digits = text.removeprefix("+")
    expected = 3 <= len(digits) <= 15 and all(c in "0123456789" for c in digits)
    try:
        check_number(text, "to")
    except Invalid:
        assert not expected
    else:
        assert expected and NUMBER.fullmatch(text)


# -- over HTTP, on both engines ------------------------------------------------------------
@pytest.fixture
def platform(client: TestClient) -> dict[str, str]:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    client.post(f"{BASE}/credits", json={"type": "paid", "amount": "10.00"}, headers=ADMIN)
    key = client.post(f"{BASE}/api-keys", json={"role": "platform"}, headers=ADMIN)
    return {"Authorization": f"Bearer {key.json()['token']}"}


def _counts(container: Container) -> tuple[int, int]:
    with container.db.engine.connect() as conn:
        return (
            conn.execute(sa.select(sa.func.count()).select_from(usage_records)).scalar_one(),
            conn.execute(sa.select(sa.func.count()).select_from(journal_entries)).scalar_one(),
        )


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_number", field)


def test_an_sms_with_a_malformed_number_is_refused_and_charges_nothing(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    before = _counts(container)
    balance = client.get(f"{BASE}/balance", headers=platform).json()
    sms = {"sms_sid": "S1", "type": "transactional", "units": 1}
    _refused(client.post(f"{BASE}/sms", json={**sms, "to": "+1"}, headers=platform), "to")
    _refused(client.post(f"{BASE}/sms", json={**sms, "to": "call me"}, headers=platform), "to")
    bad_from = {**sms, "to": "+919800000001", "from": "=cmd|' /C calc'!A0"}
    _refused(client.post(f"{BASE}/sms", json=bad_from, headers=platform), "from")
    assert _counts(container) == before
    assert client.get(f"{BASE}/balance", headers=platform).json() == balance
    # the sid was not used up: the same sid with good numbers is charged
    good = {**sms, "to": "09800000001", "from": "EXOTEL"}
    assert client.post(f"{BASE}/sms", json=good, headers=platform).status_code == 201
    assert verify(container.db) == []


def test_a_call_with_a_malformed_number_gets_no_hold(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    before = _counts(container)
    call = {"call_sid": "C1", "direction": "outbound"}
    for field in ("from", "to"):
        bad = {**call, field: "+91 (98) 0000"}
        _refused(client.post(f"{BASE}/calls", json=bad, headers=platform), field)
    assert _counts(container) == before
    balance = client.get(f"{BASE}/balance", headers=platform).json()
    assert balance["reserved_amount"] == "0.00"
    # numbers stay optional on a call (a withheld caller id is simply left out)
    started = client.post(f"{BASE}/calls", json={**call, "to": "+919800000001"}, headers=platform)
    assert started.status_code == 201, started.text


def test_a_batch_rejects_events_with_malformed_numbers_alone(
    client: TestClient, platform: dict[str, str], container: Container
) -> None:
    sms = {"kind": "sms", "type": "transactional", "units": 1, "occurred_at": AT}
    call = {"kind": "call", "direction": "outbound", "status": "completed", "occurred_at": AT}
    events = [
        {**sms, "sms_sid": "S1", "to": "+919800000001", "from": "ACME-IN"},
        {**sms, "sms_sid": "S2", "to": "+1"},
        {**sms, "sms_sid": "S3", "to": "+919800000001", "from": "not a sender!"},
        {**sms, "sms_sid": "S4"},  # an SMS's `to` is required
        {**call, "call_sid": "C1", "duration_seconds": 61, "to": "+919800000001"},
        {**call, "call_sid": "C2", "duration_seconds": 61, "from": "ACME"},  # not a number
        {**call, "call_sid": "C3", "duration_seconds": 61},  # numbers optional on a call
    ]
    response = client.post(f"{BASE}/usage/batch", json={"events": events}, headers=platform)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    outcome = [
        (r["status"], r.get("error", {}).get("code"), r.get("error", {}).get("field"))
        for r in results
    ]
    assert outcome == [
        ("applied", None, None),
        ("rejected", "invalid_number", "to"),
        ("rejected", "invalid_number", "from"),
        ("rejected", "missing_field", "to"),
        ("applied", None, None),
        ("rejected", "invalid_number", "from"),
        ("applied", None, None),
    ]
    with container.db.engine.connect() as conn:
        stored = conn.execute(sa.select(usage_records.c.natural_id)).scalars().all()
    assert sorted(stored) == ["C1", "C3", "S1"]
    assert verify(container.db) == []

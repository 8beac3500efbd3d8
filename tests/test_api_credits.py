"""Credits, balance and ledger over HTTP (API.md "Credits, balance, ledger").

Every invalid input gets its documented status and code, and leaves no trace: after each
rejected request the balance, the journal and the credit lots are exactly as before.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.money import Money

BODY_LIMIT = 1024  # the smallest limit Settings allows; this module runs with it
MONEY = re.compile(r"^-?[0-9]+\.[0-9]{2,6}$")
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
NOW = "2026-11-28T04:30:00Z"  # conftest.START
LATER = "2026-12-31T18:30:00Z"
BALANCE_FIELDS = {
    "currency",
    "available_balance",
    "paid_credits",
    "promotional_credits",
    "promotional_expiries",
    "reserved_amount",
    "today_usage",
    "month_usage",
    "outbound_allowed",
    "outbound_block_reason",
    "as_of",
}
BALANCE_MONEY = {
    "available_balance",
    "paid_credits",
    "promotional_credits",
    "reserved_amount",
    "today_usage",
    "month_usage",
}
CREDIT_FIELDS = {"id", "type", "amount", "remaining", "expires_at", "created_at"}
LEDGER_FIELDS = {"id", "type", "amount", "balance_after", "reference", "created_at"}


@pytest.fixture
def container(container: Container) -> Container:
    """The shared container with the request body limit at its minimum, so that the
    413 tests need only small bodies."""
    settings = container.settings.model_copy(update={"max_request_body_bytes": BODY_LIMIT})
    return dataclasses.replace(container, settings=settings)


@pytest.fixture
def acme(client: TestClient) -> str:
    response = client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return "acme"


@pytest.fixture
def funded(client: TestClient, acme: str) -> str:
    """acme with 50.00 paid and 25.00 promotional credit, so 'unchanged' means something."""
    add(client, acme, {"type": "paid", "amount": "50.00"})
    add(client, acme, {"type": "promotional", "amount": "25.00", "expires_at": LATER})
    return acme


def add(
    client: TestClient, account_id: str, body: dict[str, Any], key: str | None = None
) -> dict[str, Any]:
    response = post_credit(client, account_id, body, key)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def post_credit(
    client: TestClient, account_id: str, body: Any, key: str | None = None
) -> httpx.Response:
    headers = dict(ADMIN)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/v1/accounts/{account_id}/credits", json=body, headers=headers)


def post_raw(client: TestClient, account_id: str, content: Any, **headers: str) -> httpx.Response:
    return client.post(
        f"/v1/accounts/{account_id}/credits",
        content=content,
        headers={**ADMIN, "Content-Type": "application/json", **headers},
    )


def balance(client: TestClient, account_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/accounts/{account_id}/balance", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def ledger(client: TestClient, account_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/accounts/{account_id}/ledger", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def lots(client: TestClient, account_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/accounts/{account_id}/credits", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def snapshot(client: TestClient, account_id: str) -> tuple[Any, ...]:
    """Everything a rejected request must leave alone (`as_of` is the read time)."""
    view = balance(client, account_id)
    del view["as_of"]
    return view, ledger(client, account_id, limit=1000), lots(client, account_id, limit=1000)


def assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if field is not None:
        assert body["error"].get("field") == field, body


# -- adding credit ---------------------------------------------------------------------------
def test_paid_credit(client: TestClient, acme: str) -> None:
    body = add(client, acme, {"type": "paid", "amount": "1000.00", "description": "top-up"})
    assert set(body) >= CREDIT_FIELDS
    assert body["id"]
    assert body["type"] == "paid"
    assert body["amount"] == body["remaining"] == "1000.00"
    assert body["expires_at"] is None
    assert body["created_at"] == NOW
    assert body["description"] == "top-up"
    view = balance(client, acme)
    assert view["paid_credits"] == view["available_balance"] == "1000.00"
    assert view["promotional_credits"] == "0.00"
    assert view["promotional_expiries"] == []
    assert view["outbound_allowed"] is True
    assert view["outbound_block_reason"] is None
    (entry,) = ledger(client, acme)["data"]
    assert set(entry) >= LEDGER_FIELDS
    assert (entry["type"], entry["amount"], entry["balance_after"]) == (
        "credit_paid",
        "1000.00",
        "1000.00",
    )
    assert entry["created_at"] == NOW


def test_promotional_credit(client: TestClient, acme: str) -> None:
    body = add(client, acme, {"type": "promotional", "amount": "0.1875", "expires_at": LATER})
    assert body["type"] == "promotional"
    assert body["amount"] == body["remaining"] == "0.1875"
    assert body["expires_at"] == LATER
    view = balance(client, acme)
    assert view["promotional_credits"] == view["available_balance"] == "0.1875"
    assert view["paid_credits"] == "0.00"
    assert view["promotional_expiries"] == [{"amount": "0.1875", "expires_at": LATER}]
    (entry,) = ledger(client, acme)["data"]
    assert (entry["type"], entry["amount"]) == ("credit_promotional", "0.1875")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-12-31T18:30:00Z", "2026-12-31T18:30:00Z"),
        ("2026-12-31T18:30:00z", "2026-12-31T18:30:00Z"),
        ("2026-12-31T18:30:00+00:00", "2026-12-31T18:30:00Z"),
        ("2027-01-01T00:00:00+05:30", "2026-12-31T18:30:00Z"),
        ("2026-12-31T18:30:00.250000Z", "2026-12-31T18:30:00.250000Z"),
    ],
)
def test_expiry_is_any_rfc3339_instant_returned_in_utc(
    client: TestClient, acme: str, sent: str, stored: str
) -> None:
    body = add(client, acme, {"type": "promotional", "amount": "1", "expires_at": sent})
    assert body["expires_at"] == stored


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0.000001", "0.000001"),
        ("1", "1.00"),
        ("10.5", "10.50"),
        ("0.1875", "0.1875"),
        ("12.3400000", "12.34"),
        ("1000000000", "1000000000.00"),  # the documented maximum itself
    ],
)
def test_amounts_are_exact(client: TestClient, acme: str, amount: str, shown: str) -> None:
    body = add(client, acme, {"type": "paid", "amount": amount})
    assert body["amount"] == shown
    assert balance(client, acme)["available_balance"] == shown


def test_credits_add_up_exactly(client: TestClient, acme: str) -> None:
    for _ in range(10):
        add(client, acme, {"type": "paid", "amount": "0.1"})
    add(client, acme, {"type": "promotional", "amount": "0.000001", "expires_at": LATER})
    view = balance(client, acme)
    assert view["paid_credits"] == "1.00"
    assert view["available_balance"] == "1.000001"


def test_credit_for_unknown_account_is_404(client: TestClient) -> None:
    assert_error(
        post_credit(client, "nobody", {"type": "paid", "amount": "1"}), 404, "account_not_found"
    )


# -- rejected requests ------------------------------------------------------------------------
PAID = {"type": "paid"}
PROMO = {"type": "promotional", "expires_at": LATER}
REJECTED: list[tuple[dict[str, Any], str, str | None]] = [
    # amounts
    ({**PAID, "amount": "0"}, "amount_not_positive", "amount"),
    ({**PAID, "amount": "0.000000"}, "amount_not_positive", "amount"),
    ({**PAID, "amount": "-5.00"}, "amount_not_positive", "amount"),
    ({**PAID, "amount": "-0.000001"}, "amount_not_positive", "amount"),
    ({**PROMO, "amount": "-1"}, "amount_not_positive", "amount"),
    ({**PAID, "amount": "-" + "9" * 40}, "amount_not_positive", "amount"),
    ({**PAID, "amount": "1.0000001"}, "amount_too_precise", "amount"),
    ({**PAID, "amount": "0.0000005"}, "amount_too_precise", "amount"),
    ({**PROMO, "amount": "0.1234567"}, "amount_too_precise", "amount"),
    ({**PAID, "amount": "1000000000.000001"}, "amount_too_large", "amount"),
    ({**PAID, "amount": "1000000001"}, "amount_too_large", "amount"),
    ({**PAID, "amount": "999999999999999999"}, "amount_too_large", "amount"),
    ({**PAID, "amount": "1" + "0" * 30}, "amount_too_large", "amount"),
    ({**PAID, "amount": "9" * 400 + ".50"}, "amount_too_large", "amount"),
    ({**PAID, "amount": 10}, "money_must_be_string", "amount"),
    ({**PAID, "amount": 10.5}, "money_must_be_string", "amount"),
    ({**PAID, "amount": 0}, "money_must_be_string", "amount"),
    ({**PAID, "amount": 1e30}, "money_must_be_string", "amount"),
    ({**PAID, "amount": True}, "money_must_be_string", "amount"),
    ({**PAID, "amount": None}, "money_must_be_string", "amount"),
    ({**PAID, "amount": ["1"]}, "money_must_be_string", "amount"),
    ({**PAID, "amount": {"value": "1"}}, "money_must_be_string", "amount"),
    ({**PAID, "amount": ""}, "invalid_amount", "amount"),
    ({**PAID, "amount": "abc"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "1e3"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "1,000"}, "invalid_amount", "amount"),
    ({**PAID, "amount": " 10"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "+5"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "NaN"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "Infinity"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "0x10"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "1."}, "invalid_amount", "amount"),
    ({**PAID, "amount": ".5"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "₹10"}, "invalid_amount", "amount"),
    ({**PAID, "amount": "9" * 25 + "\n"}, "invalid_amount", "amount"),
    # shape
    ({**PAID, "amount": "1", "currency": "INR"}, "unknown_field", "currency"),
    ({**PAID, "amount": "1", "Amount": "2"}, "unknown_field", "Amount"),
    ({"amount": "1"}, "missing_field", "type"),
    ({"type": "paid"}, "missing_field", "amount"),
    ({}, "missing_field", None),
    ({**PAID, "amount": "1", "type": "bonus"}, "validation_error", "type"),
    ({**PAID, "amount": "1", "description": "x" * 501}, "validation_error", "description"),
    ({**PAID, "amount": "1", "description": 5}, "validation_error", "description"),
    # expiry
    ({"type": "promotional", "amount": "1"}, "expires_at_required", "expires_at"),
    (
        {"type": "promotional", "amount": "1", "expires_at": None},
        "expires_at_required",
        "expires_at",
    ),
    (
        {**PROMO, "amount": "1", "expires_at": "2026-11-28T04:29:59Z"},
        "expires_at_in_past",
        "expires_at",
    ),
    ({**PROMO, "amount": "1", "expires_at": NOW}, "expires_at_in_past", "expires_at"),
    (
        {**PROMO, "amount": "1", "expires_at": "2000-01-01T00:00:00Z"},
        "expires_at_in_past",
        "expires_at",
    ),
    ({**PAID, "amount": "1", "expires_at": LATER}, "expires_at_not_allowed", "expires_at"),
    ({**PROMO, "amount": "1", "expires_at": "tomorrow"}, "invalid_timestamp", "expires_at"),
    ({**PROMO, "amount": "1", "expires_at": "2026-12-31"}, "invalid_timestamp", "expires_at"),
    (
        {**PROMO, "amount": "1", "expires_at": "2026-12-31T18:30:00"},
        "invalid_timestamp",
        "expires_at",
    ),
    (
        {**PROMO, "amount": "1", "expires_at": "2026-13-01T00:00:00Z"},
        "invalid_timestamp",
        "expires_at",
    ),
    (
        {**PROMO, "amount": "1", "expires_at": "2026-12-31T25:00:00Z"},
        "invalid_timestamp",
        "expires_at",
    ),
    ({**PROMO, "amount": "1", "expires_at": 1798741800}, "invalid_timestamp", "expires_at"),
    ({**PROMO, "amount": "1", "expires_at": ""}, "invalid_timestamp", "expires_at"),
    (
        {**PROMO, "amount": "1", "expires_at": "2026-12-31T18:30:00Z" + " " * 40},
        "invalid_timestamp",
        "expires_at",
    ),
    ({**PAID, "amount": "1", "expires_at": "tomorrow"}, "invalid_timestamp", "expires_at"),
    # instants that exist in their zone but not in UTC (datetime's years are 1-9999)
    (
        {**PROMO, "amount": "1", "expires_at": "0001-01-01T00:00:00+14:00"},
        "invalid_timestamp",
        "expires_at",
    ),
    (
        {**PROMO, "amount": "1", "expires_at": "9999-12-31T23:00:00-05:00"},
        "invalid_timestamp",
        "expires_at",
    ),
]


@pytest.mark.parametrize(("body", "code", "field"), REJECTED)
def test_invalid_credit_is_422_and_changes_nothing(
    client: TestClient, funded: str, body: dict[str, Any], code: str, field: str | None
) -> None:
    before = snapshot(client, funded)
    response = post_credit(client, funded, body, key="attempt-1")
    assert_error(response, 422, code, field)
    assert snapshot(client, funded) == before
    # The rejected request did not use up its idempotency key.
    ok = post_credit(client, funded, {"type": "paid", "amount": "1.00"}, key="attempt-1")
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"not json",
        b'{"type": "paid", "amount": "1",}',
        b"{'type': 'paid', 'amount': '1'}",
        b'{"type": "paid", "amount": "1"} trailing',
        b"[]",
        b'[{"type": "paid", "amount": "1"}]',
        b'"paid"',
        b"42",
        b"null",
        b"",
        b"\xff\xfe\x00",
    ],
)
def test_malformed_json_is_400_and_changes_nothing(
    client: TestClient, funded: str, content: bytes
) -> None:
    before = snapshot(client, funded)
    assert_error(post_raw(client, funded, content), 400, "malformed_json")
    assert snapshot(client, funded) == before


def test_json_content_types(client: TestClient, acme: str) -> None:
    """JSON is read when sent as application/json (any parameters, any +json) or with no
    Content-Type at all; a body declared as something else is refused as malformed."""
    body = json.dumps({"type": "paid", "amount": "2"}).encode()
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = post_raw(client, acme, body, **{"Content-Type": content_type})
        assert response.status_code == 201, response.text
    untyped = client.post(f"/v1/accounts/{acme}/credits", content=body, headers=ADMIN)
    assert "content-type" not in untyped.request.headers
    assert untyped.status_code == 201, untyped.text
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = post_raw(client, acme, body, **{"Content-Type": content_type})
        assert_error(response, 400, "malformed_json")
    assert balance(client, acme)["paid_credits"] == "6.00"


# -- body size limit ----------------------------------------------------------------------------
def padded(size: int) -> bytes:
    """A valid credit body of exactly `size` bytes (JSON whitespace as padding)."""
    head, tail = b'{"type": "paid", "amount": "7.00"', b"}"
    assert size >= len(head) + len(tail)
    return head + b" " * (size - len(head) - len(tail)) + tail


def test_body_at_the_limit_is_accepted(client: TestClient, acme: str) -> None:
    response = post_raw(client, acme, padded(BODY_LIMIT))
    assert response.status_code == 201, response.text


def test_body_over_the_limit_with_content_length_is_413(client: TestClient, funded: str) -> None:
    before = snapshot(client, funded)
    for size in (BODY_LIMIT + 1, 10 * BODY_LIMIT):
        response = post_raw(client, funded, padded(size))
        assert_error(response, 413, "request_too_large")
    assert snapshot(client, funded) == before


def test_body_over_the_limit_sent_chunked_is_413(client: TestClient, funded: str) -> None:
    before = snapshot(client, funded)
    body = padded(3 * BODY_LIMIT)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    response = post_raw(client, funded, chunks())
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "request_too_large")
    assert snapshot(client, funded) == before


def test_body_over_the_limit_streamed_to_a_real_server_is_413(
    client: TestClient, funded: str, live_server: str
) -> None:
    """Over the wire, in several chunks with Transfer-Encoding: chunked, no Content-Length:
    the limit counts bytes as they arrive (TestClient would hand the app one chunk)."""
    before = snapshot(client, funded)
    body = padded(2 * BODY_LIMIT)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 300):
            yield body[start : start + 300]

    with httpx.Client(base_url=live_server, headers=ADMIN, timeout=10) as http:
        response = http.post("/v1/accounts/acme/credits", content=chunks())
        assert response.request.headers.get("transfer-encoding") == "chunked"
        assert_error(response, 413, "request_too_large")
        small = http.post("/v1/accounts/acme/credits", content=iter([padded(300)]))
        assert small.status_code == 201, small.text
    after = snapshot(client, funded)
    assert after[0]["paid_credits"] == "57.00"  # only the small one
    assert len(after[1]["data"]) == len(before[1]["data"]) + 1


# -- idempotency ------------------------------------------------------------------------------
def test_replay_returns_the_first_response_and_credits_once(
    client: TestClient, acme: str, clock: ManualClock
) -> None:
    body = {"type": "paid", "amount": "100.00", "description": "order 42"}
    first = post_credit(client, acme, body, key="order-42")
    assert first.status_code == 201
    clock.advance(3600)  # a retry an hour later still gets the original answer
    for _ in range(3):
        again = post_credit(client, acme, body, key="order-42")
        assert again.status_code == 201
        assert again.json() == first.json()
    assert balance(client, acme)["paid_credits"] == "100.00"
    assert len(ledger(client, acme)["data"]) == 1
    assert len(lots(client, acme)["data"]) == 1


def test_replay_with_the_same_meaning_is_a_replay(client: TestClient, acme: str) -> None:
    first = post_credit(client, acme, {"type": "paid", "amount": "100"}, key="k")
    again = post_credit(client, acme, {"type": "paid", "amount": "100.000000"}, key="k")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert balance(client, acme)["paid_credits"] == "100.00"


def test_replay_of_a_promotional_credit_after_its_expiry_date(
    client: TestClient, acme: str, clock: ManualClock
) -> None:
    body = {"type": "promotional", "amount": "5", "expires_at": "2026-11-28T05:30:00Z"}
    first = post_credit(client, acme, body, key="promo-1")
    assert first.status_code == 201
    clock.advance(7200)  # expires_at is now in the past, but this is a replay
    again = post_credit(client, acme, body, key="promo-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert len([lot for lot in lots(client, acme)["data"]]) == 1


@pytest.mark.parametrize(
    "other",
    [
        {"type": "paid", "amount": "100.01"},
        {"type": "paid", "amount": "100.00", "description": "something else"},
        {"type": "promotional", "amount": "100.00", "expires_at": LATER},
    ],
)
def test_same_key_with_another_body_is_409(
    client: TestClient, acme: str, other: dict[str, Any]
) -> None:
    first = post_credit(client, acme, {"type": "paid", "amount": "100.00"}, key="dup")
    assert first.status_code == 201
    before = snapshot(client, acme)
    assert_error(post_credit(client, acme, other, key="dup"), 409, "idempotency_key_reused")
    assert snapshot(client, acme) == before


def test_idempotency_keys_belong_to_one_account(client: TestClient, acme: str) -> None:
    client.post("/v1/accounts", json={"id": "globex", "name": "Globex"}, headers=ADMIN)
    a = post_credit(client, acme, {"type": "paid", "amount": "1"}, key="same")
    b = post_credit(client, "globex", {"type": "paid", "amount": "2"}, key="same")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert balance(client, "globex")["paid_credits"] == "2.00"


def test_without_a_key_every_request_credits(client: TestClient, acme: str) -> None:
    body = {"type": "paid", "amount": "1"}
    ids = {add(client, acme, body)["id"] for _ in range(3)}
    assert len(ids) == 3
    assert balance(client, acme)["paid_credits"] == "3.00"


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_bad_idempotency_key_is_400(client: TestClient, funded: str, key: str) -> None:
    before = snapshot(client, funded)
    response = post_credit(client, funded, {"type": "paid", "amount": "1"}, key=key)
    assert_error(response, 400, "invalid_idempotency_key")
    assert snapshot(client, funded) == before


def test_longest_idempotency_key_is_accepted(client: TestClient, acme: str) -> None:
    key = "k" * 255
    first = post_credit(client, acme, {"type": "paid", "amount": "1"}, key=key)
    again = post_credit(client, acme, {"type": "paid", "amount": "1"}, key=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()


# -- balance -----------------------------------------------------------------------------------
def test_balance_has_exactly_the_documented_fields(client: TestClient, funded: str) -> None:
    view = balance(client, funded)
    assert set(view) == BALANCE_FIELDS
    for name in BALANCE_MONEY:
        assert isinstance(view[name], str) and MONEY.match(view[name]), (name, view[name])
    for expiry in view["promotional_expiries"]:
        assert set(expiry) == {"amount", "expires_at"}
        assert MONEY.match(expiry["amount"]) and INSTANT.match(expiry["expires_at"])
    assert INSTANT.match(view["as_of"])
    assert view == {
        "currency": "INR",
        "available_balance": "75.00",
        "paid_credits": "50.00",
        "promotional_credits": "25.00",
        "promotional_expiries": [{"amount": "25.00", "expires_at": LATER}],
        "reserved_amount": "0.00",
        "today_usage": "0.00",
        "month_usage": "0.00",
        "outbound_allowed": True,
        "outbound_block_reason": None,
        "as_of": NOW,
    }


def test_empty_account_balance_blocks_outbound(client: TestClient, acme: str) -> None:
    view = balance(client, acme)
    assert view["available_balance"] == "0.00"
    assert view["outbound_allowed"] is False
    assert view["outbound_block_reason"] == "insufficient_balance"


def test_balance_reflects_holds_and_usage(
    client: TestClient, funded: str, container: Container
) -> None:
    container.ledger.place_hold(funded, "CA1", Money.parse("10.00"), 300)
    container.ledger.debit(funded, "SM1", Money.parse("0.25"))
    view = balance(client, funded)
    assert view["reserved_amount"] == "10.00"
    assert view["today_usage"] == view["month_usage"] == "0.25"
    assert view["available_balance"] == "64.75"  # 75 - 0.25 - 10 held


def test_promotional_credit_disappears_from_the_balance_at_expiry(
    client: TestClient, acme: str, clock: ManualClock
) -> None:
    add(client, acme, {"type": "promotional", "amount": "5", "expires_at": "2026-11-28T05:30:00Z"})
    clock.advance(3599)
    assert balance(client, acme)["promotional_credits"] == "5.00"
    clock.advance(1)
    view = balance(client, acme)
    assert view["promotional_credits"] == view["available_balance"] == "0.00"
    assert view["promotional_expiries"] == []


# -- ledger and credit lots -------------------------------------------------------------------
def test_ledger_is_newest_first_with_cursor_pages(
    client: TestClient, acme: str, clock: ManualClock
) -> None:
    for units in range(1, 6):
        add(client, acme, {"type": "paid", "amount": f"{units}.00"})
        clock.advance(60)
    entries: list[dict[str, Any]] = []
    page = ledger(client, acme, limit=2)
    while True:
        assert set(page) == {"data", "next_cursor"}
        assert len(page["data"]) <= 2
        entries += page["data"]
        if page["next_cursor"] is None:
            break
        page = ledger(client, acme, limit=2, after=page["next_cursor"])
    assert [e["amount"] for e in entries] == ["5.00", "4.00", "3.00", "2.00", "1.00"]
    assert [e["balance_after"] for e in entries] == ["15.00", "10.00", "6.00", "3.00", "1.00"]
    assert len({e["id"] for e in entries}) == 5
    times = [e["created_at"] for e in entries]
    assert times == sorted(times, reverse=True)
    for entry in entries:
        assert set(entry) >= LEDGER_FIELDS
        assert entry["type"] == "credit_paid"
        assert MONEY.match(entry["amount"]) and MONEY.match(entry["balance_after"])
    assert ledger(client, acme)["data"] == entries  # one default page holds them all


def test_ledger_shows_charges_as_negative(
    client: TestClient, funded: str, container: Container
) -> None:
    container.ledger.debit(funded, "SM1", Money.parse("0.25"))
    newest = ledger(client, funded, limit=1)["data"][0]
    assert (newest["type"], newest["amount"], newest["balance_after"]) == (
        "debit",
        "-0.25",
        "74.75",
    )
    assert newest["reference"] == "SM1"


@pytest.mark.parametrize("path", ["ledger", "credits"])
def test_lists_reject_bad_cursor_and_limit(client: TestClient, acme: str, path: str) -> None:
    url = f"/v1/accounts/{acme}/{path}"
    foreign = client.get("/v1/accounts", params={"limit": 1}, headers=ADMIN).json()["next_cursor"]
    for cursor in ("nonsense", foreign):
        response = client.get(url, params={"after": cursor}, headers=ADMIN)
        assert_error(response, 400, "invalid_cursor", "after")
    for limit in ("0", "1001", "x"):
        response = client.get(url, params={"limit": limit}, headers=ADMIN)
        assert_error(response, 422, "invalid_limit", "limit")


def test_credit_lots_list_what_remains(client: TestClient, acme: str, container: Container) -> None:
    paid = add(client, acme, {"type": "paid", "amount": "10.00"})
    promo = add(client, acme, {"type": "promotional", "amount": "3.00", "expires_at": LATER})
    container.ledger.debit(acme, "SM1", Money.parse("4.00"))
    listed = lots(client, acme)
    assert listed["next_cursor"] is None
    by_id = {lot["id"]: lot for lot in listed["data"]}
    assert [lot["id"] for lot in listed["data"]] == [promo["id"], paid["id"]]  # newest first
    for lot in listed["data"]:
        assert set(lot) >= CREDIT_FIELDS
        assert MONEY.match(lot["remaining"])
    assert by_id[paid["id"]]["amount"] == "10.00"
    assert by_id[promo["id"]]["amount"] == "3.00"
    assert by_id[promo["id"]]["expires_at"] == LATER
    remaining = sum(Money.parse(lot["remaining"]).micros for lot in listed["data"])
    assert Money(remaining).format() == balance(client, acme)["available_balance"] == "9.00"
    # Promotional credit is spent first; the rest comes from paid.
    assert by_id[promo["id"]]["remaining"] == "0.00"
    assert by_id[paid["id"]]["remaining"] == "9.00"


def test_credit_lots_page_with_a_cursor(client: TestClient, acme: str) -> None:
    ids = [add(client, acme, {"type": "paid", "amount": "1"})["id"] for _ in range(3)]
    first = lots(client, acme, limit=2)
    assert [lot["id"] for lot in first["data"]] == ids[::-1][:2]
    second = lots(client, acme, limit=2, after=first["next_cursor"])
    assert [lot["id"] for lot in second["data"]] == ids[:1]
    assert second["next_cursor"] is None


def test_lists_of_unknown_account_are_404(client: TestClient) -> None:
    for path in ("balance", "ledger", "credits"):
        response = client.get(f"/v1/accounts/nobody/{path}", headers=ADMIN)
        assert_error(response, 404, "account_not_found")


def test_promotional_expiries_are_listed_soonest_first(
    client: TestClient, acme: str, clock: ManualClock
) -> None:
    soon = "2026-11-29T04:30:00Z"
    add(client, acme, {"type": "promotional", "amount": "2", "expires_at": LATER})
    add(client, acme, {"type": "promotional", "amount": "1", "expires_at": soon})
    view = balance(client, acme)
    assert view["promotional_expiries"] == [
        {"amount": "1.00", "expires_at": soon},
        {"amount": "2.00", "expires_at": LATER},
    ]
    clock.advance(timedelta(days=1).total_seconds())
    assert balance(client, acme)["promotional_expiries"] == [
        {"amount": "2.00", "expires_at": LATER}
    ]

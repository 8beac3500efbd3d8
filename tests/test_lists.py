"""Every native list follows the one convention: `?limit=` (1-1000, default 50), an opaque
`?after=` cursor, keyset pages in a stable order, and `next_cursor` exactly when more rows
follow (never an empty last page). A cursor that this API did not produce is a 400
`invalid_cursor`, never a 500."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import ManualClock

BASE = "/v1/accounts/acme"
# path -> the field naming a row (its identity in the page walk)
ACCOUNT_LISTS = {
    "credits": "id",
    "ledger": "id",
    "calls": "call_sid",
    "payments": "payment_id",
    "notifications": "id",
    "alerts": "alert_id",
    "numbers": "id",
    "agents": "id",
    "campaigns": "campaign_id",
}
INT_CURSOR_LISTS = ["credits", "ledger", "calls", "payments", "notifications"]
ROWS_EACH = 3


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def key(client: TestClient, role: str) -> dict[str, str]:
    issued = client.post(f"{BASE}/api-keys", json={"role": role}, headers=ADMIN)
    assert issued.status_code == 201, issued.text
    return {"Authorization": f"Bearer {issued.json()['token']}"}


def alert(client: TestClient, name: str, threshold: str = "1.00") -> dict[str, Any]:
    body = {"name": name, "type": "low_balance", "threshold": threshold, "channels": ["dashboard"]}
    made = client.post(f"{BASE}/alerts", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


@pytest.fixture
def filled(client: TestClient, clock: ManualClock) -> TestClient:
    """Three accounts; acme has at least three rows in every one of its lists."""
    for account_id in ("acme", "beta", "gamma"):
        made = client.post("/v1/accounts", json={"id": account_id, "name": "X"}, headers=ADMIN)
        assert made.status_code == 201, made.text
    # Alerts first, while the balance is zero: each fires at once (one notification each).
    for i in range(ROWS_EACH):
        alert(client, f"Low {i}", threshold="10.00")
    for _ in range(ROWS_EACH):
        body = {"type": "paid", "amount": "5000.00"}
        assert client.post(f"{BASE}/credits", json=body, headers=ADMIN).status_code == 201
    owner, platform = key(client, "owner"), key(client, "platform")
    for i in range(ROWS_EACH):
        paid = client.post(
            f"{BASE}/payments",
            json={"amount": "1.00"},
            headers={**owner, "Idempotency-Key": f"k{i}"},
        )
        assert paid.status_code == 201, paid.text
        call = {"call_sid": f"CA{i}", "direction": "outbound", "to": "+919800000001"}
        assert client.post(f"{BASE}/calls", json=call, headers=platform).status_code == 201
        number = {"number": f"+91980000000{i}"}
        rented = client.post(f"{BASE}/numbers", json=number, headers=owner)
        assert rented.status_code == 201, rented.text
        seat = {"agent_id": f"agent{i}"}
        seated = client.post(f"{BASE}/agents", json=seat, headers=owner)
        assert seated.status_code == 201, seated.text
        campaign = {"campaign_id": f"camp{i}", "name": f"Campaign {i}", "budget": "10.00"}
        made = client.post(f"{BASE}/campaigns", json=campaign, headers=owner)
        assert made.status_code == 201, made.text
        clock.advance(1)
    return client


def url_of(path: str) -> str:
    return "/v1/accounts" if path == "accounts" else f"{BASE}/{path}"


def get_page(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(url_of(path), params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data", "next_cursor"}
    return body  # type: ignore[no-any-return]


def walk(client: TestClient, path: str, limit: int) -> list[dict[str, Any]]:
    """Every row of a list, page by page; no page is empty."""
    rows: list[dict[str, Any]] = []
    page = get_page(client, path, limit=limit)
    for _ in range(100):
        assert 1 <= len(page["data"]) <= limit or rows == page["data"] == []
        rows += page["data"]
        if page["next_cursor"] is None:
            return rows
        page = get_page(client, path, limit=limit, after=page["next_cursor"])
    raise AssertionError("the pages never end")


@pytest.mark.parametrize("path", ["accounts", *ACCOUNT_LISTS])
def test_next_cursor_only_when_more_rows_follow(filled: TestClient, path: str) -> None:
    field = ACCOUNT_LISTS.get(path, "id")
    everything = get_page(filled, path, limit=1000)
    assert everything["next_cursor"] is None
    total = len(everything["data"])
    assert total >= ROWS_EACH
    # A page exactly as long as the list is the last one.
    exact = get_page(filled, path, limit=total)
    assert exact["data"] == everything["data"] and exact["next_cursor"] is None
    # One row fewer: a cursor, and the next page holds the last row and ends the list.
    short = get_page(filled, path, limit=total - 1)
    assert short["data"] == everything["data"][:-1] and short["next_cursor"] is not None
    last = get_page(filled, path, limit=total - 1, after=short["next_cursor"])
    assert last == {"data": everything["data"][-1:], "next_cursor": None}
    # Any page size walks the same rows in the same order, each once.
    for limit in (1, 2):
        ids = [row[field] for row in walk(filled, path, limit)]
        assert ids == [row[field] for row in everything["data"]]
        assert len(set(ids)) == total
    assert get_page(filled, path)["data"] == everything["data"]  # the default page holds all


@pytest.mark.parametrize("path", ["alerts", "numbers", "agents"])
def test_alerts_numbers_and_agents_honour_limit_and_after(filled: TestClient, path: str) -> None:
    first = get_page(filled, path, limit=1)
    assert len(first["data"]) == 1 and isinstance(first["next_cursor"], str)
    second = get_page(filled, path, limit=1, after=first["next_cursor"])
    assert len(second["data"]) == 1 and second["data"] != first["data"]


def test_numbers_and_agents_are_in_id_order(filled: TestClient) -> None:
    numbers = [n["id"] for n in walk(filled, "numbers", 2)]
    assert numbers == ["+919800000000", "+919800000001", "+919800000002"]
    assert [a["id"] for a in walk(filled, "agents", 2)] == ["agent0", "agent1", "agent2"]


def test_alerts_are_oldest_first_with_ties_broken_by_id(
    client: TestClient, container: Container, clock: ManualClock
) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    made: list[dict[str, Any]] = []
    for group in range(3):  # two alerts at each instant: their ids decide
        made += [alert(client, f"A{group}{i}") for i in range(2)]
        clock.advance(1)
    expected = sorted(made, key=lambda a: (a["created_at"], a["alert_id"]))
    ids = [a["alert_id"] for a in expected]
    for limit in (1, 2, 4, 1000):
        assert [a["alert_id"] for a in walk(client, "alerts", limit)] == ids
    assert [a.id for a in container.alerts.all("acme")] == ids  # the dashboard's order too


def test_an_empty_list_is_one_empty_page(client: TestClient) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    for path in ACCOUNT_LISTS:
        if path not in ("credits", "ledger"):
            assert get_page(client, path) == {"data": [], "next_cursor": None}, path


def assert_invalid_cursor(client: TestClient, path: str, cursor: str) -> None:
    response = client.get(url_of(path), params={"after": cursor}, headers=ADMIN)
    assert response.status_code == 400, (path, cursor, response.text)
    assert response.json()["error"]["code"] == "invalid_cursor"
    assert response.json()["error"]["field"] == "after"


BAD_INT_CURSORS = [
    cursor_of("c1:²"),  # str.isdigit() says yes
    cursor_of("c1:١٢٣"),  # Arabic-Indic digits; int() would read them
    cursor_of("c1:" + "9" * 30),  # beyond 64 bits: SQLite OverflowError
    cursor_of(f"c1:{2**63}"),  # one past the largest signed 64-bit integer
    cursor_of("c1:-1"),
    cursor_of("c1: 1"),
    cursor_of("c1:"),
    "nonsense",
]


@pytest.mark.parametrize("path", INT_CURSOR_LISTS)
@pytest.mark.parametrize("cursor", BAD_INT_CURSORS)
def test_bad_number_cursors_are_invalid_cursor(client: TestClient, path: str, cursor: str) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    assert_invalid_cursor(client, path, cursor)


@pytest.mark.parametrize("path", INT_CURSOR_LISTS)
def test_the_largest_64_bit_cursor_is_accepted(client: TestClient, path: str) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    page = get_page(client, path, after=cursor_of(f"c1:{2**63 - 1}"))
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    "text",
    ["c1:²:al_x", "c1:" + "9" * 30 + ":al_x", f"c1:{2**63}:al_x", "c1:5", "c1:5:", "c1:x:al_x"],
)
def test_bad_alert_cursors_are_invalid_cursor(client: TestClient, text: str) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    assert_invalid_cursor(client, "alerts", cursor_of(text))


@pytest.mark.parametrize("path", ["accounts", "numbers", "agents"])
def test_bad_text_cursors_are_invalid_cursor(client: TestClient, path: str) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    for cursor in ("nonsense", cursor_of("c1:a\x00b"), cursor_of("c1:" + "x" * 300)):
        assert_invalid_cursor(client, path, cursor)


@pytest.mark.parametrize("path", ["alerts", "numbers", "agents"])
def test_new_lists_reject_a_bad_limit(client: TestClient, path: str) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    for limit in ("0", "1001", "x"):
        response = client.get(url_of(path), params={"limit": limit}, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_limit"


@pytest.mark.parametrize("path", ["accounts", *ACCOUNT_LISTS])
def test_openapi_shows_limit_and_after(client: TestClient, path: str) -> None:
    spec = client.get("/openapi.json").json()
    route = "/v1/accounts" if path == "accounts" else f"/v1/accounts/{{account_id}}/{path}"
    params = {p["name"]: p for p in spec["paths"][route]["get"]["parameters"]}
    assert params["limit"]["in"] == params["after"]["in"] == "query"
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["limit"]["schema"]["default"] == 50
    assert not params["after"].get("required", False)


@pytest.mark.parametrize(
    "extra",
    [{}, {"headers": {"Content-Type": "application/json"}}, {"json": {}}],
    ids=["no body", "empty json body", "{}"],
)
def test_recommended_levels_need_no_body(client: TestClient, extra: dict[str, Any]) -> None:
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    headers = {**ADMIN, **extra.pop("headers", {})}
    made = client.post(f"{BASE}/alerts/recommended", headers=headers, **extra)
    assert made.status_code == 201, made.text
    created = made.json()["data"]
    assert len(created) == 3
    assert all(a["channels"] == ["dashboard"] for a in created)
    assert [a["threshold_percent_of_average_monthly_usage"] for a in created] == ["30", "15", "5"]
    bad = client.post(f"{BASE}/alerts/recommended", content=b"{", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"

"""Operations (API.md "Operations"): health, readiness, metrics, the test clock, the error
envelope for unknown routes and methods, and the OpenAPI document."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN
from usagewatch.adapters.db.engine import Database
from usagewatch.api.app import create_app
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


def make_account(client: TestClient, account_id: str = "acme") -> None:
    response = client.post("/v1/accounts", json={"id": account_id, "name": "A"}, headers=ADMIN)
    assert response.status_code == 201, response.text


def key_for(client: TestClient, account_id: str, role: str) -> dict[str, str]:
    response = client.post(
        f"/v1/accounts/{account_id}/api-keys", json={"role": role}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


# -- health and readiness ----------------------------------------------------------------------
def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_on_a_migrated_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_is_503_when_migrations_are_not_current(
    container: Container, tmp_path: Path
) -> None:
    """A fresh, empty SQLite file: reachable, but no schema at all."""
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with TestClient(
            create_app(dataclasses.replace(container, db=empty), run_sweeper=False)
        ) as c:
            assert_error(c.get("/readyz"), 503, "not_ready")
            assert c.get("/healthz").status_code == 200  # alive, just not ready
    finally:
        empty.dispose()


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readyz_is_503_when_the_database_is_unreachable(container: Container) -> None:
    gone = Database(f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing")
    try:
        with TestClient(
            create_app(dataclasses.replace(container, db=gone), run_sweeper=False)
        ) as c:
            assert_error(c.get("/readyz"), 503, "not_ready")
    finally:
        gone.dispose()


# -- metrics -----------------------------------------------------------------------------------
def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample, or None when it is absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


def test_metrics(client: TestClient, container: Container) -> None:
    make_account(client)
    for _ in range(2):
        assert client.get("/v1/accounts/acme/balance", headers=ADMIN).status_code == 200
    client.get("/v1/accounts/nosuch/balance", headers=ADMIN)
    credit = {"type": "paid", "amount": "100"}
    assert client.post("/v1/accounts/acme/credits", json=credit, headers=ADMIN).status_code == 201
    container.ledger.place_hold("acme", "CA1", Money.parse("1.00"), 300)
    container.ledger.place_hold("acme", "CA2", Money.parse("1.00"), 300)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = "/v1/accounts/{account_id}/balance"
    requests = "usagewatch_http_requests_total"
    assert sample(text, requests, method="GET", route=route, status="200") == 2
    assert sample(text, requests, method="GET", route=route, status="404") == 1
    assert sample(text, requests, method="POST", route="/v1/accounts", status="201") == 1
    assert "acme" not in text and "nosuch" not in text  # route templates, never raw paths
    assert sample(text, "usagewatch_http_request_duration_seconds_count", route=route) == 3
    assert sample(text, "usagewatch_ledger_entries_total", type="credit_paid") == 1
    assert sample(text, "usagewatch_open_holds") == 2
    container.ledger.release_hold("acme", "CA1")
    assert sample(client.get("/metrics").text, "usagewatch_open_holds") == 1


def test_metrics_count_charges_run_without_the_locking_read(
    client: TestClient, container: Container
) -> None:
    make_account(client)
    credit = {"type": "paid", "amount": "100"}
    assert client.post("/v1/accounts/acme/credits", json=credit, headers=ADMIN).status_code == 201
    for sid in ("SM1", "SM2"):
        body = {"sms_sid": sid, "type": "transactional", "to": "+919800000001", "units": 1}
        assert client.post("/v1/accounts/acme/sms", json=body, headers=ADMIN).status_code == 201
    text = client.get("/metrics").text
    runs = "usagewatch_ledger_unlocked_runs_total"
    # PostgreSQL only: both SMS start from the state the command before them committed
    committed = 0 if container.db.is_sqlite else 2
    assert sample(text, runs, outcome="committed") == committed
    assert sample(text, runs, outcome="rolled_back") == 0


def test_metrics_count_unmatched_routes_under_one_label(client: TestClient) -> None:
    for i in range(3):
        client.get(f"/no/such/path/{i}")
    text = client.get("/metrics").text
    assert sample(text, "usagewatch_http_requests_total", route="unmatched", status="404") == 3
    assert "/no/such/path" not in text


def test_metrics_count_promotional_expiry(client: TestClient, container: Container) -> None:
    make_account(client)
    body = {"type": "promotional", "amount": "5", "expires_at": "2026-11-28T05:30:00Z"}
    assert client.post("/v1/accounts/acme/credits", json=body, headers=ADMIN).status_code == 201
    client.post("/v1/test-clock/advance", json={"seconds": 7200}, headers=ADMIN)
    text = client.get("/metrics").text
    entries = "usagewatch_ledger_entries_total"
    assert sample(text, entries, type="credit_promotional") == 1
    assert sample(text, entries, type="promotional_expired") == 1


# -- test clock --------------------------------------------------------------------------------
def test_test_clock_read_and_advance(client: TestClient) -> None:
    response = client.get("/v1/test-clock", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"now": "2026-11-28T04:30:00Z"}
    advanced = client.post("/v1/test-clock/advance", json={"seconds": 3600}, headers=ADMIN)
    assert advanced.status_code == 200
    assert advanced.json() == {"now": "2026-11-28T05:30:00Z"}
    assert client.get("/v1/test-clock", headers=ADMIN).json() == {"now": "2026-11-28T05:30:00Z"}
    zero = client.post("/v1/test-clock/advance", json={"seconds": 0}, headers=ADMIN)
    assert zero.json() == {"now": "2026-11-28T05:30:00Z"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"seconds": -1}, "validation_error"),
        ({"seconds": 5 * 366 * 24 * 3600 + 1}, "validation_error"),
        ({"seconds": "soon"}, "validation_error"),
        ({}, "missing_field"),
        ({"seconds": 1, "minutes": 1}, "unknown_field"),
    ],
)
def test_test_clock_rejects_bad_advances(client: TestClient, body: dict, code: str) -> None:
    response = client.post("/v1/test-clock/advance", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert client.get("/v1/test-clock", headers=ADMIN).json() == {"now": "2026-11-28T04:30:00Z"}


@pytest.mark.parametrize("role", ["owner", "viewer", "platform"])
def test_test_clock_is_admin_only(client: TestClient, role: str) -> None:
    make_account(client)
    headers = key_for(client, "acme", role)
    assert_error(client.get("/v1/test-clock", headers=headers), 403, "forbidden")
    advance = client.post("/v1/test-clock/advance", json={"seconds": 60}, headers=headers)
    assert_error(advance, 403, "forbidden")
    assert_error(client.get("/v1/test-clock"), 401, "unauthenticated")
    assert client.get("/v1/test-clock", headers=ADMIN).json() == {"now": "2026-11-28T04:30:00Z"}


@pytest.fixture
def clockless_client(database_url: str) -> Iterator[TestClient]:
    c = build(Settings(database_url=database_url, test_clock=False), ADMIN_TOKEN)
    assert c.test_clock is None
    try:
        with TestClient(create_app(c, run_sweeper=False)) as test_client:
            yield test_client
    finally:
        c.close()


def test_test_clock_is_404_when_off(clockless_client: TestClient) -> None:
    assert_error(clockless_client.get("/v1/test-clock", headers=ADMIN), 404, "not_found")
    advance = clockless_client.post("/v1/test-clock/advance", json={"seconds": 1}, headers=ADMIN)
    assert_error(advance, 404, "not_found")
    # Still admin only: the access check comes first.
    assert_error(clockless_client.get("/v1/test-clock"), 401, "unauthenticated")


def test_advance_expires_promotional_credit_at_its_exact_instant(client: TestClient) -> None:
    make_account(client)
    expiry = "2026-11-29T04:30:00.123456Z"
    body = {"type": "promotional", "amount": "7.50", "expires_at": expiry}
    assert client.post("/v1/accounts/acme/credits", json=body, headers=ADMIN).status_code == 201
    paid = {"type": "paid", "amount": "1"}
    assert client.post("/v1/accounts/acme/credits", json=paid, headers=ADMIN).status_code == 201

    response = client.post("/v1/test-clock/advance", json={"seconds": 3 * 86400}, headers=ADMIN)
    assert response.json() == {"now": "2026-12-01T04:30:00Z"}
    # advance returned only after the expiry ran: the journal already shows it, stamped
    # with the instant the credit expired rather than the end of the advance.
    newest = client.get("/v1/accounts/acme/ledger", headers=ADMIN).json()["data"][0]
    assert newest["type"] == "promotional_expired"
    assert newest["amount"] == "-7.50"
    assert newest["balance_after"] == "1.00"
    assert newest["created_at"] == expiry
    view = client.get("/v1/accounts/acme/balance", headers=ADMIN).json()
    assert (view["promotional_credits"], view["available_balance"]) == ("0.00", "1.00")


def test_advance_runs_each_expiry_at_its_own_instant(
    client: TestClient, container: Container
) -> None:
    make_account(client)
    make_account(client, "globex")
    expiries = {
        "acme": "2026-11-28T06:00:00Z",
        "globex": "2026-11-28T05:00:00Z",
    }
    for account_id, expiry in expiries.items():
        container.ledger.add_credit(
            account_id,
            LotKind.PROMOTIONAL,
            Money.parse("2"),
            expires_at=_parse(expiry),
        )
    client.post("/v1/test-clock/advance", json={"seconds": 86400}, headers=ADMIN)
    for account_id, expiry in expiries.items():
        newest = client.get(f"/v1/accounts/{account_id}/ledger", headers=ADMIN).json()["data"][0]
        assert (newest["type"], newest["created_at"]) == ("promotional_expired", expiry)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- unknown routes and methods ----------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/nope", "/v1", "/v1/nope", "/v1/accounts/acme/nope", "/v2/accounts"]
)
def test_unknown_route_is_404_envelope(client: TestClient, path: str) -> None:
    for headers in ({}, ADMIN):
        assert_error(client.get(path, headers=headers), 404, "not_found")
        assert_error(client.post(path, json={}, headers=headers), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/accounts", {"GET", "POST"}),
        ("PUT", "/v1/accounts/acme", {"GET"}),
        ("DELETE", "/v1/accounts/acme/credits", {"GET", "POST"}),
        ("POST", "/v1/accounts/acme/balance", {"GET"}),
        ("GET", "/v1/accounts/acme/api-keys", {"POST"}),
        ("PATCH", "/healthz", {"GET"}),
        ("POST", "/metrics", {"GET"}),
        ("GET", "/v1/test-clock/advance", {"POST"}),
    ],
)
def test_wrong_method_is_405_envelope_with_allow(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path, headers=ADMIN)
    assert_error(response, 405, "method_not_allowed")
    methods = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed <= methods <= allowed | {"HEAD"}


# -- OpenAPI -----------------------------------------------------------------------------------
DOCUMENTED = {
    ("post", "/v1/accounts"),
    ("get", "/v1/accounts"),
    ("get", "/v1/accounts/{account_id}"),
    ("post", "/v1/accounts/{account_id}/api-keys"),
    ("delete", "/v1/accounts/{account_id}/api-keys/{key_id}"),
    ("post", "/v1/accounts/{account_id}/users"),
    ("post", "/v1/accounts/{account_id}/credits"),
    ("get", "/v1/accounts/{account_id}/credits"),
    ("get", "/v1/accounts/{account_id}/balance"),
    ("get", "/v1/accounts/{account_id}/ledger"),
    ("get", "/v1/accounts/{account_id}/balance/stream"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/test-clock"),
    ("post", "/v1/test-clock/advance"),
}


def test_openapi_lists_every_route(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    listed = {
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    served = {
        (method.lower(), route.path)
        for route in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if route.path and route.methods and getattr(route, "include_in_schema", False)
        for method in route.methods
        if method != "HEAD"
    }
    assert served >= DOCUMENTED  # the API.md routes of this part exist...
    assert served == listed  # ...and everything served is in the document
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)


def test_openapi_describes_the_error_envelope(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    native = spec["paths"]["/v1/accounts/{account_id}/sms"]["post"]["responses"]["default"]
    assert native["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOut"
    }
    body = spec["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["code", "message"] and "field" in body["properties"]
    exotel = spec["paths"]["/v1/Accounts/{AccountSid}/Balance.json"]["get"]["responses"]
    assert "RestException" in exotel["default"]["description"]
    assert "content" not in exotel["default"]


def test_openapi_documents_money_as_strings(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["CreditCreate"]["properties"]["amount"]["type"] == "string"
    assert schemas["CreditCreate"]["additionalProperties"] is False
    for name in ("available_balance", "paid_credits", "reserved_amount"):
        assert schemas["BalanceOut"]["properties"][name]["type"] == "string"


def test_api_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "openapi.json" in response.text

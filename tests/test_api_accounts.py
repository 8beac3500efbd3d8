"""Accounts, API keys and dashboard users over HTTP (API.md "Accounts and keys")."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN
from usagewatch.adapters.db.schema import api_keys, users
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.security import verify_password
from usagewatch.service.accounts import KeyCache

ADMIN_PRINCIPAL = Principal(Role.ADMIN, None, None)

# API.md's fields, plus inbound_at_zero (the inbound policy at zero balance)
ACCOUNT_FIELDS = {
    "id",
    "name",
    "currency",
    "timezone",
    "status",
    "created_at",
    "inbound_at_zero",
    "sandbox",
}


def create_account(client: TestClient, account_id: str = "acme", **extra: str) -> dict:
    response = client.post(
        "/v1/accounts", json={"id": account_id, "name": "Acme", **extra}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()


def issue_key(client: TestClient, account_id: str, role: str, headers: dict = ADMIN) -> dict:
    response = client.post(
        f"/v1/accounts/{account_id}/api-keys", json={"role": role}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert error.get("field") == field, error


# -- creating accounts ---------------------------------------------------------------------
def test_create_account_with_client_chosen_id_and_defaults(client: TestClient) -> None:
    response = client.post(
        "/v1/accounts", json={"id": "AC_exotel-1", "name": "Acme"}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == ACCOUNT_FIELDS
    assert body == {
        "id": "AC_exotel-1",
        "name": "Acme",
        "currency": "INR",
        "timezone": "Asia/Kolkata",
        "status": "active",
        "created_at": "2026-11-28T04:30:00Z",
        "inbound_at_zero": "allow",
        "sandbox": False,
    }
    fetched = client.get("/v1/accounts/AC_exotel-1", headers=ADMIN)
    assert fetched.status_code == 200
    assert fetched.json() == body


def test_create_account_with_generated_id(client: TestClient) -> None:
    first = client.post("/v1/accounts", json={"name": "One"}, headers=ADMIN)
    second = client.post("/v1/accounts", json={"name": "Two", "id": None}, headers=ADMIN)
    assert first.status_code == second.status_code == 201
    ids = {first.json()["id"], second.json()["id"]}
    assert len(ids) == 2
    for account_id in ids:
        assert client.get(f"/v1/accounts/{account_id}", headers=ADMIN).status_code == 200


def test_create_account_with_explicit_currency_and_timezone(client: TestClient) -> None:
    body = create_account(client, "eu", currency="EUR", timezone="Europe/Berlin")
    assert (body["currency"], body["timezone"]) == ("EUR", "Europe/Berlin")
    balance = client.get("/v1/accounts/eu/balance", headers=ADMIN).json()
    assert balance["currency"] == "EUR"


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"id": "has space"}, "invalid_account_id", "id"),
        ({"id": "slash/id"}, "invalid_account_id", "id"),
        ({"id": "-leading-dash"}, "invalid_account_id", "id"),
        ({"id": "x" * 65}, "invalid_account_id", "id"),
        ({"id": ""}, "invalid_account_id", "id"),
        ({"currency": "inr"}, "invalid_currency", "currency"),
        ({"currency": "RUPEE"}, "invalid_currency", "currency"),
        ({"currency": ""}, "invalid_currency", "currency"),
        ({"timezone": "Mars/Olympus_Mons"}, "invalid_timezone", "timezone"),
        ({"timezone": "../../etc/passwd"}, "invalid_timezone", "timezone"),
        ({"timezone": ""}, "invalid_timezone", "timezone"),
        ({"name": ""}, "validation_error", "name"),
        ({"name": None}, "validation_error", "name"),
        ({"nickname": "x"}, "unknown_field", "nickname"),
    ],
)
def test_create_account_rejects_bad_values(
    client: TestClient, fields: dict, code: str, field: str
) -> None:
    body = {"name": "Acme", **fields}
    assert_error(client.post("/v1/accounts", json=body, headers=ADMIN), 422, code, field)
    assert client.get("/v1/accounts", headers=ADMIN).json()["data"] == []


def test_create_account_without_name_is_missing_field(client: TestClient) -> None:
    response = client.post("/v1/accounts", json={"id": "acme"}, headers=ADMIN)
    assert_error(response, 422, "missing_field", "name")


def test_duplicate_account_id_is_409_and_keeps_the_first(client: TestClient) -> None:
    create_account(client, "acme")
    again = client.post("/v1/accounts", json={"id": "acme", "name": "Other"}, headers=ADMIN)
    assert_error(again, 409, "account_exists", "id")
    assert client.get("/v1/accounts/acme", headers=ADMIN).json()["name"] == "Acme"


def test_get_unknown_account_is_404(client: TestClient) -> None:
    assert_error(client.get("/v1/accounts/nobody", headers=ADMIN), 404, "account_not_found")


# -- listing -------------------------------------------------------------------------------
def test_list_accounts_pages_with_a_cursor(client: TestClient) -> None:
    ids = [f"acct{i:02d}" for i in range(7)]
    for account_id in reversed(ids):
        create_account(client, account_id)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if after is not None:
            params["after"] = after
        response = client.get("/v1/accounts", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"data", "next_cursor"}
        assert len(page["data"]) <= 3
        assert all(set(a) == ACCOUNT_FIELDS for a in page["data"])
        seen += [a["id"] for a in page["data"]]
        pages += 1
        after = page["next_cursor"]
        if after is None:
            break
        assert isinstance(after, str)
        assert pages < 10
    assert seen == ids  # each account exactly once, in a stable order


def test_list_accounts_default_limit_and_last_page(client: TestClient) -> None:
    for i in range(3):
        create_account(client, f"a{i}")
    page = client.get("/v1/accounts", headers=ADMIN).json()
    assert [a["id"] for a in page["data"]] == ["a0", "a1", "a2"]
    assert page["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "1.5"])
def test_list_accounts_rejects_bad_limit(client: TestClient, limit: str) -> None:
    response = client.get("/v1/accounts", params={"limit": limit}, headers=ADMIN)
    assert_error(response, 422, "invalid_limit", "limit")


def test_list_accounts_accepts_the_limit_bounds(client: TestClient) -> None:
    create_account(client, "acme")
    for limit in (1, 1000):
        assert client.get(f"/v1/accounts?limit={limit}", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("cursor", ["garbage", "", "YWJj", "%%%", "c1" * 200])
def test_list_accounts_rejects_a_foreign_cursor(client: TestClient, cursor: str) -> None:
    response = client.get("/v1/accounts", params={"after": cursor}, headers=ADMIN)
    assert_error(response, 400, "invalid_cursor", "after")


# -- API keys ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["admin", "owner", "viewer", "platform"])
def test_admin_issues_a_key_of_every_role(
    client: TestClient, container: Container, role: str
) -> None:
    create_account(client)
    key = issue_key(client, "acme", role)
    assert set(key) == {"key_id", "token", "role"}
    assert key["role"] == role
    assert len(key["token"]) >= 32
    # The token works, as Bearer and as Basic key_id:token.
    assert client.get("/v1/accounts/acme", headers=bearer(key["token"])).status_code == 200
    assert client.get("/v1/accounts/acme", auth=(key["key_id"], key["token"])).status_code == 200
    # Only its SHA-256 is stored; no column of any key row holds the token.
    with container.db.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(api_keys))]
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(key["token"].encode()).hexdigest()
    assert all(key["token"] not in str(value) for value in rows[0].values())


def test_owner_issues_keys_for_its_own_account(client: TestClient) -> None:
    create_account(client)
    owner = issue_key(client, "acme", "owner")
    viewer = issue_key(client, "acme", "viewer", headers=bearer(owner["token"]))
    assert viewer["role"] == "viewer"
    assert (
        client.get("/v1/accounts/acme/balance", headers=bearer(viewer["token"])).status_code == 200
    )


def test_each_key_gets_its_own_token(client: TestClient) -> None:
    create_account(client)
    tokens = {issue_key(client, "acme", "viewer")["token"] for _ in range(5)}
    assert len(tokens) == 5


@pytest.mark.parametrize("role", ["root", "", "ADMIN", None, 1])
def test_api_key_with_unknown_role_is_invalid_role(client: TestClient, role: object) -> None:
    create_account(client)
    response = client.post("/v1/accounts/acme/api-keys", json={"role": role}, headers=ADMIN)
    assert_error(response, 422, "invalid_role", "role")


def test_api_key_without_role_is_missing_field(client: TestClient) -> None:
    create_account(client)
    response = client.post("/v1/accounts/acme/api-keys", json={}, headers=ADMIN)
    assert_error(response, 422, "missing_field", "role")


def test_api_key_for_unknown_account_is_404(client: TestClient) -> None:
    response = client.post("/v1/accounts/nobody/api-keys", json={"role": "viewer"}, headers=ADMIN)
    assert_error(response, 404, "account_not_found")


def test_revoked_key_is_401_afterwards(client: TestClient) -> None:
    create_account(client)
    key = issue_key(client, "acme", "owner")
    other = issue_key(client, "acme", "viewer")
    assert client.get("/v1/accounts/acme", headers=bearer(key["token"])).status_code == 200
    revoked = client.delete(f"/v1/accounts/acme/api-keys/{key['key_id']}", headers=ADMIN)
    assert revoked.status_code == 204
    assert revoked.content == b""
    assert_error(
        client.get("/v1/accounts/acme", headers=bearer(key["token"])), 401, "unauthenticated"
    )
    assert_error(
        client.get("/v1/accounts/acme", auth=(key["key_id"], key["token"])), 401, "unauthenticated"
    )
    # Other keys are untouched; revoking twice is a 404.
    assert client.get("/v1/accounts/acme", headers=bearer(other["token"])).status_code == 200
    again = client.delete(f"/v1/accounts/acme/api-keys/{key['key_id']}", headers=ADMIN)
    assert_error(again, 404, "api_key_not_found")


def test_owner_revokes_a_key_of_its_account(client: TestClient) -> None:
    create_account(client)
    owner = issue_key(client, "acme", "owner")
    viewer = issue_key(client, "acme", "viewer")
    response = client.delete(
        f"/v1/accounts/acme/api-keys/{viewer['key_id']}", headers=bearer(owner["token"])
    )
    assert response.status_code == 204
    assert client.get("/v1/accounts/acme", headers=bearer(viewer["token"])).status_code == 401


def test_revoke_unknown_key_or_key_of_another_account_is_404(client: TestClient) -> None:
    create_account(client, "acme")
    create_account(client, "globex")
    globex_key = issue_key(client, "globex", "viewer")
    unknown = client.delete("/v1/accounts/acme/api-keys/key_nope", headers=ADMIN)
    assert_error(unknown, 404, "api_key_not_found")
    foreign = client.delete(f"/v1/accounts/acme/api-keys/{globex_key['key_id']}", headers=ADMIN)
    assert_error(foreign, 404, "api_key_not_found")
    assert client.get("/v1/accounts/globex", headers=bearer(globex_key["token"])).status_code == 200


# -- dashboard users -----------------------------------------------------------------------
def test_create_user_lowercases_email_and_stores_a_scrypt_hash(
    client: TestClient, container: Container
) -> None:
    create_account(client)
    password = "correct horse battery staple"
    response = client.post(
        "/v1/accounts/acme/users",
        json={"email": "Priya.Sharma@Example.COM", "password": password, "role": "owner"},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"user_id", "email", "role"}
    assert body["email"] == "priya.sharma@example.com"
    assert body["role"] == "owner"
    with container.db.read() as conn:
        row = conn.execute(sa.select(users).where(users.c.user_id == body["user_id"])).one()
    assert row.email == "priya.sharma@example.com"
    assert row.account_id == "acme"
    assert row.password_hash.startswith("scrypt$")
    assert password not in row.password_hash
    assert verify_password(password, row.password_hash)
    assert not verify_password(password + "!", row.password_hash)


def test_create_user_defaults_to_viewer(client: TestClient) -> None:
    create_account(client)
    response = client.post(
        "/v1/accounts/acme/users",
        json={"email": "v@example.com", "password": "p" * 12},
        headers=ADMIN,
    )
    assert response.status_code == 201
    assert response.json()["role"] == "viewer"


def test_owner_creates_users(client: TestClient) -> None:
    create_account(client)
    owner = issue_key(client, "acme", "owner")
    response = client.post(
        "/v1/accounts/acme/users",
        json={"email": "o@example.com", "password": "p" * 12, "role": "owner"},
        headers=bearer(owner["token"]),
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"password": "short"}, "weak_password", "password"),
        ({"password": "x" * 11}, "weak_password", "password"),
        ({"password": ""}, "weak_password", "password"),
        ({"email": "not-an-email"}, "invalid_email", "email"),
        ({"email": "a@b"}, "invalid_email", "email"),
        ({"email": "two@@example.com"}, "invalid_email", "email"),
        ({"email": "sp ace@example.com"}, "invalid_email", "email"),
        ({"email": ""}, "invalid_email", "email"),
        ({"role": "admin"}, "invalid_role", "role"),
        ({"role": "platform"}, "invalid_role", "role"),
        ({"email": None}, "validation_error", "email"),
        ({"extra": True}, "unknown_field", "extra"),
    ],
)
def test_create_user_rejects_bad_values(
    client: TestClient, container: Container, fields: dict, code: str, field: str
) -> None:
    create_account(client)
    body = {"email": "user@example.com", "password": "long enough password", **fields}
    response = client.post("/v1/accounts/acme/users", json=body, headers=ADMIN)
    assert_error(response, 422, code, field)
    with container.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() == 0


def test_create_user_with_missing_password_is_missing_field(client: TestClient) -> None:
    create_account(client)
    response = client.post(
        "/v1/accounts/acme/users", json={"email": "a@example.com"}, headers=ADMIN
    )
    assert_error(response, 422, "missing_field", "password")


def test_duplicate_user_email_is_409_whatever_its_case(client: TestClient) -> None:
    create_account(client, "acme")
    create_account(client, "globex")
    first = client.post(
        "/v1/accounts/acme/users",
        json={"email": "dup@example.com", "password": "p" * 12},
        headers=ADMIN,
    )
    assert first.status_code == 201
    for account_id in ("acme", "globex"):
        again = client.post(
            f"/v1/accounts/{account_id}/users",
            json={"email": "DUP@Example.com", "password": "q" * 12},
            headers=ADMIN,
        )
        assert_error(again, 409, "user_exists", "email")


def test_create_user_for_unknown_account_is_404(client: TestClient) -> None:
    response = client.post(
        "/v1/accounts/nobody/users",
        json={"email": "a@example.com", "password": "p" * 12},
        headers=ADMIN,
    )
    assert_error(response, 404, "account_not_found")


def test_a_key_revoked_by_another_process_stops_working_within_the_cache_time(
    database_url: str, clock: ManualClock
) -> None:
    """Each process keeps keys it looked up for `api_key_cache_seconds` (monotonic time):
    revoked through one process, a key still works in another until its entry there is
    that old, then never again. Unknown tokens are never kept."""
    settings = Settings(database_url=database_url, test_clock=True, api_key_cache_seconds=0.5)
    first = build(settings, ADMIN_TOKEN, clock=clock)
    second = build(settings, ADMIN_TOKEN, clock=clock)
    try:
        first.accounts.create_account("Acme", "acme")
        key = first.accounts.create_api_key("acme", "platform", ADMIN_PRINCIPAL)
        assert second.accounts.known_principal(key.token) is None  # not looked up yet
        seen = second.accounts.principal_for_token(key.token)
        assert seen is not None and seen.account_id == "acme"
        assert second.accounts.known_principal(key.token) == seen
        first.accounts.revoke_api_key("acme", key.key_id)
        assert first.accounts.principal_for_token(key.token) is None
        assert second.accounts.principal_for_token(key.token) == seen  # cached in `second`
        time.sleep(0.6)  # the cache follows real time, not the test clock
        assert second.accounts.known_principal(key.token) is None
        assert second.accounts.principal_for_token(key.token) is None
        assert second.accounts.principal_for_token("no-such-token") is None
        assert second.accounts.known_principal("no-such-token") is None
    finally:
        first.close()
        second.close()


def test_a_lookup_that_began_before_a_revocation_is_not_kept() -> None:
    cache = KeyCache(60)
    principal = Principal(Role.PLATFORM, "acme", "key_1")
    began = cache.generation
    cache.clear()  # a revocation while the lookup was reading the database
    cache.put("digest", principal, began)
    assert cache.get("digest") is None
    cache.put("digest", principal, cache.generation)
    assert cache.get("digest") == principal
    assert KeyCache(0).get("digest") is None  # 0 keeps nothing


def test_without_the_cache_a_revocation_elsewhere_is_seen_at_once(
    database_url: str, clock: ManualClock
) -> None:
    settings = Settings(database_url=database_url, test_clock=True, api_key_cache_seconds=0)
    first = build(settings, ADMIN_TOKEN, clock=clock)
    second = build(settings, ADMIN_TOKEN, clock=clock)
    try:
        first.accounts.create_account("Acme", "acme")
        key = first.accounts.create_api_key("acme", "owner", ADMIN_PRINCIPAL)
        assert second.accounts.principal_for_token(key.token) is not None
        first.accounts.revoke_api_key("acme", key.key_id)
        assert second.accounts.principal_for_token(key.token) is None
    finally:
        first.close()
        second.close()

"""The access policy over HTTP: who may call what (API.md "Conventions", roles).

401 = no or bad credentials; 403 = authenticated but the role may not; 404 = the account is
not yours (exactly as if it did not exist); admin (the operator token) sees everything.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN

CREDIT = {"type": "paid", "amount": "100.00"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def setup_accounts(client: TestClient) -> dict[str, dict[str, str]]:
    """Accounts acme and globex, each with a key of every role; returns keys by name."""
    keys: dict[str, dict[str, str]] = {}
    for account_id in ("acme", "globex"):
        created = client.post(
            "/v1/accounts", json={"id": account_id, "name": account_id}, headers=ADMIN
        )
        assert created.status_code == 201, created.text
        for role in ("owner", "viewer", "platform"):
            key = client.post(
                f"/v1/accounts/{account_id}/api-keys", json={"role": role}, headers=ADMIN
            )
            assert key.status_code == 201, key.text
            keys[f"{account_id}_{role}"] = key.json()
    return keys


@pytest.fixture
def keys(client: TestClient) -> dict[str, dict[str, str]]:
    return setup_accounts(client)


# -- 401 -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-real-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Token {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": "Basic"},
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon-here").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
        {"X-Api-Key": ADMIN_TOKEN},
    ],
)
def test_missing_or_bad_credentials_are_401(
    client: TestClient, keys: dict, headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/v1/accounts"),
        ("GET", "/v1/accounts/acme"),
        ("GET", "/v1/accounts/acme/balance"),
        ("GET", "/v1/accounts/nobody/balance"),
        ("POST", "/v1/accounts/acme/credits"),
        ("GET", "/v1/test-clock"),
    ]:
        response = client.request(method, path, headers=headers, json=CREDIT)
        assert_error(response, 401, "unauthenticated")
        assert "Basic" in response.headers["WWW-Authenticate"]
    assert client.get("/v1/accounts/acme/balance", headers=ADMIN).json()["paid_credits"] == "0.00"


def test_basic_auth_with_key_id_and_token(client: TestClient, keys: dict) -> None:
    key = keys["acme_viewer"]
    assert (
        client.get("/v1/accounts/acme", headers=basic(key["key_id"], key["token"])).status_code
        == 200
    )
    assert client.get("/v1/accounts/acme", auth=(key["key_id"], key["token"])).status_code == 200


def test_basic_auth_with_account_id_as_username(client: TestClient, keys: dict) -> None:
    """Exotel style: the account id as the user name, the key's token as the password."""
    key = keys["acme_owner"]
    assert client.get("/v1/accounts/acme", headers=basic("acme", key["token"])).status_code == 200


def test_bearer_token(client: TestClient, keys: dict) -> None:
    assert (
        client.get("/v1/accounts/acme", headers=bearer(keys["acme_viewer"]["token"])).status_code
        == 200
    )
    assert (
        client.get("/v1/accounts", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}).status_code
        == 200
    )


def test_basic_auth_mismatches_are_401(client: TestClient, keys: dict) -> None:
    acme = keys["acme_viewer"]
    other = keys["acme_owner"]
    globex = keys["globex_viewer"]
    for username, password in [
        (acme["key_id"], "wrong-token"),
        (acme["key_id"], ""),
        (acme["key_id"], other["token"]),  # another key's token
        (other["key_id"], acme["token"]),
        ("globex", acme["token"]),  # another account's id
        (globex["key_id"], acme["token"]),
        ("", acme["token"]),
        ("somebody", acme["token"]),
        (acme["token"], acme["key_id"]),  # swapped
    ]:
        response = client.get("/v1/accounts/acme", headers=basic(username, password))
        assert_error(response, 401, "unauthenticated")


def test_admin_token_works_as_bearer_and_as_basic_password(client: TestClient) -> None:
    assert client.get("/v1/accounts", headers=ADMIN).status_code == 200
    assert client.get("/v1/accounts", headers=basic("operator", ADMIN_TOKEN)).status_code == 200


# -- 403 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["owner", "viewer", "platform"])
def test_only_admin_adds_credits(client: TestClient, keys: dict, role: str) -> None:
    token = keys[f"acme_{role}"]["token"]
    response = client.post(
        "/v1/accounts/acme/credits",
        json=CREDIT,
        headers={**bearer(token), "Idempotency-Key": f"k-{role}"},
    )
    assert_error(response, 403, "forbidden")
    assert client.get("/v1/accounts/acme/balance", headers=ADMIN).json()["paid_credits"] == "0.00"
    assert client.get("/v1/accounts/acme/ledger", headers=ADMIN).json()["data"] == []
    # The same idempotency key is still free for the operator.
    ok = client.post(
        "/v1/accounts/acme/credits", json=CREDIT, headers={**ADMIN, "Idempotency-Key": f"k-{role}"}
    )
    assert ok.status_code == 201


@pytest.mark.parametrize("role", ["viewer", "platform"])
def test_read_only_roles_may_not_manage_keys_or_users(
    client: TestClient, keys: dict, role: str
) -> None:
    headers = bearer(keys[f"acme_{role}"]["token"])
    assert_error(
        client.post("/v1/accounts/acme/api-keys", json={"role": "viewer"}, headers=headers),
        403,
        "forbidden",
    )
    owner_key = keys["acme_owner"]["key_id"]
    assert_error(
        client.delete(f"/v1/accounts/acme/api-keys/{owner_key}", headers=headers), 403, "forbidden"
    )
    assert_error(
        client.post(
            "/v1/accounts/acme/users",
            json={"email": "x@example.com", "password": "p" * 12},
            headers=headers,
        ),
        403,
        "forbidden",
    )
    # The owner key was not revoked.
    assert (
        client.get("/v1/accounts/acme", headers=bearer(keys["acme_owner"]["token"])).status_code
        == 200
    )


def test_owner_may_not_issue_an_admin_key(client: TestClient, keys: dict) -> None:
    response = client.post(
        "/v1/accounts/acme/api-keys",
        json={"role": "admin"},
        headers=bearer(keys["acme_owner"]["token"]),
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_role"
    assert response.json()["error"]["field"] == "role"


@pytest.mark.parametrize("role", ["owner", "viewer", "platform"])
def test_operator_endpoints_are_403_for_account_keys(
    client: TestClient, keys: dict, role: str
) -> None:
    headers = bearer(keys[f"acme_{role}"]["token"])
    assert_error(client.get("/v1/accounts", headers=headers), 403, "forbidden")
    assert_error(
        client.post("/v1/accounts", json={"id": "mine", "name": "Mine"}, headers=headers),
        403,
        "forbidden",
    )
    assert_error(client.get("/v1/test-clock", headers=headers), 403, "forbidden")
    assert_error(
        client.post("/v1/test-clock/advance", json={"seconds": 60}, headers=headers),
        403,
        "forbidden",
    )
    assert client.get("/v1/accounts/mine", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("role", ["owner", "viewer", "platform"])
def test_every_role_reads_its_own_account(client: TestClient, keys: dict, role: str) -> None:
    headers = bearer(keys[f"acme_{role}"]["token"])
    for path in ("", "/balance", "/ledger", "/credits"):
        response = client.get(f"/v1/accounts/acme{path}", headers=headers)
        assert response.status_code == 200, (path, response.text)


# -- 404 for other accounts ------------------------------------------------------------------
def _comparable(response: httpx.Response, account_id: str) -> tuple[int, object]:
    """A response with the account id masked, to compare 'not yours' with 'absent'."""
    return response.status_code, response.text.replace(account_id, "<id>")


@pytest.mark.parametrize("role", ["owner", "viewer", "platform"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("GET", "/balance", None),
        ("GET", "/ledger", None),
        ("GET", "/credits", None),
        ("GET", "/balance/stream", None),
        ("POST", "/credits", CREDIT),
        ("POST", "/api-keys", {"role": "viewer"}),
        ("POST", "/users", {"email": "z@example.com", "password": "p" * 12}),
        ("DELETE", "/api-keys/key_0000", None),
    ],
)
def test_another_accounts_resources_look_absent(
    client: TestClient, keys: dict, role: str, method: str, path: str, body: dict | None
) -> None:
    headers = bearer(keys[f"acme_{role}"]["token"])
    foreign = client.request(method, f"/v1/accounts/globex{path}", headers=headers, json=body)
    absent = client.request(method, f"/v1/accounts/nosuch{path}", headers=headers, json=body)
    assert_error(foreign, 404, "account_not_found")
    assert _comparable(foreign, "globex") == _comparable(absent, "nosuch")
    assert dict(foreign.headers) == dict(absent.headers)  # "globex" and "nosuch": same length


def test_a_foreign_key_id_in_my_account_path_is_404(client: TestClient, keys: dict) -> None:
    owner = bearer(keys["acme_owner"]["token"])
    globex_key = keys["globex_viewer"]
    response = client.delete(f"/v1/accounts/acme/api-keys/{globex_key['key_id']}", headers=owner)
    assert_error(response, 404, "api_key_not_found")
    assert client.get("/v1/accounts/globex", headers=bearer(globex_key["token"])).status_code == 200


def test_owner_of_one_account_cannot_touch_another(client: TestClient, keys: dict) -> None:
    owner = bearer(keys["acme_owner"]["token"])
    globex_owner = keys["globex_owner"]
    revoke = client.delete(f"/v1/accounts/globex/api-keys/{globex_owner['key_id']}", headers=owner)
    assert_error(revoke, 404, "account_not_found")
    assert (
        client.get("/v1/accounts/globex", headers=bearer(globex_owner["token"])).status_code == 200
    )


# -- admin -----------------------------------------------------------------------------------
def test_admin_sees_and_manages_every_account(client: TestClient, keys: dict) -> None:
    listed = client.get("/v1/accounts", headers=ADMIN).json()["data"]
    assert [a["id"] for a in listed] == ["acme", "globex"]
    for account_id in ("acme", "globex"):
        for path in ("", "/balance", "/ledger", "/credits"):
            response = client.get(f"/v1/accounts/{account_id}{path}", headers=ADMIN)
            assert response.status_code == 200, response.text
        credit = client.post(f"/v1/accounts/{account_id}/credits", json=CREDIT, headers=ADMIN)
        assert credit.status_code == 201
        key = client.post(
            f"/v1/accounts/{account_id}/api-keys", json={"role": "admin"}, headers=ADMIN
        )
        assert key.status_code == 201
    # An admin key issued on an account is an operator key: it too sees every account.
    admin_key = bearer(key.json()["token"])
    assert client.get("/v1/accounts/acme/balance", headers=admin_key).status_code == 200
    assert client.get("/v1/accounts", headers=admin_key).status_code == 200

"""The hot routes read their own body (api/lean.py). They must answer every bad body exactly
as FastAPI answers a route that declares the same model, and the OpenAPI document must show
the same body: a reference app, built the usual way with the same error handlers, is the
yardstick."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tests.conftest import ADMIN
from usagewatch.api import errors
from usagewatch.api.routes.calls import CallEndIn, CallIn
from usagewatch.api.routes.messages import ConversationIn, SmsIn

SMS = {"sms_sid": "SM1", "type": "transactional", "to": "+919800000001", "body": "hi"}
CONVERSATION = {"conversation_id": "WA1", "category": "utility"}
CALL = {"call_sid": "CA1", "direction": "outbound", "to": "+919800000002"}
CALL_END = {"status": "completed", "duration_seconds": 30}
ROUTES: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
    ("/v1/accounts/acme/sms", SmsIn, SMS),
    ("/v1/accounts/acme/whatsapp/conversations", ConversationIn, CONVERSATION),
    ("/v1/accounts/acme/calls", CallIn, CALL),
    ("/v1/accounts/acme/calls/CA9/end", CallEndIn, CALL_END),
]


def reference_app() -> FastAPI:
    """Each model as a declared body, the way every other route takes its body."""
    app = FastAPI(strict_content_type=False)
    errors.install(app)
    for _path, model, _valid in ROUTES:

        def route(body: Any) -> dict[str, str]:
            return {}

        route.__annotations__ = {"body": model, "return": dict}  # not the string "model"
        app.post(f"/ref/{model.__name__}")(route)
    return app


def bad_bodies(valid: dict[str, Any]) -> list[tuple[bytes, dict[str, str]]]:
    """(body, extra headers): every way a body can be wrong."""
    first = next(iter(valid))
    as_json = [
        {},
        {**valid, "unknown": 1},
        {**valid, first: 1},
        {**valid, first: None},
        {**valid, first: ""},
        {**valid, first: "x" * 200},
        {**valid, first: ["a"]},
        {**valid, first: {"a": 1}},
        {k: v for k, v in valid.items() if k != first},
        {**valid, "units": "1"},
        {**valid, "units": 1.5},
        {**valid, "duration_seconds": True},
        {**valid, "duration_seconds": "30"},
        {**valid, "duration_seconds": 10**30},
        {**valid, "units": float("nan")},
        {**valid, "duration_seconds": float("inf")},
    ]
    raw = [
        b"",
        b"null",
        b"[]",
        b'"text"',
        b"1",
        b"{",
        b'{"a": 1,}',
        b"\xff\xfe\x00",
        b"{}{}",
        b"[" * 100_000,
    ]
    bodies = [(json.dumps(b).encode(), {}) for b in as_json] + [(b, {}) for b in raw]
    valid_bytes = json.dumps(valid).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/x"):
        bodies.append((valid_bytes, {"Content-Type": content_type}))
    bodies.append((json.dumps({**valid, first: 1}).encode(), {"Content-Type": "a/b+json"}))
    bodies.append((b"{", {"Content-Type": "application/merge-patch+json; charset=utf-8"}))
    return bodies


@pytest.fixture
def platform(client: TestClient) -> dict[str, str]:
    assert client.post("/v1/accounts", json={"id": "acme", "name": "A"}, headers=ADMIN).is_success
    key = client.post("/v1/accounts/acme/api-keys", json={"role": "platform"}, headers=ADMIN)
    return {"Authorization": f"Bearer {key.json()['token']}"}


def test_every_bad_body_gets_the_answer_of_a_declared_body(
    client: TestClient, platform: dict[str, str]
) -> None:
    reference = TestClient(reference_app())
    checked = 0
    for path, model, valid in ROUTES:
        for body, headers in bad_bodies(valid):
            theirs = reference.post(f"/ref/{model.__name__}", content=body, headers=headers)
            if theirs.status_code == 200:
                continue  # the model takes it (an empty status, say): the service judges it
            ours = client.post(path, content=body, headers={**platform, **headers})
            assert ours.status_code in (400, 422), (path, body, ours.text)
            assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json()), (
                path,
                body,
                headers,
            )
            checked += 1
    assert checked > 3 * len(bad_bodies(SMS))
    # nothing was charged or recorded by any of them
    balance = client.get("/v1/accounts/acme/balance", headers=ADMIN).json()
    assert balance["today_usage"] == "0.00"
    assert client.get("/v1/accounts/acme/calls", headers=ADMIN).json()["data"] == []


def test_access_is_checked_where_every_other_route_checks_it(
    client: TestClient, platform: dict[str, str]
) -> None:
    """As on a route with a declared body: a body that is not JSON at all is refused (400)
    before the credentials are looked at; every other fault of the body only once the caller
    may act on the account, so a caller without access learns nothing about its fields."""
    viewer = client.post("/v1/accounts/acme/api-keys", json={"role": "viewer"}, headers=ADMIN)
    as_viewer = {"Authorization": f"Bearer {viewer.json()['token']}"}
    credits = client.post("/v1/accounts/acme/credits", content=b"{")  # a usual route
    assert credits.status_code == 400
    for path, _model, _valid in ROUTES:
        not_json = client.post(path, content=b"{")
        assert (not_json.status_code, not_json.json()) == (400, credits.json())
        for body in (b"{}", b'{"unknown": 1}', b"", b"[]"):
            assert client.post(path, content=body).status_code == 401
            assert client.post(path, content=body, headers=as_viewer).status_code == 403
            other = path.replace("/acme/", "/nobody/")
            missing = client.post(other, content=body, headers=platform)
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "account_not_found"


def test_openapi_shows_the_bodies_as_a_declared_body_would(client: TestClient) -> None:
    ours = client.get("/openapi.json").json()
    theirs = TestClient(reference_app()).get("/openapi.json").json()
    for path, model, _valid in ROUTES:
        name = model.__name__
        assert ours["components"]["schemas"][name] == theirs["components"]["schemas"][name]
        template = path.replace("acme", "{account_id}").replace("CA9", "{call_sid}")
        operation = ours["paths"][template]["post"]
        reference = theirs["paths"][f"/ref/{name}"]["post"]
        assert operation["requestBody"] == reference["requestBody"]
        assert [p["name"] for p in operation["parameters"]] == [
            n for n in ("account_id", "call_sid") if "{" + n + "}" in template
        ]


def test_responses_are_the_documented_models(client: TestClient, platform: dict[str, str]) -> None:
    assert client.post(
        "/v1/accounts/acme/credits", json={"type": "paid", "amount": "5"}, headers=ADMIN
    ).is_success
    sms = client.post("/v1/accounts/acme/sms", json=SMS, headers=platform)
    assert sms.status_code == 201 and sms.headers["content-type"] == "application/json"
    assert sms.json() == {
        "sms_sid": "SM1",
        "type": "transactional",
        "units": 1,
        "price": "0.20",
        "status": "sent",
    }
    wa = client.post(
        "/v1/accounts/acme/whatsapp/conversations", json=CONVERSATION, headers=platform
    )
    assert wa.status_code == 201 and set(wa.json()) == {"conversation_id", "category", "price"}
    call = client.post("/v1/accounts/acme/calls", json=CALL, headers=platform)
    assert call.status_code == 201
    assert set(call.json()) == {
        "call_sid",
        "status",
        "max_duration_seconds",
        "reserved_amount",
        "reserved_until",
    }
    end = client.post("/v1/accounts/acme/calls/CA1/end", json=CALL_END, headers=platform)
    assert end.status_code == 200
    assert end.json() == {
        "call_sid": "CA1",
        "status": "completed",
        "duration_seconds": 30,
        "pulses": 1,
        "price": "0.60",
    }

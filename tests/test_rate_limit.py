"""The per-key rate limit (API.md's 429): a token bucket per API key and process, refused
requests do nothing, the Exotel paths answer it as a RestException."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from usagewatch.api.app import create_app
from usagewatch.api.ratelimit import RateLimiter
from usagewatch.bootstrap import Container

from .conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE = "/v1/accounts/acme"


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    time = FakeTime()
    limiter = RateLimiter(5, now=time)
    assert [limiter.retry_after("k") for _ in range(5)] == [None] * 5  # a full bucket
    assert limiter.retry_after("k") == 1
    assert limiter.retry_after("other") is None  # each key has its own bucket
    time.now += 0.2  # one token back
    assert limiter.retry_after("k") is None
    assert limiter.retry_after("k") == 1
    time.now += 60  # a quiet spell refills it to one second's worth, no more
    assert [limiter.retry_after("k") for _ in range(6)] == [None] * 5 + [1]


def test_a_slow_rate_says_how_long_to_wait() -> None:
    time = FakeTime()
    limiter = RateLimiter(0.1, now=time)  # one request every ten seconds
    assert limiter.retry_after("k") is None
    assert limiter.retry_after("k") == 10
    time.now += 4
    assert limiter.retry_after("k") == 6


def test_zero_switches_it_off() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.retry_after("k") is None for _ in range(10_000))


def test_idle_full_buckets_are_forgotten_past_the_key_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("usagewatch.api.ratelimit.KEYS_KEPT_MAX", 3)
    time = FakeTime()
    limiter = RateLimiter(10, now=time)
    for key in ("a", "b", "c"):
        limiter.retry_after(key)
    time.now += 5
    limiter.retry_after("d")
    assert set(limiter._buckets) == {"d"}


@pytest.fixture
def limited(container: Container) -> Iterator[tuple[TestClient, FakeTime]]:
    container.accounts.create_account("Acme", "acme")
    app = create_app(container, run_sweeper=False)
    time = FakeTime()
    app.state.rate_limiter = RateLimiter(3, now=time)
    with TestClient(app) as client:
        yield client, time


def key(client: TestClient, role: str) -> dict[str, str]:
    issued = client.post(f"{BASE}/api-keys", json={"role": role}, headers=ADMIN).json()
    return {"Authorization": f"Bearer {issued['token']}"}


def test_past_the_limit_a_request_is_429_and_does_nothing(
    limited: tuple[TestClient, FakeTime],
) -> None:
    client, time = limited
    body = {"type": "paid", "amount": "10.00"}
    assert client.post(f"{BASE}/credits", json=body, headers=ADMIN).status_code == 201
    platform = key(client, "platform")

    def sms(sid: str) -> object:
        body = {"sms_sid": sid, "type": "transactional", "to": "+919800000001", "units": 1}
        return client.post(f"{BASE}/sms", json=body, headers=platform)

    assert [sms(f"S{i}").status_code for i in range(3)] == [201, 201, 201]
    refused = sms("S3")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "1"
    balance = client.get(f"{BASE}/balance", headers=ADMIN).json()  # the operator: no limit
    assert balance["available_balance"] == "9.40"  # three SMS at 0.20, not four
    missing = client.get(f"{BASE}/sms/S3", headers=ADMIN)
    assert missing.status_code == 404
    for _ in range(20):
        assert client.get(f"{BASE}/balance", headers=ADMIN).status_code == 200
    owner = key(client, "owner")  # another key of the same account has its own bucket
    assert client.get(f"{BASE}/balance", headers=owner).status_code == 200
    time.now += 1
    assert sms("S3").status_code == 201


def test_the_exotel_paths_answer_429_as_a_rest_exception(
    limited: tuple[TestClient, FakeTime],
) -> None:
    client, _ = limited
    viewer = key(client, "viewer")
    for _ in range(3):
        assert client.get("/v1/Accounts/acme/Balance.json", headers=viewer).status_code == 200
    json_answer = client.get("/v1/Accounts/acme/Balance.json", headers=viewer)
    assert json_answer.status_code == 429 and json_answer.headers["Retry-After"] == "1"
    assert json_answer.json()["RestException"]["Status"] == 429
    xml_answer = client.get("/v1/Accounts/acme/Balance", headers=viewer)
    assert xml_answer.status_code == 429
    assert "<Status>429</Status>" in xml_answer.text

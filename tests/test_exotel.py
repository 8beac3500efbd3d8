"""The Exotel-compatible read API (docs/exotel.md), on both engines: Exotel's paths, field
names, JSON and XML forms, both Basic-auth forms, the bulk call list's filters and keyset
pages, and RestException errors (never the native envelope)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree as ET

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, START
from usagewatch.adapters.db.usage_store import UsageRecord, insert_record
from usagewatch.bootstrap import Container
from usagewatch.domain.clock import to_micros
from usagewatch.domain.money import Money


@dataclass(frozen=True)
class Key:
    key_id: str
    token: str


def _account(client: TestClient, account_id: str, timezone: str = "Asia/Kolkata") -> Key:
    body = {"id": account_id, "name": account_id, "timezone": timezone}
    made = client.post("/v1/accounts", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    credit = {"type": "paid", "amount": "100.00"}
    paid = client.post(f"/v1/accounts/{account_id}/credits", json=credit, headers=ADMIN)
    assert paid.status_code == 201, paid.text
    key = client.post(f"/v1/accounts/{account_id}/api-keys", json={"role": "viewer"}, headers=ADMIN)
    assert key.status_code == 201, key.text
    return Key(key.json()["key_id"], key.json()["token"])


@pytest.fixture
def acme(client: TestClient) -> Key:
    return _account(client, "acme")


@pytest.fixture
def other(client: TestClient) -> Key:
    return _account(client, "other")


def add_call(
    container: Container,
    sid: str,
    *,
    account: str = "acme",
    start: int = -3600,  # seconds from START (10:00:00 Asia/Kolkata)
    duration: int | None = 75,
    status: str = "completed",
    direction: str = "outbound",
    price: str = "1.20",
    from_: str | None = "+918000000001",
    to: str | None = "+919800000001",
) -> None:
    """A voice usage record as the call endpoints write it."""
    began = START + timedelta(seconds=start)
    ended = began + timedelta(seconds=duration or 0)
    with container.db.write() as conn:
        insert_record(
            conn,
            UsageRecord(
                id=None,
                account_id=account,
                service="voice",
                sub_type=direction,
                natural_id=sid,
                status=status,
                consumer=None,
                campaign_id=None,
                from_number=from_,
                to_number=to,
                quantity=0 if duration is None else -(-duration // 60),
                duration_seconds=duration,
                price_micros=Money.parse(price).micros,
                local_date=began.date().isoformat(),
                occurred_at_us=to_micros(began),
                updated_at_us=to_micros(ended),
                request_fingerprint="test",
            ),
        )


def xml(response: httpx.Response) -> ET.Element:
    assert response.headers["content-type"].startswith("application/xml"), response.headers
    root = ET.fromstring(response.content)
    assert root.tag == "TwilioResponse"
    return root


def rest_exception_json(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"RestException"}
    assert body["RestException"]["Status"] == status
    assert body["RestException"]["Code"] == status
    message: str = body["RestException"]["Message"]
    assert message
    return message


def rest_exception_xml(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    root = xml(response)
    assert root.findtext("RestException/Status") == str(status)
    message = root.findtext("RestException/Message")
    assert message
    return message


# -- one call -------------------------------------------------------------------------------
EXPECTED_CALL = {
    "Sid": "CA1",
    "ParentCallSid": None,
    "DateCreated": "2026-11-28 09:00:00",
    "DateUpdated": "2026-11-28 09:01:15",
    "AccountSid": "acme",
    "To": "+919800000001",
    "From": "+918000000001",
    "PhoneNumberSid": "+918000000001",
    "Status": "completed",
    "StartTime": "2026-11-28 09:00:00",
    "EndTime": "2026-11-28 09:01:15",
    "Duration": "75",
    "Price": "1.20",
    "Direction": "outbound-api",
    "AnsweredBy": None,
    "ForwardedFrom": None,
    "CallerName": None,
    "Uri": "/v1/Accounts/acme/Calls/CA1.json",
    "RecordingUrl": None,
}


def test_one_call_json_with_key_id_or_account_sid_as_username(
    client: TestClient, container: Container, acme: Key
) -> None:
    add_call(container, "CA1")
    for username in (acme.key_id, "acme"):
        response = client.get("/v1/Accounts/acme/Calls/CA1.json", auth=(username, acme.token))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"Call": EXPECTED_CALL}
    # The operator's token works with any username (it sees every account).
    admin = client.get("/v1/Accounts/acme/Calls/CA1.json", auth=("ops", ADMIN["Authorization"][7:]))
    assert admin.status_code == 200


def test_one_call_xml(client: TestClient, container: Container, acme: Key) -> None:
    add_call(container, "CA1", direction="inbound", from_="+91 <&> \"x'", to="+918000000009")
    response = client.get("/v1/Accounts/acme/Calls/CA1", auth=("acme", acme.token))
    assert response.status_code == 200, response.text
    call = xml(response).find("Call")
    assert call is not None
    assert [child.tag for child in call] == list(EXPECTED_CALL)
    assert call.findtext("Sid") == "CA1"
    assert call.findtext("From") == "+91 <&> \"x'"  # escaped on the wire, intact here
    assert call.findtext("PhoneNumberSid") == "+918000000009"  # inbound: the number called
    assert call.findtext("Direction") == "inbound"
    assert call.findtext("Price") == "1.20" and call.findtext("Duration") == "75"
    assert call.findtext("ParentCallSid") == ""  # null: an empty element
    assert call.findtext("Uri") == "/v1/Accounts/acme/Calls/CA1"


def test_call_in_progress_is_shown_alone_but_not_listed(
    client: TestClient, container: Container, acme: Key
) -> None:
    add_call(container, "LIVE", status="in-progress", duration=None, price="0")
    add_call(container, "DONE", start=-7200)
    auth = ("acme", acme.token)
    one = client.get("/v1/Accounts/acme/Calls/LIVE.json", auth=auth).json()["Call"]
    assert one["Status"] == "in-progress"
    assert (one["EndTime"], one["Duration"], one["Price"]) == (None, None, None)
    listed = client.get("/v1/Accounts/acme/Calls.json", auth=auth).json()
    assert [c["Sid"] for c in listed["Calls"]] == ["DONE"]
    assert listed["Metadata"]["Total"] == 1
    live_only = client.get(
        "/v1/Accounts/acme/Calls.json", params={"Status": "in-progress"}, auth=auth
    )
    assert live_only.json()["Calls"] == []


# -- SMS ------------------------------------------------------------------------------------
def test_sms_json_xml_and_any_case_path(
    client: TestClient, container: Container, acme: Key
) -> None:
    container.usage.charge_sms(
        "acme", "SM1", "transactional", to="+919800000001", from_="EXOTEL", body="secret"
    )
    auth = (acme.key_id, acme.token)
    expected = {
        "Sid": "SM1",
        "AccountSid": "acme",
        "From": "EXOTEL",
        "To": "+919800000001",
        "Body": "",
        "Status": "sent",
        "DetailedStatusCode": 20006,
        "DetailedStatus": "DELIVERED_TO_OPERATOR",
        "SmsUnits": 1,
        "Direction": "outbound-api",
        "DateCreated": "2026-11-28 10:00:00",
        "DateUpdated": "2026-11-28 10:00:00",
        "DateSent": "2026-11-28 10:00:00",
        "Price": "0.20",
        "Uri": "/v1/Accounts/acme/SMS/Messages/SM1.json",
    }
    for segment in ("SMS/Messages", "Sms/Messages", "sms/messages", "sMs/MESSAGES"):
        response = client.get(f"/v1/Accounts/acme/{segment}/SM1.json", auth=auth)
        assert response.status_code == 200, (segment, response.text)
        assert response.json() == {"SMSMessage": expected}

    container.clock.advance(5)  # type: ignore[attr-defined]
    container.usage.sms_status("acme", "SM1", "delivered")
    message = xml(client.get("/v1/Accounts/acme/Sms/Messages/SM1", auth=auth)).find("SMSMessage")
    assert message is not None
    assert [child.tag for child in message] == list(expected)
    assert message.findtext("Status") == "sent"
    assert message.findtext("DetailedStatus") == "DELIVERED_TO_HANDSET"
    assert message.findtext("DetailedStatusCode") == "20005"
    assert message.findtext("DateUpdated") == "2026-11-28 10:00:05"
    assert message.findtext("Body") == ""
    assert message.findtext("Uri") == "/v1/Accounts/acme/SMS/Messages/SM1"

    rest_exception_json(client.get("/v1/Accounts/acme/SMS/Messages/NOPE.json", auth=auth), 404)
    rest_exception_xml(client.get("/v1/Accounts/acme/sms/messages/NOPE", auth=auth), 404)
    rest_exception_json(client.get("/v1/Accounts/acme/Smx/Messages/SM1.json", auth=auth), 404)
    rest_exception_json(client.get("/v1/Accounts/acme/SMS/Messages/SM1.json"), 401)


# -- balance --------------------------------------------------------------------------------
def test_balance_json_and_xml(client: TestClient, container: Container, acme: Key) -> None:
    container.clock.advance(60)  # type: ignore[attr-defined]
    container.usage.charge_sms("acme", "SM1", "transactional", to="+919800000001", units=2)
    auth = ("acme", acme.token)
    response = client.get("/v1/Accounts/acme/Balance.json", auth=auth)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "Account": {
            "AccountSid": "acme",
            "BalanceData": {
                "Balance": "99.60",
                "Currency": "INR",
                "PricingPlan": "prepaid",
                "DateUpdated": "2026-11-28 10:01:00",
            },
        }
    }
    data = xml(client.get("/v1/Accounts/acme/Balance", auth=auth)).find("Account/BalanceData")
    assert data is not None and data.findtext("Balance") == "99.60"
    assert data.findtext("PricingPlan") == "prepaid"


# -- errors ---------------------------------------------------------------------------------
def test_unknown_and_foreign_resources_are_404_in_both_forms(
    client: TestClient, container: Container, acme: Key, other: Key
) -> None:
    add_call(container, "CB1", account="other")
    auth = ("acme", acme.token)
    rest_exception_json(client.get("/v1/Accounts/acme/Calls/NOPE.json", auth=auth), 404)
    rest_exception_xml(client.get("/v1/Accounts/acme/Calls/NOPE", auth=auth), 404)
    # Another account's call, looked up under one's own sid or under theirs: 404 both ways,
    # and another account's sid answers exactly as a sid that does not exist.
    rest_exception_json(client.get("/v1/Accounts/acme/Calls/CB1.json", auth=auth), 404)
    theirs = client.get("/v1/Accounts/other/Calls/CB1.json", auth=auth)
    nobody = client.get("/v1/Accounts/nobody/Calls/CB1.json", auth=auth)
    assert rest_exception_json(theirs, 404).replace("other", "X") == rest_exception_json(
        nobody, 404
    ).replace("nobody", "X")
    rest_exception_xml(client.get("/v1/Accounts/other/Balance", auth=auth), 404)
    rest_exception_json(client.get("/v1/Accounts/other/Calls.json", auth=auth), 404)
    # The other account's own key sees it.
    assert client.get("/v1/Accounts/other/Calls/CB1.json", auth=("other", other.token)).json()


def test_credentials_are_required(client: TestClient, container: Container, acme: Key) -> None:
    add_call(container, "CA1")
    for path in (
        "/v1/Accounts/acme/Calls/CA1",
        "/v1/Accounts/acme/Calls",
        "/v1/Accounts/acme/Balance",
    ):
        missing = client.get(path + ".json")
        rest_exception_json(missing, 401)
        assert missing.headers["www-authenticate"].startswith("Basic")
        rest_exception_xml(client.get(path), 401)
        wrong = client.get(path + ".json", auth=("acme", acme.token + "x"))
        rest_exception_json(wrong, 401)
        someone_else = client.get(path + ".json", auth=("other", acme.token))
        rest_exception_json(someone_else, 401)  # the username must be the key id or its sid


def test_other_paths_and_methods_answer_rest_exceptions(client: TestClient, acme: Key) -> None:
    auth = ("acme", acme.token)
    rest_exception_json(client.get("/v1/Accounts/acme/Recordings.json", auth=auth), 404)
    rest_exception_xml(client.get("/v1/Accounts/acme/Calls/CA1/Legs", auth=auth), 404)
    posted = client.post("/v1/Accounts/acme/Calls.json", auth=auth)
    rest_exception_json(posted, 405)
    assert posted.headers["allow"] == "GET, HEAD"
    rest_exception_xml(client.delete("/v1/Accounts/acme/SMS/Messages/SM1", auth=auth), 405)
    rest_exception_json(client.post("/v1/Accounts/acme/Calls/connect.json", auth=auth), 405)


ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + n) for n in range(10)))


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [
        {"PageSize": "0"},
        {"PageSize": "101"},
        {"PageSize": "ten"},
        {"SortBy": "Price:asc"},
        {"DateCreated": "2026-11-28"},
        {"DateCreated": "gte:2026-11-28"},
        {"DateCreated": "gte:2026-13-28 00:00:00"},
        {"DateCreated": "gte:2026-11-28 00:00:00;gte:2026-11-28 00:00:00"},
        {"Duration": "gte:ten"},
        {"Duration": "between:10s"},
        {"Price": "gte:1e3"},
        {"Price": "gte:0.1234567"},
        {"Price": "gte:-1"},
        {"Status": "lost"},
        {"Direction": "sideways"},
        {"Sid": ",".join(f"CA{n}" for n in range(101))},
        {"After": "bm90IGEgY3Vyc29y"},
        {"Before": "!!"},
        {"After": "eDE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OjE"},  # x1:<too large>:1
        {"After": "eDE6LTE6MQ"},  # x1:-1:1
        {"Before": "x", "After": "y"},
        # Only ASCII digits are digits: str.isdigit() and int() disagree on `²`, and other
        # scripts' digits are not what an Exotel client sends.
        {"PageSize": "²"},
        {"PageSize": "10".translate(ARABIC_INDIC)},
        {"PageSize": "1" * 5000},  # more digits than int() reads
        {"After": _cursor("x1:²:1")},
        {"Before": _cursor("x1:" + "10".translate(ARABIC_INDIC) + ":1")},
        {"DateCreated": "gte:2026-11-28 00:00:00".translate(ARABIC_INDIC)},  # strptime refuses
        # Before 0001-01-01 in UTC (acme is in Asia/Kolkata, east of UTC).
        {"DateCreated": "gte:0001-01-01 00:00:00"},
    ],
)
def test_bad_filters_are_400(client: TestClient, acme: Key, params: dict[str, str]) -> None:
    auth = ("acme", acme.token)
    rest_exception_json(client.get("/v1/Accounts/acme/Calls.json", params=params, auth=auth), 400)
    rest_exception_xml(client.get("/v1/Accounts/acme/Calls", params=params, auth=auth), 400)


def test_dates_outside_the_utc_range_are_400(client: TestClient, acme: Key) -> None:
    west = _account(client, "west", timezone="America/Los_Angeles")
    for account, key, bad, good in [
        ("acme", acme, "gte:0001-01-01 00:00:00", "lte:9999-12-31 23:59:59"),
        ("west", west, "lte:9999-12-31 23:59:59", "gte:0001-01-01 00:00:00"),
    ]:
        path = f"/v1/Accounts/{account}/Calls"
        auth = (account, key.token)
        message = rest_exception_json(
            client.get(path + ".json", params={"DateCreated": bad}, auth=auth), 400
        )
        assert "out of range" in message
        rest_exception_xml(client.get(path, params={"DateCreated": bad}, auth=auth), 400)
        assert client.get(path + ".json", params={"DateCreated": good}, auth=auth).json() == {
            "Metadata": {
                "Total": 0,
                "PageSize": 50,
                "FirstPageUri": f"{path}.json?DateCreated={good.replace(' ', '+')}"
                "&PageSize=50&SortBy=DateCreated:desc",
                "PrevPageUri": None,
                "NextPageUri": None,
            },
            "Calls": [],
        }


# -- HEAD, other methods, other paths --------------------------------------------------------
def test_head_answers_as_get_without_a_body(
    client: TestClient, container: Container, acme: Key
) -> None:
    add_call(container, "CA1")
    container.usage.charge_sms("acme", "SM1", "transactional", to="+919800000001", units=1)
    auth = ("acme", acme.token)
    base = "/v1/Accounts/acme/"
    for path in ["Calls/CA1", "Calls", "Balance", "SMS/Messages/SM1", "sms/Messages/SM1"]:
        for suffix in ("", ".json"):
            got = client.get(base + path + suffix, auth=auth)
            head = client.head(base + path + suffix, auth=auth)
            assert got.status_code == head.status_code == 200, (path, got.text)
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]
            assert head.headers["content-length"] == str(len(got.content))
    # Errors too: the GET answer's status and headers, no body.
    for path, status in [
        ("Calls/NOPE.json", 404),
        ("Recordings.json", 404),
        ("Foo/Bar/Baz.json", 404),
        ("Calls/CA1/Legs", 404),
        ("Calls.json?PageSize=0", 400),
    ]:
        got = client.get(base + path, auth=auth)
        head = client.head(base + path, auth=auth)
        assert got.status_code == head.status_code == status, (path, got.text)
        assert "RestException" in got.text and head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
    anonymous = client.head(base + "Balance.json")
    assert anonymous.status_code == 401 and anonymous.content == b""
    assert anonymous.headers["www-authenticate"].startswith("Basic")


KNOWN_PATHS = ["Calls.json", "Calls", "Calls/CA1.json", "Balance", "Sms/Messages/SM1.json"]


@pytest.mark.parametrize("method", ["OPTIONS", "POST", "PUT", "PATCH", "DELETE", "PROPFIND"])
def test_other_methods_are_405_rest_exceptions_with_a_true_allow(
    client: TestClient, container: Container, acme: Key, method: str
) -> None:
    add_call(container, "CA1")
    container.usage.charge_sms("acme", "SM1", "transactional", to="+919800000001", units=1)
    auth = ("acme", acme.token)
    for path in KNOWN_PATHS:
        response = client.request(method, "/v1/Accounts/acme/" + path, auth=auth)
        if path.endswith(".json"):
            message = rest_exception_json(response, 405)
        else:
            message = rest_exception_xml(response, 405)
        assert message == f"{method} is not allowed here"
        assert response.headers["allow"] == "GET, HEAD"
        for allowed in response.headers["allow"].split(", "):  # and each of them answers
            assert client.request(allowed, "/v1/Accounts/acme/" + path, auth=auth).is_success
    rest_exception_json(client.request(method, "/v1/Accounts/acme/Nope.json", auth=auth), 404)
    rest_exception_xml(client.request(method, "/v1/Accounts/acme/Calls/CA1/Legs", auth=auth), 404)


def test_unknown_paths_are_404_whatever_the_method(client: TestClient, acme: Key) -> None:
    auth = ("acme", acme.token)
    for path in ["Foo/Bar/Baz", "Calls/CA1/Legs", "Smx/Messages/SM1", "SMS/Messages/SM1/x"]:
        for method in ("GET", "POST", "DELETE", "OPTIONS"):
            url = "/v1/Accounts/acme/" + path
            rest_exception_json(client.request(method, url + ".json", auth=auth), 404)
            rest_exception_xml(client.request(method, url, auth=auth), 404)
    # A known path with another method stays 405, in any case of the SMS segment.
    rest_exception_json(client.post("/v1/Accounts/acme/sMs/mEssages/SM1.json", auth=auth), 405)


# -- Uris that name the same resource back -------------------------------------------------
AWKWARD_SIDS = ["CA1", "a", "a.json", "..", ".", "a/b", "x y%", "%41", "é?#&"]


def _follow_uri(client: TestClient, uri: str, auth: tuple[str, str], as_json: bool) -> str:
    """Follow a call's Uri; returns the Sid of the call it answers (in the right format)."""
    response = client.get(uri, auth=auth)
    assert response.status_code == 200, (uri, response.text)
    if as_json:
        call = response.json()["Call"]
        assert call["Uri"] == uri
        return str(call["Sid"])
    assert xml(response).findtext("Call/Uri") == uri
    return str(xml(response).findtext("Call/Sid"))


def test_uris_round_trip_to_the_same_call(
    client: TestClient, container: Container, acme: Key
) -> None:
    for sid in AWKWARD_SIDS:
        add_call(container, sid)
    auth = ("acme", acme.token)
    listed = client.get("/v1/Accounts/acme/Calls.json", auth=auth).json()["Calls"]
    json_uris = {call["Sid"]: call["Uri"] for call in listed}
    root = xml(client.get("/v1/Accounts/acme/Calls", auth=auth))
    xml_uris = {c.findtext("Sid"): c.findtext("Uri") for c in root.findall("Calls/Call")}
    assert set(json_uris) == set(xml_uris) == set(AWKWARD_SIDS)
    assert xml_uris["a.json"] == "/v1/Accounts/acme/Calls/a%2Ejson"  # not call `a` in JSON
    assert json_uris["a.json"] == "/v1/Accounts/acme/Calls/a%2Ejson.json"
    assert xml_uris[".."] == "/v1/Accounts/acme/Calls/%2E%2E"  # not a dot segment
    assert json_uris["a/b"] == "/v1/Accounts/acme/Calls/a%2Fb.json"
    for sid in AWKWARD_SIDS:
        assert _follow_uri(client, json_uris[sid], auth, as_json=True) == sid
        assert _follow_uri(client, str(xml_uris[sid]), auth, as_json=False) == sid


def test_sms_uris_round_trip(client: TestClient, container: Container, acme: Key) -> None:
    auth = ("acme", acme.token)
    for sid, path in [("m.json", "m%2Ejson"), ("..", "%2E%2E"), ("s/1", "s%2F1")]:
        container.usage.charge_sms("acme", sid, "transactional", to="+919800000001", units=1)
        for suffix in ("", ".json"):
            uri = f"/v1/Accounts/acme/SMS/Messages/{path}{suffix}"
            response = client.get(uri, auth=auth)
            assert response.status_code == 200, (uri, response.text)
            if suffix:
                assert response.json()["SMSMessage"]["Uri"] == uri
            else:
                assert xml(response).findtext("SMSMessage/Uri") == uri
                assert xml(response).findtext("SMSMessage/Sid") == sid


# -- echoed values --------------------------------------------------------------------------
def test_error_messages_cut_long_values(client: TestClient, acme: Key) -> None:
    auth = ("acme", acme.token)
    long = "x" * 20_000
    for response, status in [
        (client.get(f"/v1/Accounts/acme/Calls/{long}.json", auth=auth), 404),
        (client.get(f"/v1/Accounts/acme/SMS/Messages/{long}.json", auth=auth), 404),
        (client.get(f"/v1/Accounts/{long}/Balance.json", auth=auth), 404),
        (client.get("/v1/Accounts/acme/Calls.json", params={"Status": long}, auth=auth), 400),
        (client.get("/v1/Accounts/acme/Calls.json", params={"Direction": long}, auth=auth), 400),
    ]:
        message = rest_exception_json(response, status)
        assert "'" + "x" * 64 + "…'" in message and len(message) < 200, message


# -- bulk list: filters ---------------------------------------------------------------------
@pytest.fixture
def calls(container: Container, acme: Key) -> None:
    """Five finished calls in the last day, one 40 days ago, one still in progress."""
    add_call(container, "C1", start=-5000, duration=5, price="0.10", status="completed")
    add_call(
        container,
        "C2",
        start=-4000,
        duration=10,
        price="0.60",
        direction="inbound",
        from_="+919811111111",
        to="+918000000001",
    )
    add_call(container, "C3", start=-3000, duration=45, price="1.00", status="busy")
    add_call(container, "C4", start=-2000, duration=46, price="1.000001", status="no-answer")
    add_call(
        container, "C5", start=-1000, duration=0, price="0", status="failed", to="+919822222222"
    )
    add_call(container, "OLD", start=-40 * 86400, duration=60, price="0.60")
    add_call(container, "LIVE", start=-10, duration=None, price="0", status="in-progress")


@pytest.mark.parametrize(
    ("params", "sids"),
    [
        ({}, ["C5", "C4", "C3", "C2", "C1"]),  # default: last 31 days, newest first
        ({"SortBy": "DateCreated:asc"}, ["C1", "C2", "C3", "C4", "C5"]),
        ({"Sid": "C2,OLD,C4,LIVE,NOPE"}, ["C4", "C2"]),  # OLD is outside the default window
        ({"Sid": "OLD", "DateCreated": "gte:2026-10-01 00:00:00"}, ["OLD"]),
        # 10:00 minus 5000 s = 08:36:40; minus 4000 s = 08:53:20; minus 3000 s = 09:10:00
        ({"DateCreated": "gte:2026-11-28 08:53:20;lte:2026-11-28 09:10:00"}, ["C3", "C2"]),
        ({"DateCreated": "gt:2026-11-28 08:53:20;lt:2026-11-28 09:10:00"}, []),
        ({"DateCreated": "lte:2026-11-28 08:36:40"}, ["C1", "OLD"]),
        ({"To": "+919822222222"}, ["C5"]),
        ({"From": "+919811111111"}, ["C2"]),
        ({"Status": "busy"}, ["C3"]),
        ({"Status": "busy,no-answer"}, ["C4", "C3"]),
        ({"Duration": "gte:10s;lte:45s"}, ["C3", "C2"]),
        ({"Duration": "gt:10s"}, ["C4", "C3"]),
        ({"Duration": "lt:10"}, ["C5", "C1"]),
        ({"Price": "gte:0.10;lte:1.0"}, ["C3", "C2", "C1"]),  # exact: 1.000001 is above 1.0
        ({"Price": "gt:1.0"}, ["C4"]),
        ({"Price": "lte:0"}, ["C5"]),
        ({"Direction": "inbound"}, ["C2"]),
        ({"Direction": "outbound-api"}, ["C5", "C4", "C3", "C1"]),
        ({"Direction": "outbound-dial"}, []),
        ({"Price": "gte:" + "9" * 60}, []),  # far beyond any 64-bit column: clamped
        ({"Duration": "lte:9999999999s"}, ["C5", "C4", "C3", "C2", "C1"]),
        ({"Status": "completed", "Direction": "outbound-api", "Price": "lte:0.10"}, ["C1"]),
    ],
)
def test_bulk_list_filters(
    client: TestClient, acme: Key, calls: None, params: dict[str, str], sids: list[str]
) -> None:
    response = client.get("/v1/Accounts/acme/Calls.json", params=params, auth=("acme", acme.token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["Sid"] for c in body["Calls"]] == sids
    assert body["Metadata"]["Total"] == len(sids)
    first = parse_qs(urlsplit(body["Metadata"]["FirstPageUri"]).query)
    for name, value in params.items():
        assert first[name] == [value]  # the filters carry over to the page links


def test_bulk_list_xml(client: TestClient, acme: Key, calls: None) -> None:
    root = xml(client.get("/v1/Accounts/acme/Calls", auth=("acme", acme.token)))
    assert root.findtext("Metadata/Total") == "5"
    assert root.findtext("Metadata/PrevPageUri") == ""
    assert [c.findtext("Sid") for c in root.findall("Calls/Call")] == ["C5", "C4", "C3", "C2", "C1"]
    assert root.findtext("Metadata/FirstPageUri", "").startswith("/v1/Accounts/acme/Calls?")


# -- bulk list: keyset pages ----------------------------------------------------------------
def _follow(client: TestClient, uri: str | None, auth: tuple[str, str]) -> dict[str, Any]:
    assert uri is not None
    response = client.get(uri, auth=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_keyset_pages_forward_and_back(
    client: TestClient, container: Container, acme: Key, order: str
) -> None:
    # Seven calls, two of them at the same instant (the id breaks the tie).
    for n, start in enumerate([-700, -600, -500, -500, -300, -200, -100]):
        add_call(container, f"K{n}", start=start)
    auth = ("acme", acme.token)
    everything = [f"K{n}" for n in range(7)]
    if order == "desc":
        everything.reverse()
    page = _follow(
        client, f"/v1/Accounts/acme/Calls.json?PageSize=3&SortBy=DateCreated:{order}", auth
    )
    pages = [page]
    while page["Metadata"]["NextPageUri"] is not None:
        page = _follow(client, page["Metadata"]["NextPageUri"], auth)
        pages.append(page)
    got = [[c["Sid"] for c in p["Calls"]] for p in pages]
    assert got == [everything[0:3], everything[3:6], everything[6:7]]
    for p in pages:
        meta = p["Metadata"]
        assert meta["Total"] == 7 and meta["PageSize"] == 3
        assert meta["FirstPageUri"] == pages[0]["Metadata"]["FirstPageUri"]
    assert pages[0]["Metadata"]["PrevPageUri"] is None
    # A new call arriving meanwhile does not disturb the walk back.
    add_call(container, "NEW", start=-50)
    back = _follow(client, pages[2]["Metadata"]["PrevPageUri"], auth)
    assert [c["Sid"] for c in back["Calls"]] == everything[3:6]
    back = _follow(client, back["Metadata"]["PrevPageUri"], auth)
    assert [c["Sid"] for c in back["Calls"]] == everything[0:3]
    if order == "desc":  # NEW sorts first: the first page now has something before it
        before = _follow(client, back["Metadata"]["PrevPageUri"], auth)
        assert [c["Sid"] for c in before["Calls"]] == ["NEW"]
        assert before["Metadata"]["PrevPageUri"] is None
    else:
        assert back["Metadata"]["PrevPageUri"] is None
    uri = pages[1]["Metadata"]["NextPageUri"]
    assert uri.startswith("/v1/Accounts/acme/Calls.json?") and "After=" in uri


# -- a real Exotel-style client --------------------------------------------------------------
@pytest.fixture
def served(live_server: str, container: Container) -> Iterator[tuple[str, Key]]:
    with httpx.Client(base_url=live_server) as admin:
        made = admin.post("/v1/accounts", json={"id": "exo1", "name": "Exo"}, headers=ADMIN)
        assert made.status_code == 201
        key = admin.post("/v1/accounts/exo1/api-keys", json={"role": "viewer"}, headers=ADMIN)
    yield live_server, Key(key.json()["key_id"], key.json()["token"])


def test_a_real_exotel_style_client_works(served: tuple[str, Key], container: Container) -> None:
    base, key = served
    add_call(container, "CAX", account="exo1")
    with httpx.Client(base_url=f"{base}/v1/Accounts/exo1", auth=("exo1", key.token)) as exotel:
        call = exotel.get("/Calls/CAX.json")
        assert call.status_code == 200 and call.json()["Call"]["Sid"] == "CAX"
        listed = exotel.get("/Calls.json", params={"Status": "completed", "PageSize": 10})
        assert [c["Sid"] for c in listed.json()["Calls"]] == ["CAX"]
        assert exotel.get("/Balance.json").json()["Account"]["BalanceData"]["Balance"] == "0.00"
        assert ET.fromstring(exotel.get("/Calls/CAX").content).findtext("Call/Status") == (
            "completed"
        )
    anonymous = httpx.get(f"{base}/v1/Accounts/exo1/Calls/CAX.json")
    assert anonymous.status_code == 401 and "RestException" in anonymous.json()


def test_uris_round_trip_through_a_real_server(
    served: tuple[str, Key], container: Container
) -> None:
    base, key = served
    sids = ["a", "a.json", "..", "a/b", "%2F", "x y%"]
    for sid in sids:
        add_call(container, sid, account="exo1")
    with httpx.Client(base_url=base, auth=("exo1", key.token)) as exotel:
        for suffix in (".json", ""):
            listed = exotel.get("/v1/Accounts/exo1/Calls" + suffix)
            assert listed.status_code == 200, listed.text
            if suffix:
                uris = {c["Sid"]: c["Uri"] for c in listed.json()["Calls"]}
            else:
                root = ET.fromstring(listed.content)
                uris = {c.findtext("Sid"): c.findtext("Uri") for c in root.findall("Calls/Call")}
            assert set(uris) == set(sids)
            for sid, uri in uris.items():
                call = exotel.get(str(uri))
                assert call.status_code == 200, (uri, call.text)
                if suffix:
                    assert call.json()["Call"]["Sid"] == sid
                else:
                    assert ET.fromstring(call.content).findtext("Call/Sid") == sid
                head = exotel.head(str(uri))
                assert head.status_code == 200 and head.content == b""
                assert head.headers["content-length"] == str(len(call.content))
        options = exotel.options("/v1/Accounts/exo1/Calls.json")
        assert options.status_code == 405 and options.headers["allow"] == "GET, HEAD"
        assert options.json()["RestException"]["Status"] == 405

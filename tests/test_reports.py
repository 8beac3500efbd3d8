"""Reports, exports and statements over one small, known month of usage: every figure of the
brief's "Usage by Service Type" table, each export opened with an independent reader (csv,
openpyxl, pypdf), bad input, and monthly statements under the test clock."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import openpyxl
import pypdf
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import ADMIN
from usagewatch.adapters.db import migrate
from usagewatch.bootstrap import Container
from usagewatch.service.exports import CSV_COLUMNS

BASE = "/v1/accounts/acme"
PERIOD = {"from": "2026-11-27", "to": "2026-11-28"}
TOTAL = "1702.65"  # every charge below
DECEMBER_IST = datetime(2026, 11, 30, 18, 30, tzinfo=UTC)  # 2026-12-01 00:00 Asia/Kolkata


def _key(client: TestClient, role: str) -> dict[str, str]:
    key = client.post(f"{BASE}/api-keys", json={"role": role}, headers=ADMIN)
    return {"Authorization": f"Bearer {key.json()['token']}"}


@pytest.fixture
def viewer(client: TestClient) -> dict[str, str]:
    """acme with a month of usage on every service; returns a viewer's headers."""
    client.post("/v1/accounts", json={"id": "acme", "name": "Acme & Co"}, headers=ADMIN)
    client.post(f"{BASE}/credits", json={"type": "paid", "amount": "5000.00"}, headers=ADMIN)
    p = _key(client, "platform")
    owner = _key(client, "owner")

    def ok(path: str, body: dict[str, Any], headers: dict[str, str] = p) -> Any:
        response = client.post(f"{BASE}{path}", json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        return response.json()

    ok(
        "/calls",
        {"call_sid": "C1", "direction": "outbound", "consumer": "crm", "to": "+919800000009"},
    )
    ok("/calls/C1/end", {"status": "completed", "duration_seconds": 61})  # 2 pulses, 1.20
    ok("/calls", {"call_sid": "C2", "direction": "outbound"})  # still in progress
    ok(
        "/sms",
        {
            "sms_sid": "S1",
            "type": "transactional",
            "to": "+919800000001",
            "units": 1,
            "consumer": "crm",
        },
    )  # 0.20
    ok("/sms/S1/status", {"status": "delivered"})
    ok(
        "/sms",
        {
            "sms_sid": "S2",
            "type": "promotional",
            "to": "+919800000002",
            "body": "hi",
            "consumer": "marketing-app",
            "campaign_id": "diwali",
        },
    )  # 0.25
    ok(
        "/whatsapp/conversations",
        {"conversation_id": "W1", "category": "marketing", "consumer": "=cmd|' /C calc'!A0"},
    )  # 0.80
    ok("/numbers", {"number": "+919800000100"}, owner)  # 500.00
    ok("/agents", {"agent_id": "a1"}, owner)  # 1200.00
    ok(
        "/agents/a1/sessions",
        {"started_at": "2026-11-28T01:00:00Z", "ended_at": "2026-11-28T03:00:00Z"},
        p,
    )  # 2 agent hours
    ok(
        "/usage/batch",
        {
            "events": [  # yesterday's usage, ingested today
                {
                    "kind": "sms",
                    "sms_sid": "B1",
                    "type": "transactional",
                    "to": "+91980000003",
                    "units": 1,
                    "occurred_at": "2026-11-27T05:00:00Z",
                }
            ]
        },
    )  # 0.20 on 2026-11-27
    return _key(client, "viewer")


def get(client: TestClient, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(f"{BASE}{path}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_daily_report(client: TestClient, viewer: dict[str, str]) -> None:
    body = get(client, "/reports/daily", viewer, **PERIOD).json()
    assert body["currency"] == "INR" and body["from"] == "2026-11-27"
    assert [(r["date"], r["service"], r["cost"], r["quantity"]) for r in body["data"]] == [
        ("2026-11-27", "sms", "0.20", 1),
        ("2026-11-28", "agent_seat", "1200.00", 1),
        ("2026-11-28", "number", "500.00", 1),
        ("2026-11-28", "sms", "0.45", 2),
        ("2026-11-28", "voice", "1.20", 2),
        ("2026-11-28", "whatsapp", "0.80", 1),
    ]
    only_sms = get(client, "/reports/daily", viewer, service="sms", **PERIOD).json()["data"]
    assert {r["service"] for r in only_sms} == {"sms"}


def test_services_report_has_the_brief_table(client: TestClient, viewer: dict[str, str]) -> None:
    body = get(client, "/reports/services", viewer, **PERIOD).json()
    assert body["voice"] == {
        "calls": 1,
        "pulses": 2,
        "cost": "1.20",
        "average_duration_seconds": "61.00",
        "by_direction": {
            "outbound": {"count": 1, "quantity": 2, "cost": "1.20"},
            "inbound": {"count": 0, "quantity": 0, "cost": "0.00"},
        },
    }
    sms = body["sms"]
    assert (sms["messages"], sms["cost"], sms["delivered"]) == (3, "0.65", 1)
    assert sms["delivery_rate_percent"] == "33.33"
    assert sms["by_type"]["transactional"] == {"count": 2, "quantity": 2, "cost": "0.40"}
    assert sms["by_type"]["promotional"] == {"count": 1, "quantity": 1, "cost": "0.25"}
    assert body["numbers"] == {"active": 1, "rental_cost": "500.00"}
    assert body["whatsapp"]["conversations"] == 1 and body["whatsapp"]["cost"] == "0.80"
    assert body["whatsapp"]["by_category"]["marketing"]["count"] == 1
    assert body["contact_center"] == {
        "active_agents": 1,
        "agent_hours": "2.00",
        "seat_cost": "1200.00",
    }
    assert body["total_cost"] == TOTAL


def test_top_consumers_and_trend(client: TestClient, viewer: dict[str, str]) -> None:
    top = get(client, "/reports/top-consumers", viewer, limit=3, **PERIOD).json()["data"]
    assert [(t["consumer"], t["cost"]) for t in top] == [
        ("a1", "1200.00"),
        ("crm", "1.40"),
        ("=cmd|' /C calc'!A0", "0.80"),
    ]
    trend = get(client, "/reports/trend", viewer, months=2).json()["data"]
    assert trend == [
        {
            "month": "2026-10",
            "cost": "0.00",
            "change_percent": None,
            "through": "2026-10-31",
            "month_to_date": False,
            "change_percent_same_days": None,
        },
        {
            "month": "2026-11",
            "cost": TOTAL,
            "change_percent": None,
            "through": "2026-11-28",
            "month_to_date": True,
            "change_percent_same_days": None,
        },
    ]


def test_trend_change_in_percent(
    client: TestClient, viewer: dict[str, str], container: Container
) -> None:
    assert container.test_clock is not None
    container.scheduler.advance(int((DECEMBER_IST - container.clock.now()).total_seconds()) + 60)
    # December: the monthly renewals (1700.00) and one SMS
    client.post(
        f"{BASE}/sms",
        json={"sms_sid": "D1", "type": "service", "to": "+919800000001", "units": 1},
        headers=_key(client, "platform"),
    )
    trend = get(client, "/reports/trend", viewer, months=1).json()["data"]
    # (1700.15 - 1702.65) / 1702.65 = -0.1468...%; nothing was used on 1 November
    assert trend == [
        {
            "month": "2026-12",
            "cost": "1700.15",
            "change_percent": "-0.15",
            "through": "2026-12-01",
            "month_to_date": True,
            "change_percent_same_days": None,
        }
    ]


def test_trend_month_to_date_against_the_same_days(
    client: TestClient, viewer: dict[str, str], container: Container
) -> None:
    """On 1 December the month so far is compared with 1 November, not all of November."""
    assert container.test_clock is not None
    container.scheduler.advance(int((DECEMBER_IST - container.clock.now()).total_seconds()) + 60)
    platform = _key(client, "platform")
    early = {  # an SMS of 1 November, reported late by batch: 0.15 on that day
        "kind": "sms",
        "sms_sid": "N1",
        "type": "service",
        "to": "+919800000001",
        "units": 1,
        "occurred_at": "2026-11-01T06:00:00Z",
    }
    response = client.post(f"{BASE}/usage/batch", json={"events": [early]}, headers=platform)
    assert response.json()["results"][0]["status"] == "applied", response.text
    trend = get(client, "/reports/trend", viewer, months=2).json()["data"]
    assert [(t["month"], t["cost"], t["through"], t["month_to_date"]) for t in trend] == [
        ("2026-11", "1702.80", "2026-11-30", False),
        ("2026-12", "1700.00", "2026-12-01", True),
    ]
    # whole November: (1700.00 - 1702.80) / 1702.80; 1 December against 1 November:
    # (1700.00 - 0.15) / 0.15
    assert trend[1]["change_percent"] == "-0.16"
    assert trend[1]["change_percent_same_days"] == "1133233.33"
    assert trend[0]["change_percent_same_days"] is None


def _csv(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, str]]:
    response = get(client, "/exports/usage", headers, **params)
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_csv_export(client: TestClient, viewer: dict[str, str]) -> None:
    rows = _csv(client, viewer, **PERIOD)
    assert len(rows) == 8  # the call in progress is not usage yet
    assert sum(Decimal(r["price"]) for r in rows) == Decimal(TOTAL)
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert by_id["B1"]["date"] == "2026-11-27"
    assert by_id["C1"] | {} == by_id["C1"]
    assert (by_id["C1"]["quantity"], by_id["C1"]["duration_seconds"]) == ("2", "61")
    assert by_id["C1"]["price"] == "1.20" and by_id["C1"]["currency"] == "INR"
    assert by_id["C1"]["to"] == "'+919800000009"  # a leading + would be read as a formula
    assert by_id["W1"]["consumer"] == "'=cmd|' /C calc'!A0"
    assert by_id["S1"]["status"] == "delivered"
    assert by_id["S1"]["occurred_at"] == "2026-11-28T04:30:00Z"
    assert [r["id"] for r in _csv(client, viewer, service="voice", **PERIOD)] == ["C1"]


def test_xlsx_export(client: TestClient, viewer: dict[str, str]) -> None:
    response = get(client, "/exports/usage", viewer, format="xlsx", **PERIOD)
    data = response.content
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert any(name.startswith("xl/charts/chart") for name in archive.namelist())
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Summary", "Daily", "Usage"]
    summary = book["Summary"]
    assert len(summary._charts) == 1  # the daily usage chart, native to Excel
    texts = [[c.value for c in row] for row in summary.iter_rows()]
    total_row = next(row for row in texts if row[0] == "Total")
    assert Decimal(str(total_row[3])) == Decimal(TOTAL)
    assert any(row[0] == "a1" for row in texts)  # top consumers
    usage = book["Usage"]
    assert usage.freeze_panes == "A2"
    assert usage.auto_filter.ref == "A1:M9"
    header = [c.value for c in usage[1]]
    assert header[0] == "date" and header[12] == "price"
    rows = list(usage.iter_rows(min_row=2))
    assert len(rows) == 8
    first = rows[0]
    assert (
        isinstance(first[0].value, datetime) and first[0].value.date().isoformat() == "2026-11-27"
    )
    assert first[0].number_format == "yyyy-mm-dd"
    assert isinstance(first[12].value, float | int) and "INR" in first[12].number_format
    assert sum(Decimal(str(r[12].value)) for r in rows) == Decimal(TOTAL)
    assert any(r[6].value == "=cmd|' /C calc'!A0" and r[6].data_type == "s" for r in rows)
    daily = book["Daily"]
    assert [c.value for c in daily[1]][:2] == ["date", "Voice"]
    assert daily.max_row == 3  # two days


def test_pdf_export(client: TestClient, viewer: dict[str, str]) -> None:
    response = get(client, "/exports/usage", viewer, format="pdf", **PERIOD)
    assert response.headers["content-type"] == "application/pdf"
    reader = pypdf.PdfReader(io.BytesIO(response.content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Acme & Co" in text and "2026-11-27 to 2026-11-28" in text
    assert f"Total usage: INR {TOTAL}" in text
    assert "5000.00" not in text  # the balance snapshot is after the charges
    assert "3297.35" in text  # available balance: 5000.00 - 1702.65
    assert "1200.00" in text and "33.33" in text and "a1" in text
    assert f"Page 1 of {len(reader.pages)}" in text


def test_an_empty_period_gives_valid_empty_files(
    client: TestClient, viewer: dict[str, str]
) -> None:
    empty = {"from": "2026-01-01", "to": "2026-01-31"}
    assert _csv(client, viewer, **empty) == []
    book = openpyxl.load_workbook(
        io.BytesIO(get(client, "/exports/usage", viewer, format="xlsx", **empty).content)
    )
    assert book["Usage"].max_row == 1
    pdf = pypdf.PdfReader(
        io.BytesIO(get(client, "/exports/usage", viewer, format="pdf", **empty).content)
    )
    assert "Total usage: INR 0.00" in pdf.pages[0].extract_text()
    assert get(client, "/reports/daily", viewer, **empty).json()["data"] == []


@pytest.mark.parametrize(
    ("path", "params", "code", "field"),
    [
        (
            "/reports/daily",
            {"from": "2026-11-28", "to": "2026-11-27"},
            "invalid_date_range",
            "from",
        ),
        ("/reports/daily", {"from": "2025-01-01", "to": "2026-11-27"}, "date_range_too_long", "to"),
        ("/reports/daily", {"from": "2026-11-1", "to": "2026-11-27"}, "invalid_date", "from"),
        ("/reports/daily", {"to": "2026-11-27"}, "missing_field", "from"),
        ("/reports/daily", {**PERIOD, "service": "fax"}, "invalid_service", "service"),
        ("/reports/services", {"from": "2026-13-01", "to": "2026-11-27"}, "invalid_date", "from"),
        ("/reports/top-consumers", {**PERIOD, "limit": 0}, "invalid_limit", "limit"),
        ("/reports/trend", {"months": 25}, "invalid_months", "months"),
        ("/exports/usage", {**PERIOD, "format": "docx"}, "invalid_export_format", "format"),
        ("/exports/usage", {**PERIOD, "service": "telex"}, "invalid_service", "service"),
        (
            "/exports/usage",
            {"from": "2026-11-28", "to": "2026-11-01"},
            "invalid_date_range",
            "from",
        ),
    ],
)
def test_bad_input(
    client: TestClient,
    viewer: dict[str, str],
    path: str,
    params: dict[str, Any],
    code: str,
    field: str,
) -> None:
    response = client.get(f"{BASE}{path}", params=params, headers=viewer)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"].get("field") == field


def test_access(client: TestClient, viewer: dict[str, str]) -> None:
    platform = _key(client, "platform")
    response = client.get(f"{BASE}/reports/daily", params=PERIOD, headers=platform)
    assert response.status_code == 403
    client.post("/v1/accounts", json={"id": "other", "name": "Other"}, headers=ADMIN)
    response = client.get("/v1/accounts/other/exports/usage", params=PERIOD, headers=viewer)
    assert response.status_code == 404
    assert client.get(f"{BASE}/reports/daily", params=PERIOD, headers=ADMIN).status_code == 200


# -- monthly statements ----------------------------------------------------------------------
def _statements(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    return list(get(client, "/statements", headers).json()["data"])


def test_statement_at_the_month_start_once(
    client: TestClient, viewer: dict[str, str], container: Container
) -> None:
    to_december = int((DECEMBER_IST - container.clock.now()).total_seconds())
    container.scheduler.advance(to_december - 1)
    assert _statements(client, viewer) == []
    container.scheduler.advance(1)
    [statement] = _statements(client, viewer)
    assert (statement["month"], statement["total"], statement["records"]) == ("2026-11", TOTAL, 8)
    assert statement["created_at"] == "2026-11-30T18:30:00Z"
    notes = client.get("/v1/accounts/acme/notifications", headers=viewer).json()["data"]
    assert [n["event"] for n in notes].count("monthly_statement") == 1
    assert notes[0]["data"]["statement_id"] == statement["id"]
    csv_file = get(client, f"/statements/{statement['id']}/csv", viewer).content.decode()
    prices = [Decimal(row["price"]) for row in csv.DictReader(io.StringIO(csv_file))]
    assert sum(prices) == Decimal(TOTAL)
    pdf = get(client, f"/statements/{statement['id']}/pdf", viewer).content
    text = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "2026-11-01 to 2026-11-30" in text and f"INR {TOTAL}" in text
    container.scheduler.advance(3600)
    container.scheduler.run_due()
    assert len(_statements(client, viewer)) == 1
    missing = client.get(f"{BASE}/statements/stmt_nope/pdf", headers=viewer)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "statement_not_found"
    bad = client.get(f"{BASE}/statements/{statement['id']}/xlsx", headers=viewer)
    assert bad.status_code == 422


def test_statements_catch_up_after_downtime(
    client: TestClient, viewer: dict[str, str], container: Container
) -> None:
    assert container.test_clock is not None
    # the server was down from November to mid-February: nothing ran at the month starts
    container.test_clock.set(DECEMBER_IST + timedelta(days=77))
    container.scheduler.run_due()
    container.scheduler.run_due()
    months = [s["month"] for s in _statements(client, viewer)]
    assert months == ["2027-01", "2026-12", "2026-11"]
    page = get(client, "/statements", viewer, limit=2).json()
    assert [s["month"] for s in page["data"]] == ["2027-01", "2026-12"]
    rest = get(client, "/statements", viewer, after=page["next_cursor"]).json()
    assert [s["month"] for s in rest["data"]] == ["2026-11"]
    assert rest["next_cursor"] is None
    exact = get(client, "/statements", viewer, limit=3).json()  # a full last page
    assert len(exact["data"]) == 3 and exact["next_cursor"] is None


def _late_sms(sid: str, occurred_at: str) -> dict[str, Any]:
    return {
        "kind": "sms",
        "sms_sid": sid,
        "type": "service",
        "to": "+919800000001",
        "units": 1,  # 0.15
        "occurred_at": occurred_at,
    }


def _batch(client: TestClient, *events: dict[str, Any], status: str = "applied") -> None:
    answer = client.post(
        f"{BASE}/usage/batch", json={"events": list(events)}, headers=_key(client, "platform")
    )
    assert all(r["status"] == status for r in answer.json()["results"]), answer.text


def test_late_usage_for_a_stated_month_revises_its_statement(
    client: TestClient, viewer: dict[str, str], container: Container
) -> None:
    to_december = int((DECEMBER_IST - container.clock.now()).total_seconds())
    container.scheduler.advance(to_december + 7200)  # 02:00 on 1 December in Kolkata
    [first] = _statements(client, viewer)
    assert (first["revision"], first["supersedes"], first["total"]) == (1, None, TOTAL)
    # a batch reports an SMS of 29 November after November's statement was made; one of
    # December (this month) makes no revision
    _batch(
        client,
        _late_sms("LATE1", "2026-11-29T06:00:00Z"),
        _late_sms("DEC1", "2026-11-30T19:00:00Z"),
    )
    container.scheduler.advance(1)
    [revised] = _statements(client, viewer)
    assert revised["month"] == "2026-11" and revised["revision"] == 2
    assert revised["supersedes"] == first["id"] and revised["records"] == 9
    assert Decimal(revised["total"]) == Decimal(TOTAL) + Decimal("0.15")
    rows = list(
        csv.DictReader(
            io.StringIO(get(client, f"/statements/{revised['id']}/csv", viewer).content.decode())
        )
    )
    assert "LATE1" in {r["id"] for r in rows} and "DEC1" not in {r["id"] for r in rows}
    # the first revision stays as it was sent
    old = get(client, f"/statements/{first['id']}/csv", viewer).content.decode()
    assert "LATE1" not in old
    notes = client.get("/v1/accounts/acme/notifications", headers=viewer).json()["data"]
    said = [n for n in notes if n["event"] == "monthly_statement"]
    assert len(said) == 2 and said[0]["data"]["revision"] == 2
    assert "was revised (revision 2)" in said[0]["message"]
    # nothing more is owed: the job makes no third revision, and a replay changes nothing
    container.scheduler.advance(3600)
    _batch(client, _late_sms("LATE1", "2026-11-29T06:00:00Z"), status="duplicate")
    container.scheduler.advance(1)
    assert [s["revision"] for s in _statements(client, viewer)] == [2]


def test_usage_committed_while_a_month_is_rendered_makes_a_revision(
    client: TestClient, viewer: dict[str, str], container: Container
) -> None:
    render = container.statements.exports.csv
    late = iter(["MID1", "MID2"])  # one during the first statement, one during its revision
    reported = []

    def csv_meanwhile(*args: Any, **kwargs: Any) -> Any:
        # the records were read; a batch for the month commits before the statement does
        rows = list(render(*args, **kwargs))
        sid = next(late, None)
        if sid is not None:
            event = _late_sms(sid, "2026-11-29T06:00:00Z")
            reported.append(container.batch.ingest("acme", [event])[0].status)
        return iter(rows)

    container.statements.exports.csv = csv_meanwhile  # type: ignore[method-assign]
    container.scheduler.advance(int((DECEMBER_IST - container.clock.now()).total_seconds()))
    container.scheduler.advance(1)
    # MID1 came while revision 1 was rendered, MID2 while revision 2 was (its revision then
    # already owed, so the batch had nothing to add): revision 3 has both
    assert reported == ["applied", "applied"]
    [statement] = _statements(client, viewer)
    assert statement["revision"] == 3 and statement["records"] == 10
    assert Decimal(statement["total"]) == Decimal(TOTAL) + Decimal("0.30")


def test_migration_0010_keeps_statements_as_their_first_revision(
    client: TestClient, viewer: dict[str, str], container: Container
) -> None:
    container.scheduler.advance(int((DECEMBER_IST - container.clock.now()).total_seconds()))
    [before] = _statements(client, viewer)
    migrate.downgrade(container.db, "0009")
    migrate.upgrade(container.db)
    [after] = _statements(client, viewer)
    assert after == before and after["revision"] == 1
    with pytest.raises(sa.exc.IntegrityError), container.db.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE statements SET revision = 2 WHERE id = '{after['id']}'")


def test_late_usage_before_the_first_statement_owes_no_revision(
    client: TestClient, viewer: dict[str, str], container: Container
) -> None:
    to_december = int((DECEMBER_IST - container.clock.now()).total_seconds())
    container.scheduler.advance(to_december + 7200)
    # October: before the account existed, so it has no statement to revise
    _batch(client, _late_sms("OCT1", "2026-10-20T06:00:00Z"))
    assert container.statements.next_due_at() != container.clock.now()
    container.scheduler.advance(1)
    assert [(s["month"], s["revision"]) for s in _statements(client, viewer)] == [("2026-11", 1)]

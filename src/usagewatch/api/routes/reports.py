"""Reports (from the daily rollups), usage exports (CSV streamed, XLSX, PDF) and monthly
statements. Read by the account's owners and viewers and by the operator."""

from __future__ import annotations

import os
import tempfile

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from usagewatch.api.auth import allow, container
from usagewatch.api.pagination import after_param, decode_cursor, fetch_size, limit_param, page
from usagewatch.api.schemas import MoneyOut, instant, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.errors import Invalid
from usagewatch.service.exports import MEDIA_TYPES, parse_format
from usagewatch.service.reports import Counted, parse_period, parse_service
from usagewatch.service.statements import StatementView

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["reports"])
REPORT_READERS = frozenset({Role.OWNER, Role.VIEWER})
reader = allow(REPORT_READERS)

FROM = Query(None, alias="from", description="first account-local date, YYYY-MM-DD (inclusive)")
TO = Query(None, description="last account-local date, YYYY-MM-DD (inclusive)")
SERVICE = Query(None, description="voice, sms, whatsapp, number, agent_seat; all when absent")


class DailyOut(BaseModel):
    date: str
    service: str
    cost: MoneyOut
    quantity: int
    records: int


class DailyReportOut(BaseModel):
    currency: str
    from_: str
    to: str
    data: list[DailyOut]


class CountedOut(BaseModel):
    count: int
    quantity: int
    cost: MoneyOut


def _counted(values: dict[str, Counted]) -> dict[str, CountedOut]:
    return {
        k: CountedOut(count=v.records, quantity=v.quantity, cost=money(v.cost_micros))
        for k, v in values.items()
    }


@router.get(
    "/reports/daily",
    summary="Daily usage per service (the chart's data)",
    description="One row per account-local date and service with usage, from the daily "
    "rollups. `quantity` is pulses (voice), SMS units, conversations, months (numbers, "
    "seats) or agent sessions.",
)
def daily_report(
    account_id: str,
    from_: str | None = FROM,
    to: str | None = TO,
    service: str | None = SERVICE,
    _: Principal = Depends(reader),
    c: Container = Depends(container),
) -> dict[str, object]:
    period = parse_period(from_, to)
    svc = parse_service(service)
    rows = c.reports.daily(account_id, period, svc)
    currency = c.exports.check(account_id).currency
    return {
        "currency": currency,
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "data": [
            {
                "date": r.date,
                "service": r.service,
                "cost": money(r.cost_micros),
                "quantity": r.quantity,
                "records": r.records,
            }
            for r in rows
        ],
    }


@router.get(
    "/reports/services",
    summary="Usage by service type (the brief's table)",
    description="Voice: calls, pulses, cost, average duration (seconds, over ended calls). "
    "SMS: messages, by type, cost, delivery rate (percent of messages reported delivered). "
    "Numbers: active (rented at any time in the period), rental cost. WhatsApp: "
    "conversations, by category, cost. Contact center: active agents (seats active at any "
    "time in the period), agent hours (recorded sessions), seat cost. Ratios are exact "
    "decimals rounded half-even to 2 places; null when there is nothing to divide by.",
)
def services_report(
    account_id: str,
    from_: str | None = FROM,
    to: str | None = TO,
    _: Principal = Depends(reader),
    c: Container = Depends(container),
) -> dict[str, object]:
    period = parse_period(from_, to)
    b = c.reports.services(account_id, period)
    currency = c.exports.check(account_id).currency
    return {
        "currency": currency,
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "voice": {
            "calls": b.voice_calls,
            "pulses": b.voice_pulses,
            "cost": money(b.voice_cost_micros),
            "average_duration_seconds": b.voice_average_duration_seconds,
            "by_direction": _counted(b.voice_by_direction),
        },
        "sms": {
            "messages": b.sms_messages,
            "units": b.sms_units,
            "by_type": _counted(b.sms_by_type),
            "cost": money(b.sms_cost_micros),
            "delivered": b.sms_delivered,
            "delivery_rate_percent": b.sms_delivery_rate_percent,
        },
        "numbers": {"active": b.numbers_active, "rental_cost": money(b.numbers_rental_cost_micros)},
        "whatsapp": {
            "conversations": b.whatsapp_conversations,
            "by_category": _counted(b.whatsapp_by_category),
            "cost": money(b.whatsapp_cost_micros),
        },
        "contact_center": {
            "active_agents": b.agents_active,
            "agent_hours": b.agent_hours,
            "seat_cost": money(b.seat_cost_micros),
        },
        "total_cost": money(b.total_cost_micros),
    }


@router.get(
    "/reports/top-consumers",
    summary="Consumers (users, applications) by cost",
    description="Usage with a `consumer` only, highest cost first; `limit` 1-100 (10).",
)
def top_consumers_report(
    account_id: str,
    from_: str | None = FROM,
    to: str | None = TO,
    limit: int = Query(10),
    _: Principal = Depends(reader),
    c: Container = Depends(container),
) -> dict[str, object]:
    period = parse_period(from_, to)
    rows = c.reports.top_consumers(account_id, period, limit)
    return {
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "data": [
            {"consumer": r.consumer, "records": r.records, "cost": money(r.cost_micros)}
            for r in rows
        ],
    }


@router.get(
    "/reports/trend",
    summary="Month over month",
    description="The last `months` (1-24, default 6) account-local calendar months, the "
    "current one so far included, oldest first; `change_percent` against the month before "
    "(exact decimal, 2 places, half-even; null when the month before cost nothing). "
    "`through` is the last local date counted (the month's last day, or today); the current "
    "month has `month_to_date: true` and `change_percent_same_days`: against the same days "
    "of the month before (the 1st to `through`'s day, or to that month's end when it is "
    "shorter; null when those days cost nothing, and on whole months).",
)
def trend_report(
    account_id: str,
    months: int = Query(6),
    _: Principal = Depends(reader),
    c: Container = Depends(container),
) -> dict[str, object]:
    rows = c.reports.trend(account_id, months)
    return {
        "data": [
            {
                "month": r.month,
                "cost": money(r.cost_micros),
                "change_percent": r.change_percent,
                "through": r.through,
                "month_to_date": r.month_to_date,
                "change_percent_same_days": r.change_percent_same_days,
            }
            for r in rows
        ]
    }


# -- exports ---------------------------------------------------------------------------------
def _filename(account_id: str, first: str, last: str, fmt: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in account_id)
    return f"usage-{safe}-{first}-{last}.{fmt}"


@router.get(
    "/exports/usage",
    summary="Export usage records: CSV (streamed), XLSX or PDF",
    description="`format` csv (default; the raw records, columns in docs/exports.md), xlsx "
    "(summary sheet with a chart, daily sheet, typed data sheets) or pdf (printable summary).",
    response_class=Response,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
)
def export_usage(
    account_id: str,
    from_: str | None = FROM,
    to: str | None = TO,
    service: str | None = SERVICE,
    format: str | None = Query(None, description="csv, xlsx or pdf"),
    _: Principal = Depends(reader),
    c: Container = Depends(container),
) -> Response:
    period = parse_period(from_, to)
    svc = parse_service(service)
    fmt = parse_format(format)
    c.exports.check(account_id)  # a 404 must come before a streamed 200 starts
    name = _filename(account_id, period.first.isoformat(), period.last.isoformat(), fmt)
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        return StreamingResponse(
            c.exports.csv(account_id, period, svc),
            media_type=MEDIA_TYPES["csv"],
            headers=disposition,
        )
    if fmt == "pdf":
        return Response(
            c.exports.pdf(account_id, period, svc),
            media_type=MEDIA_TYPES["pdf"],
            headers=disposition,
        )
    handle, path = tempfile.mkstemp(suffix=".xlsx", prefix="usagewatch-export-")
    os.close(handle)
    try:
        c.exports.xlsx(account_id, period, svc, path)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path,
        media_type=MEDIA_TYPES["xlsx"],
        filename=name,
        background=BackgroundTask(os.unlink, path),
    )


# -- statements ------------------------------------------------------------------------------
def _statement_out(account_id: str, s: StatementView) -> dict[str, object]:
    base = f"/v1/accounts/{account_id}/statements/{s.id}"
    return {
        "id": s.id,
        "month": s.month,
        "currency": s.currency,
        "records": s.records,
        "total": money(s.total_micros),
        "created_at": instant(s.created_at_us),
        "revision": s.revision,
        "supersedes": s.supersedes_id,
        "files": {"csv": f"{base}/csv", "pdf": f"{base}/pdf"},
        "sizes": {"csv": s.csv_bytes, "pdf": s.pdf_bytes},
    }


@router.get(
    "/statements",
    summary="Monthly statements, newest first",
    description="One per account-local month, produced at the start of the next month: its "
    "latest revision. Usage that arrives later for a month already stated (batch events are "
    "dated when they happened) makes a revision at once: `revision` 2, 3, ..., `supersedes` "
    "the id of the one before, whose files stay downloadable as they were sent.",
)
def list_statements(
    account_id: str,
    limit: int = Depends(limit_param),
    after: str | None = Depends(after_param),
    _: Principal = Depends(reader),
    c: Container = Depends(container),
) -> dict[str, object]:
    found = c.statements.list(account_id, fetch_size(limit), decode_cursor(after))
    rows, cursor = page(found, limit, lambda s: s.month)
    return {"data": [_statement_out(account_id, s) for s in rows], "next_cursor": cursor}


@router.get(
    "/statements/{statement_id}/{fmt}",
    summary="A statement's file: csv or pdf",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPES["csv"]: {}, MEDIA_TYPES["pdf"]: {}}}},
)
def statement_file(
    account_id: str,
    statement_id: str,
    fmt: str,
    _: Principal = Depends(reader),
    c: Container = Depends(container),
) -> Response:
    if fmt not in ("csv", "pdf"):
        raise Invalid("invalid_export_format", "a statement is csv or pdf", "format")
    view, data = c.statements.file(account_id, statement_id, fmt)
    name = _filename(account_id, view.month, "statement", fmt)
    return Response(
        data,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )

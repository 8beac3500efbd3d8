"""The usage workbook (XlsxWriter, constant-memory mode: rows go to disk as written).

Sheets: "Summary" (account, period, totals per service, the daily usage as a native Excel
column chart, top consumers), "Daily" (the chart's data: cost per day and service), and
"Usage" (the records, typed: dates are dates, money is a number in the account's currency
format; frozen header, autofilter), continued on "Usage 2", ... past Excel's row limit.

Excel keeps numbers as binary doubles. A money cell holds micros / 1,000,000, which Python
rounds correctly; its shortest representation is the exact decimal for every amount under
10^9 units, so a sum read back as Decimal(str(cell)) matches the ledger to the micro-unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from typing import Any, BinaryIO

import xlsxwriter

from usagewatch.adapters.db.schema import SERVICES

SHEET_ROWS_MAX = 1_048_575  # Excel's limit less the header row
EXCEL_EPOCH = date(1899, 12, 30)
HEADERS = (
    "date",
    "occurred_at (UTC)",
    "service",
    "sub_type",
    "id",
    "status",
    "consumer",
    "campaign_id",
    "from",
    "to",
    "quantity",
    "duration_seconds",
    "price",
)
WIDTHS = (11, 20, 11, 14, 24, 11, 16, 14, 16, 16, 10, 10, 14)
SERVICE_LABELS = {
    "voice": "Voice",
    "sms": "SMS",
    "whatsapp": "WhatsApp",
    "number": "Numbers",
    "agent_seat": "Contact center",
}


def _serial(day: str, cache: dict[str, int]) -> int:
    serial = cache.get(day)
    if serial is None:
        serial = cache[day] = (date.fromisoformat(day) - EXCEL_EPOCH).days
    return int(serial)


def _money(micros: int) -> float:
    return micros / 1_000_000


def write_workbook(
    out: BinaryIO | str,
    summary: Any,
    rows: Iterator[list[Any]],
    progress: Callable[[int], None] | None = None,
) -> None:
    book = xlsxwriter.Workbook(out, {"constant_memory": True, "in_memory": False})
    currency = summary.account.currency
    f = {
        "title": book.add_format({"bold": True, "font_size": 14}),
        "bold": book.add_format({"bold": True}),
        "head": book.add_format({"bold": True, "bg_color": "#DDEBF7", "bottom": 1}),
        "money": book.add_format({"num_format": f'"{currency}" #,##0.00####'}),
        "money_bold": book.add_format({"num_format": f'"{currency}" #,##0.00####', "bold": True}),
        "date": book.add_format({"num_format": "yyyy-mm-dd"}),
        "datetime": book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
    }
    summary_sheet = book.add_worksheet("Summary")
    daily_sheet = book.add_worksheet("Daily")
    days = _write_daily(daily_sheet, summary, f)
    _write_summary(book, summary_sheet, summary, f, days)
    _write_rows(book, summary, rows, f, progress)
    book.close()


def _write_daily(sheet: Any, summary: Any, f: dict[str, Any]) -> int:
    services = [s for s in SERVICES if summary.service in (None, s)]
    sheet.write_row(0, 0, ["date", *[SERVICE_LABELS[s] for s in services], "Total"], f["head"])
    by_day: dict[str, dict[str, int]] = {}
    for row in summary.daily:
        by_day.setdefault(row.date, {})[row.service] = row.cost_micros
    cache: dict[str, int] = {}
    for i, day in enumerate(summary.period.dates(), start=1):
        costs = by_day.get(day, {})
        sheet.write_number(i, 0, _serial(day, cache), f["date"])
        for j, service in enumerate(services, start=1):
            sheet.write_number(i, j, _money(costs.get(service, 0)), f["money"])
        sheet.write_number(i, len(services) + 1, _money(sum(costs.values())), f["money"])
    sheet.set_column(0, 0, 12)
    sheet.set_column(1, len(services) + 1, 16)
    sheet.freeze_panes(1, 0)
    return int(summary.period.days)


def _write_summary(book: Any, sheet: Any, summary: Any, f: dict[str, Any], days: int) -> None:
    b = summary.breakdown
    account = summary.account
    sheet.set_column(0, 0, 22)
    sheet.set_column(1, 4, 18)
    sheet.write_string(0, 0, f"Usage report: {account.name} ({account.id})", f["title"])
    sheet.write_string(1, 0, "Period")
    sheet.write_string(1, 1, f"{summary.period.first} to {summary.period.last}")
    sheet.write_string(2, 0, "Service")
    sheet.write_string(2, 1, SERVICE_LABELS.get(summary.service or "", "All services"))
    sheet.write_string(3, 0, "Currency / time zone")
    sheet.write_string(3, 1, f"{account.currency} / {account.timezone}")
    sheet.write_row(5, 0, ["Service", "Records", "Quantity", "Cost"], f["head"])
    totals: dict[str, list[int]] = {}
    for row in summary.daily:
        sums = totals.setdefault(row.service, [0, 0, 0])
        sums[0] += row.records
        sums[1] += row.quantity
        sums[2] += row.cost_micros
    line = 6
    for service in SERVICES:
        if summary.service not in (None, service):
            continue
        records, quantity, cost = totals.get(service, [0, 0, 0])
        sheet.write_string(line, 0, SERVICE_LABELS[service])
        sheet.write_number(line, 1, records)
        sheet.write_number(line, 2, quantity)
        sheet.write_number(line, 3, _money(cost), f["money"])
        line += 1
    total = sum(t[2] for t in totals.values())
    sheet.write_string(line, 0, "Total", f["bold"])
    sheet.write_number(line, 1, sum(t[0] for t in totals.values()), f["bold"])
    sheet.write_number(line, 2, sum(t[1] for t in totals.values()), f["bold"])
    sheet.write_number(line, 3, _money(total), f["money_bold"])
    line += 2
    sheet.write_string(line, 0, "Metrics", f["head"])
    sheet.write_string(line, 1, "", f["head"])
    line += 1
    metrics = [
        ("Voice calls", b.voice_calls),
        ("Voice pulses", b.voice_pulses),
        ("Average call duration (s)", b.voice_average_duration_seconds or "-"),
        ("SMS messages", b.sms_messages),
        ("SMS delivery rate (%)", b.sms_delivery_rate_percent or "-"),
        ("Active numbers", b.numbers_active),
        ("WhatsApp conversations", b.whatsapp_conversations),
        ("Active agents", b.agents_active),
        ("Agent hours", b.agent_hours),
    ]
    for name, value in metrics:
        sheet.write_string(line, 0, name)
        if isinstance(value, int):
            sheet.write_number(line, 1, value)
        else:
            sheet.write_string(line, 1, value)
        line += 1
    line += 1
    sheet.write_row(line, 0, ["Top consumers", "Records", "Cost"], f["head"])
    line += 1
    for consumer in summary.top:
        sheet.write_string(line, 0, consumer.consumer)
        sheet.write_number(line, 1, consumer.records)
        sheet.write_number(line, 2, _money(consumer.cost_micros), f["money"])
        line += 1
    chart = book.add_chart({"type": "column", "subtype": "stacked"})
    services = [s for s in SERVICES if summary.service in (None, s)]
    for j in range(1, len(services) + 1):
        chart.add_series(
            {
                "name": ["Daily", 0, j],
                "categories": ["Daily", 1, 0, days, 0],
                "values": ["Daily", 1, j, days, j],
            }
        )
    chart.set_title({"name": "Daily usage"})
    chart.set_x_axis({"date_axis": True, "num_format": "dd mmm"})
    chart.set_y_axis({"name": f"Cost ({summary.account.currency})"})
    chart.set_size({"width": 720, "height": 340})
    sheet.insert_chart(5, 5, chart)


def _write_rows(
    book: Any,
    summary: Any,
    rows: Iterator[list[Any]],
    f: dict[str, Any],
    progress: Callable[[int], None] | None,
) -> None:
    money_format, date_format, time_format = f["money"], f["date"], f["datetime"]
    cache: dict[str, int] = {}
    sheet, number, line = None, 0, SHEET_ROWS_MAX + 1

    def new_sheet() -> Any:
        nonlocal number
        number += 1
        ws = book.add_worksheet("Usage" if number == 1 else f"Usage {number}")
        ws.write_row(0, 0, HEADERS, f["head"])
        for column, width in enumerate(WIDTHS):
            ws.set_column(column, column, width)
        ws.freeze_panes(1, 0)
        return ws

    def close_sheet(ws: Any, last: int) -> None:
        ws.autofilter(0, 0, max(last, 1) - 1, len(HEADERS) - 1)

    for batch in rows:
        for (
            day,
            at,
            service,
            sub_type,
            natural_id,
            status,
            consumer,
            campaign,
            from_,
            to,
            quantity,
            seconds,
            price,
        ) in batch:
            if line > SHEET_ROWS_MAX:
                if sheet is not None:
                    close_sheet(sheet, line)
                sheet, line = new_sheet(), 1
            assert sheet is not None
            write_string, write_number = sheet.write_string, sheet.write_number
            write_number(line, 0, _serial(day, cache), date_format)
            write_number(line, 1, at / 86_400_000_000 + 25_569, time_format)
            write_string(line, 2, service)
            write_string(line, 3, sub_type)
            write_string(line, 4, natural_id)
            write_string(line, 5, status)
            if consumer:
                write_string(line, 6, consumer)
            if campaign:
                write_string(line, 7, campaign)
            if from_:
                write_string(line, 8, from_)
            if to:
                write_string(line, 9, to)
            write_number(line, 10, quantity)
            if seconds is not None:
                write_number(line, 11, seconds)
            write_number(line, 12, price / 1_000_000, money_format)
            line += 1
        if progress is not None:
            progress(len(batch))
    if sheet is None:  # an empty period: the header row alone
        sheet, line = new_sheet(), 1
    close_sheet(sheet, line)

"""The printable usage summary (ReportLab): account, period, balance snapshot, totals, the
daily chart (ReportLab graphics, drawn here, nothing fetched), the service breakdown, top
consumers, and "Page n of m" on every page. Amounts are the API's exact decimal strings."""

from __future__ import annotations

import io
from typing import Any

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from usagewatch.adapters.db.schema import SERVICES
from usagewatch.domain.clock import format_instant
from usagewatch.domain.money import Money

SERVICE_LABELS = {
    "voice": "Voice",
    "sms": "SMS",
    "whatsapp": "WhatsApp",
    "number": "Numbers",
    "agent_seat": "Contact center",
}
SERVICE_COLOURS = {
    "voice": colors.HexColor("#4472C4"),
    "sms": colors.HexColor("#ED7D31"),
    "whatsapp": colors.HexColor("#70AD47"),
    "number": colors.HexColor("#FFC000"),
    "agent_seat": colors.HexColor("#7F6084"),
}
TABLE_STYLE = TableStyle(
    [
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDEBF7")),
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
    ]
)


class _NumberedCanvas(Canvas):  # type: ignore[misc]
    """Defers each page until the end so every page can say "Page n of m"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self.setFont("Helvetica", 8)
            self.drawRightString(A4[0] - 15 * mm, 10 * mm, f"Page {self._pageNumber} of {total}")
            super().showPage()
        super().save()


def _m(micros: int) -> str:
    return Money(micros).format()


def _chart(summary: Any) -> Drawing:
    width, height = 170 * mm, 70 * mm
    drawing = Drawing(width, height)
    services = [s for s in SERVICES if summary.service in (None, s)]
    dates = summary.period.dates()
    by_day: dict[tuple[str, str], int] = {(r.date, r.service): r.cost_micros for r in summary.daily}
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = (
        12 * mm,
        12 * mm,
        width - 45 * mm,
        height - 18 * mm,
    )
    # Chart geometry only: amounts become drawing coordinates here, never figures.
    chart.data = [[by_day.get((d, s), 0) / 1_000_000 for d in dates] for s in services]
    chart.categoryAxis.style = "stacked"
    chart.categoryAxis.categoryNames = [d[5:] for d in dates]
    chart.categoryAxis.labels.fontSize = 6
    chart.categoryAxis.labels.angle = 90 if len(dates) > 10 else 0
    chart.categoryAxis.labels.dy = -12 if len(dates) > 10 else 0
    step = max(1, len(dates) // 31)
    if step > 1:
        chart.categoryAxis.categoryNames = [
            name if i % step == 0 else "" for i, name in enumerate(chart.categoryAxis.categoryNames)
        ]
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labels.fontSize = 7
    chart.barSpacing = 0
    chart.groupSpacing = 1
    for i, service in enumerate(services):
        chart.bars[i].fillColor = SERVICE_COLOURS[service]
        chart.bars[i].strokeColor = None
        drawing.add(
            String(
                width - 30 * mm,
                height - 10 * mm - i * 10,
                SERVICE_LABELS[service],
                fontSize=7,
                fillColor=SERVICE_COLOURS[service],
            )
        )
    drawing.add(chart)
    return drawing


def render_pdf(summary: Any, balance: Any) -> bytes:
    styles = getSampleStyleSheet()
    account, period, b = summary.account, summary.period, summary.breakdown
    story: list[Any] = [
        Paragraph(f"Usage report: {_esc(account.name)}", styles["Title"]),
        Paragraph(
            f"Account {_esc(account.id)} &middot; {period.first} to {period.last} "
            f"({account.timezone}) &middot; "
            f"{SERVICE_LABELS.get(summary.service or '', 'All services')} &middot; "
            f"amounts in {account.currency}",
            styles["Normal"],
        ),
        Paragraph(f"Generated {format_instant(summary.generated_at)}", styles["Normal"]),
        Spacer(1, 6 * mm),
        Paragraph("Balance snapshot", styles["Heading2"]),
    ]
    snapshot = [
        ["Available balance", "Paid credits", "Promotional credits", "Reserved"],
        [
            _m(balance.available_micros),
            _m(balance.paid_micros),
            _m(balance.promotional_micros),
            _m(balance.reserved_micros),
        ],
    ]
    story += [Table(snapshot, style=TABLE_STYLE, hAlign="LEFT"), Spacer(1, 4 * mm)]
    totals: dict[str, list[int]] = {}
    for row in summary.daily:
        sums = totals.setdefault(row.service, [0, 0, 0])
        sums[0] += row.records
        sums[1] += row.quantity
        sums[2] += row.cost_micros
    rows = [["Service", "Records", "Quantity", "Cost"]]
    for service in SERVICES:
        if summary.service in (None, service):
            records, quantity, cost = totals.get(service, [0, 0, 0])
            rows.append([SERVICE_LABELS[service], str(records), str(quantity), _m(cost)])
    grand = sum(t[2] for t in totals.values())
    rows.append(
        [
            "Total",
            str(sum(t[0] for t in totals.values())),
            str(sum(t[1] for t in totals.values())),
            _m(grand),
        ]
    )
    style = TableStyle(
        [*TABLE_STYLE.getCommands(), ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold")]
    )
    story += [
        Paragraph("Totals", styles["Heading2"]),
        Table(rows, style=style, hAlign="LEFT"),
        Paragraph(f"Total usage: {account.currency} {_m(grand)}", styles["Normal"]),
        Spacer(1, 4 * mm),
        Paragraph("Daily usage", styles["Heading2"]),
        _chart(summary),
        Paragraph("Usage by service type", styles["Heading2"]),
        Table(_breakdown_rows(b), style=TABLE_STYLE, hAlign="LEFT", colWidths=[60 * mm, 50 * mm]),
        Spacer(1, 4 * mm),
        Paragraph("Top consumers", styles["Heading2"]),
    ]
    top = [["Consumer", "Records", "Cost"]] + [
        [c.consumer, str(c.records), _m(c.cost_micros)] for c in summary.top
    ]
    if len(top) == 1:
        top.append(["(none in this period)", "", ""])
    story.append(Table(top, style=TABLE_STYLE, hAlign="LEFT"))
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        title=f"Usage {account.id} {period.first} to {period.last}",
        author="usagewatch",
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        invariant=True,
    )
    doc.build(story, canvasmaker=_NumberedCanvas)
    return out.getvalue()


def _breakdown_rows(b: Any) -> list[list[str]]:
    rows = [["Metric", "Value"]]
    rows += [
        ["Voice: total calls", str(b.voice_calls)],
        ["Voice: total pulses", str(b.voice_pulses)],
        ["Voice: total cost", _m(b.voice_cost_micros)],
        ["Voice: average call duration (s)", b.voice_average_duration_seconds or "-"],
        ["SMS: total messages", str(b.sms_messages)],
    ]
    rows += [[f"SMS: {t}", f"{c.records} ({_m(c.cost_micros)})"] for t, c in b.sms_by_type.items()]
    rows += [
        ["SMS: total cost", _m(b.sms_cost_micros)],
        ["SMS: delivery rate (%)", b.sms_delivery_rate_percent or "-"],
        ["Numbers: active", str(b.numbers_active)],
        ["Numbers: rental cost", _m(b.numbers_rental_cost_micros)],
        ["WhatsApp: conversations", str(b.whatsapp_conversations)],
    ]
    rows += [
        [f"WhatsApp: {t}", f"{c.records} ({_m(c.cost_micros)})"]
        for t, c in b.whatsapp_by_category.items()
    ]
    rows += [
        ["WhatsApp: total cost", _m(b.whatsapp_cost_micros)],
        ["Contact center: active agents", str(b.agents_active)],
        ["Contact center: agent hours", b.agent_hours],
        ["Contact center: seat licence cost", _m(b.seat_cost_micros)],
    ]
    return rows


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""Batch ingest of completed usage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import Field

from usagewatch.api.auth import container, platform_only
from usagewatch.api.schemas import Strict, money
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["usage batch"])


# -- batch -------------------------------------------------------------------------------------
class BatchIn(Strict):
    events: list[Any] = Field(
        description="1 to 10,000 completed usage events, each {kind: call|sms|whatsapp, the "
        "fields of its single endpoint, occurred_at; a call also status and duration_seconds}"
    )


@router.post(
    "/usage/batch",
    summary="Ingest completed usage (platform)",
    description="Usage that already happened: charged even when money is short (the "
    "shortfall is an explicit overrun that blocks outbound until a top-up). One result per "
    "event, in order: applied (with price), duplicate (seen before: charged once, ever) or "
    "rejected (with an error). All valid events are applied in one transaction.",
)
def ingest_batch(
    account_id: str,
    body: BatchIn,
    _: Principal = Depends(platform_only),
    c: Container = Depends(container),
) -> dict[str, object]:
    results = c.batch.ingest(account_id, body.events)
    out: list[dict[str, object]] = []
    for r in results:
        item: dict[str, object] = {"id": r.id, "status": r.status}
        if r.price_micros is not None:
            item["price"] = money(r.price_micros)
        if r.error_code is not None:
            item["error"] = error = {"code": r.error_code, "message": r.error_message}
            if r.error_field is not None:
                error["field"] = r.error_field
        out.append(item)
    return {"results": out}

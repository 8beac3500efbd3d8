"""Credits, the balance breakdown, the journal and the live balance stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from usagewatch.adapters.events import FANOUT_TICK_SECONDS, NOTHING
from usagewatch.api.auth import OPERATOR, READ, allow, container
from usagewatch.api.pagination import (
    after_param,
    decode_int_cursor,
    fetch_size,
    limit_param,
    page,
)
from usagewatch.api.schemas import (
    BalanceOut,
    CreditCreate,
    CreditOut,
    LedgerEntryOut,
    PromotionalExpiry,
    instant,
    money,
)
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal
from usagewatch.domain.clock import format_instant
from usagewatch.domain.errors import Malformed
from usagewatch.domain.ledger import LotKind
from usagewatch.service.ledger import CreditResult
from usagewatch.service.queries import BalanceView, LotView

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["credits, balance, ledger"])
IDEMPOTENCY_KEY_LENGTH_MAX = 255


def _idempotency_key(value: str | None) -> str | None:
    if value is not None and not 1 <= len(value) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise Malformed("invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
    return value


@router.post(
    "/credits",
    status_code=201,
    response_model=CreditOut,
    summary="Add paid or promotional credit (admin)",
    description="Send an `Idempotency-Key` header: a replay with the same body returns the "
    "first response and credits once; the same key with another body is a 409.",
)
def add_credit(
    account_id: str,
    body: CreditCreate,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
    _: Principal = Depends(allow(OPERATOR)),
    c: Container = Depends(container),
) -> CreditOut:
    result = c.ledger.add_credit(
        account_id,
        LotKind(body.type),
        body.amount,
        expires_at=body.expires_at,
        description=body.description,
        idempotency_key=_idempotency_key(idempotency_key),
    )
    return _credit_out(result)


def _credit_out(result: CreditResult) -> CreditOut:
    return CreditOut(
        id=result.id,
        type=result.kind,
        amount=money(result.amount_micros),
        remaining=money(result.remaining_micros),
        expires_at=instant(result.expires_at_us),
        description=result.description,
        created_at=instant(result.created_at_us) or "",
    )


def _lot_out(lot: LotView) -> CreditOut:
    return CreditOut(
        id=lot.id,
        type=lot.kind,
        amount=money(lot.amount_micros),
        remaining=money(lot.remaining_micros),
        reserved=money(lot.held_micros),
        expires_at=instant(lot.expires_at_us),
        description=lot.description,
        created_at=instant(lot.created_at_us) or "",
    )


@router.get("/credits", summary="List credit lots with what remains, newest first")
def list_credits(
    account_id: str,
    limit: int = Depends(limit_param),
    after: str | None = Depends(after_param),
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> dict[str, object]:
    c.accounts.get_account(account_id)
    found = c.queries.credit_lots(account_id, fetch_size(limit), decode_int_cursor(after))
    rows, cursor = page(found, limit, lambda row: row[0])
    return {"data": [_lot_out(lot) for _, lot in rows], "next_cursor": cursor}


def balance_out(view: BalanceView) -> BalanceOut:
    return BalanceOut(
        currency=view.currency,
        available_balance=money(view.available_micros),
        paid_credits=money(view.paid_micros),
        promotional_credits=money(view.promotional_micros),
        promotional_expiries=[
            PromotionalExpiry(amount=money(amount), expires_at=instant(at) or "")
            for at, amount in view.promotional_expiries
        ],
        reserved_amount=money(view.reserved_micros),
        today_usage=money(view.today_usage_micros),
        month_usage=money(view.month_usage_micros),
        outbound_allowed=view.outbound_allowed,
        outbound_block_reason=view.outbound_block_reason,
        as_of=format_instant(view.as_of),
    )


@router.get("/balance", response_model=BalanceOut, summary="The balance breakdown")
def get_balance(
    account_id: str, _: Principal = Depends(allow(READ)), c: Container = Depends(container)
) -> BalanceOut:
    return balance_out(c.queries.balance(account_id))


@router.get("/ledger", summary="Journal entries, newest first")
def get_ledger(
    account_id: str,
    limit: int = Depends(limit_param),
    after: str | None = Depends(after_param),
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> dict[str, object]:
    c.accounts.get_account(account_id)
    found = c.queries.ledger_page(account_id, fetch_size(limit), decode_int_cursor(after))
    entries, cursor = page(found, limit, lambda e: e.id)
    data = [
        LedgerEntryOut(
            id=f"je_{e.id}",
            type=e.kind,
            amount=money(e.amount_micros),
            reserved_change=money(e.reserved_delta_micros),
            balance_after=money(e.available_after_micros),
            reference=e.reference,
            description=e.description,
            created_at=instant(e.created_at_us) or "",
        )
        for e in entries
    ]
    return {"data": data, "next_cursor": cursor}


@router.get(
    "/balance/stream",
    summary="Live balance (Server-Sent Events)",
    description="An `event: balance` with the balance body at once and within a second of "
    "every change, from any process (at most two a second: a burst of changes arrives as "
    f"its final balance); a `: keepalive` comment every {FANOUT_TICK_SECONDS:.0f} s.",
    response_class=StreamingResponse,
)
async def stream_balance(
    account_id: str,
    request: Request,
    _: Principal = Depends(allow(READ)),
    c: Container = Depends(container),
) -> StreamingResponse:
    first = await run_in_threadpool(c.queries.balance, account_id)
    return StreamingResponse(
        _balance_events(request, c, account_id, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A balance as the stream sends it, made once for every open stream of the account."""

    body: dict[str, object]  # without as_of: what "changed" compares (and == does)
    message: str = field(compare=False)


def _snapshot(view: BalanceView) -> _Snapshot:
    payload = balance_out(view).model_dump()
    body = {k: v for k, v in payload.items() if k != "as_of"}
    return _Snapshot(body, f"event: balance\nid: {view.version}\ndata: {json.dumps(payload)}\n\n")


async def _balance_events(
    request: Request, c: Container, account_id: str, first: BalanceView
) -> AsyncIterator[str]:
    """The first balance, then the balance after each change if it differs from the last
    one sent, and a keepalive comment on each of the account's ticks. The account's open
    streams share one read per change (`FanOut`); `first` was read before joining, and
    joining makes one more read, so a change in between is sent."""

    async def read(account: str) -> _Snapshot:
        return await run_in_threadpool(lambda: _snapshot(c.queries.balance(account)))

    snap = _snapshot(first)
    last = snap.body
    listener = c.feed.fanout.join(account_id, read)
    try:
        yield snap.message
        ticks = 0
        while True:
            await listener.event.wait()
            listener.event.clear()
            latest = listener.latest
            if isinstance(latest, BaseException):
                raise latest
            if latest is not NOTHING and latest.body != last:
                last = latest.body
                yield latest.message
            if listener.ticks != ticks:  # every FANOUT_TICK_SECONDS
                ticks = listener.ticks
                if await request.is_disconnected():
                    return
                yield ": keepalive\n\n"
    finally:
        c.feed.fanout.leave(listener)

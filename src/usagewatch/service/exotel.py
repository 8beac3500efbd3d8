"""Read models for the Exotel-compatible API (docs/exotel.md): calls and SMS as Exotel's v1
REST API shows them, read from `usage_records`. Read-only, SQLAlchemy Core.

Calls are `service='voice'` records (natural_id = CallSid), SMS are `service='sms'` records
(natural_id = SmsSid). Every view carries the account's time zone: Exotel timestamps are
account-local `YYYY-MM-DD HH:MM:SS`.

The bulk call list pages by keyset on (occurred_at_us, id): a cursor names one record's
position, so pages stay stable while new calls arrive.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import accounts, balances, usage_records
from usagewatch.domain.clock import Clock, from_micros, to_micros
from usagewatch.domain.money import Money, MoneyFormatError

CALL_STATUSES = (
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "failed",
    "busy",
    "no-answer",
    "canceled",
)
# Exotel direction -> stored sub_type (None: we never record such calls).
DIRECTIONS: dict[str, str | None] = {
    "inbound": "inbound",
    "outbound-api": "outbound",
    "outbound-dial": None,
}
_SUB_TYPE_DIRECTION = {"inbound": "inbound", "outbound": "outbound-api"}

# Stored SMS status -> (Exotel Status, DetailedStatus, DetailedStatusCode).
# Stored 'sent' means handed to the operator (no delivery report yet); Exotel's 'sent' is
# its final success state, so both stored 'sent' and 'delivered' show as 'sent' and the
# detailed status tells them apart. The failure reason is not stored: plain 'failed' has no
# detailed code.
SMS_STATUS_MAP: dict[str, tuple[str, str, int | None]] = {
    "queued": ("queued", "QUEUED", 21010),
    "sending": ("sending", "SENDING", 21015),
    "submitted": ("submitted", "SUBMITTED", 21020),
    "sent": ("sent", "DELIVERED_TO_OPERATOR", 20006),
    "delivered": ("sent", "DELIVERED_TO_HANDSET", 20005),
    "failed": ("failed", "FAILED", None),
    "failed-dnd": ("failed-dnd", "FAILED_DND", 23005),
}
_SMS_SENT_STATES = frozenset({"sent", "delivered", "failed", "failed-dnd"})

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 100
SIDS_MAX = 100
DEFAULT_WINDOW = timedelta(days=31)
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
# ASCII digits only: `\d` and str.isdigit() also accept other scripts' digits and `²`.
_LOCAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_DIGITS = re.compile(r"[0-9]+")
_PAGE_SIZE = re.compile(r"[0-9]{1,9}")
_BOUND = re.compile(r"^(gte|gt|lte|lt):(.*)$")
_SECONDS = re.compile(r"^(0|[1-9][0-9]{0,9})s?$")
_SECOND_US = 1_000_000
# Filter values are clamped to this: no stored value comes near it, and it stays inside
# a signed 64-bit column with room for `+ unit`.
_INT_CAP = 2**62
# Values echoed in error messages are cut to this many characters.
ECHO_CHARS_MAX = 64


class FilterError(ValueError):
    """A query parameter of the bulk list that cannot be read (HTTP 400)."""


def quoted(value: str) -> str:
    """`value` as an error message echoes it: quoted, cut to ECHO_CHARS_MAX characters."""
    if len(value) > ECHO_CHARS_MAX:
        value = value[:ECHO_CHARS_MAX] + "…"
    return repr(value)


# -- views ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AccountInfo:
    account_id: str
    timezone: str
    currency: str
    balance_updated_at_us: int

    def local(self, micros: int) -> str:
        return local_text(micros, self.timezone)


@dataclass(frozen=True, slots=True)
class CallView:
    id: int
    sid: str
    account_id: str
    from_number: str | None
    to_number: str | None
    status: str
    direction: str  # Exotel's: inbound | outbound-api
    duration_seconds: int | None
    price_micros: int
    created_at_us: int
    updated_at_us: int

    @property
    def in_progress(self) -> bool:
        return self.status == "in-progress"


@dataclass(frozen=True, slots=True)
class SmsView:
    sid: str
    account_id: str
    from_number: str | None
    to_number: str | None
    stored_status: str
    sms_type: str
    units: int
    price_micros: int
    created_at_us: int
    updated_at_us: int

    @property
    def status(self) -> tuple[str, str, int | None]:
        return SMS_STATUS_MAP.get(
            self.stored_status, (self.stored_status, self.stored_status.upper(), None)
        )

    @property
    def sent_at_us(self) -> int | None:
        return self.created_at_us if self.stored_status in _SMS_SENT_STATES else None


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive-exclusive bounds on an integer column: low <= value < high."""

    low: int | None = None
    high: int | None = None


@dataclass(frozen=True, slots=True)
class CallFilters:
    sids: tuple[str, ...] | None = None
    created: Range = field(default_factory=Range)
    to: str | None = None
    from_: str | None = None
    statuses: tuple[str, ...] | None = None
    duration: Range = field(default_factory=Range)
    price: Range = field(default_factory=Range)
    sub_types: tuple[str, ...] | None = None  # stored sub_types; () matches nothing


@dataclass(frozen=True, slots=True)
class Cursor:
    occurred_at_us: int
    id: int

    def encode(self) -> str:
        raw = f"x1:{self.occurred_at_us}:{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, name: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = ""
        parts = raw.split(":")
        if len(text) > 100 or len(parts) != 3 or parts[0] != "x1":
            raise FilterError(f"{name} is not a cursor produced by this API")
        if not all(_DIGITS.fullmatch(p) and int(p) < _INT_CAP for p in parts[1:]):
            raise FilterError(f"{name} is not a cursor produced by this API")
        return cls(int(parts[1]), int(parts[2]))


@dataclass(frozen=True, slots=True)
class CallPage:
    calls: list[CallView]
    total: int
    page_size: int
    prev_cursor: Cursor | None  # Before=… gives the previous page; None on the first
    next_cursor: Cursor | None  # After=… gives the next page; None on the last


# -- parsing of Exotel filter syntax -----------------------------------------------------
def local_text(micros: int, timezone: str) -> str:
    return from_micros(micros).astimezone(ZoneInfo(timezone)).strftime(LOCAL_FORMAT)


def parse_local(text: str, timezone: str, name: str) -> int:
    """`YYYY-MM-DD HH:MM:SS` in the account's zone -> UTC microseconds."""
    if not _LOCAL_TIME.fullmatch(text):
        raise FilterError(f"{name} takes times as YYYY-MM-DD HH:MM:SS")
    try:
        naive = datetime.strptime(text, LOCAL_FORMAT)
    except ValueError:
        raise FilterError(f"{name}: {quoted(text)} is not a valid time") from None
    try:  # 0001-01-01 east of UTC, 9999-12-31 west of it: outside datetime's range in UTC
        instant = naive.replace(tzinfo=ZoneInfo(timezone)).astimezone(ZoneInfo("UTC"))
    except OverflowError:
        raise FilterError(f"{name}: {quoted(text)} is out of range in {timezone}") from None
    return to_micros(instant)


def _bounds(text: str, name: str) -> list[tuple[str, str]]:
    """`gte:A;lte:B` -> [("gte", "A"), ("lte", "B")], each operator at most once."""
    found: list[tuple[str, str]] = []
    for part in text.split(";"):
        match = _BOUND.match(part.strip())
        if not match:
            raise FilterError(f"{name} is gte:…;lte:… (also gt:, lt:)")
        op, value = match.group(1), match.group(2).strip()
        if any(op == seen for seen, _ in found):
            raise FilterError(f"{name} names {op} twice")
        found.append((op, value))
    return found


def _range(bounds: list[tuple[str, str]], unit: int, to_int: RangeParser) -> Range:
    """Build [low, high) from gte/gt/lte/lt over integers where `unit` is the smallest step
    the filter can express (a second, a micro-unit): lte:X means value < X + unit."""
    low: int | None = None
    high: int | None = None
    for op, text in bounds:
        value = min(to_int(text), _INT_CAP)
        if op == "gte":
            low = value if low is None else max(low, value)
        elif op == "gt":
            low = value + unit if low is None else max(low, value + unit)
        elif op == "lte":
            high = value + unit if high is None else min(high, value + unit)
        else:  # lt
            high = value if high is None else min(high, value)
    return Range(low, high)


class RangeParser:
    def __init__(self, name: str, kind: str, timezone: str = "UTC") -> None:
        self.name = name
        self.kind = kind
        self.timezone = timezone

    def __call__(self, text: str) -> int:
        if self.kind == "time":
            return parse_local(text, self.timezone, self.name)
        if self.kind == "seconds":
            match = _SECONDS.match(text)
            if not match:
                raise FilterError(f"{self.name} takes whole seconds such as 10s")
            return int(match.group(1))
        try:
            money = Money.parse(text)
        except MoneyFormatError as exc:
            raise FilterError(f"{self.name}: {exc}") from None
        if money.micros < 0:
            raise FilterError(f"{self.name} cannot be negative")
        return money.micros


def _list(text: str, name: str, limit: int | None = None) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise FilterError(f"{name} is empty")
    if limit is not None and len(items) > limit:
        raise FilterError(f"{name} takes at most {limit} values")
    return items


@dataclass(frozen=True, slots=True)
class CallListRequest:
    """The bulk list's query parameters, checked; `created_text` is the DateCreated filter
    as it applies (the default window made explicit), for the Metadata URIs."""

    filters: CallFilters
    created_text: str
    echo: dict[str, str]  # the other filters as given
    page_size: int
    ascending: bool
    before: Cursor | None
    after: Cursor | None


def parse_call_list(params: dict[str, str | None], timezone: str, now_us: int) -> CallListRequest:
    """Read Exotel's bulk-list query parameters (names as Exotel spells them)."""
    sid_text = params.get("Sid")
    sids = _list(sid_text, "Sid", SIDS_MAX) if sid_text is not None else None

    created_text = params.get("DateCreated")
    if created_text is None:
        created_text = "gte:" + local_text(
            now_us - int(DEFAULT_WINDOW.total_seconds()) * _SECOND_US, timezone
        )
    created = _range(
        _bounds(created_text, "DateCreated"),
        _SECOND_US,
        RangeParser("DateCreated", "time", timezone),
    )

    statuses = None
    if params.get("Status") is not None:
        statuses = _list(params["Status"] or "", "Status")
        unknown = sorted(set(statuses) - set(CALL_STATUSES))
        if unknown:
            raise FilterError(
                f"Status {quoted(unknown[0])} is not one of {', '.join(CALL_STATUSES)}"
            )

    duration = Range()
    if params.get("Duration") is not None:
        duration = _range(
            _bounds(params["Duration"] or "", "Duration"), 1, RangeParser("Duration", "seconds")
        )
    price = Range()
    if params.get("Price") is not None:
        price = _range(_bounds(params["Price"] or "", "Price"), 1, RangeParser("Price", "money"))

    sub_types = None
    if params.get("Direction") is not None:
        directions = _list(params["Direction"] or "", "Direction")
        unknown = sorted(set(directions) - set(DIRECTIONS))
        if unknown:
            raise FilterError(
                f"Direction {quoted(unknown[0])} is not one of {', '.join(DIRECTIONS)}"
            )
        sub_types = tuple(s for d in directions if (s := DIRECTIONS[d]) is not None)

    page_size = PAGE_SIZE_DEFAULT
    if params.get("PageSize") is not None:
        text = params["PageSize"] or ""
        if not _PAGE_SIZE.fullmatch(text) or not 1 <= int(text) <= PAGE_SIZE_MAX:
            raise FilterError(f"PageSize is a whole number from 1 to {PAGE_SIZE_MAX}")
        page_size = int(text)

    sort = params.get("SortBy") or "DateCreated:desc"
    if sort not in ("DateCreated:asc", "DateCreated:desc"):
        raise FilterError("SortBy is DateCreated:asc or DateCreated:desc")

    before = Cursor.decode(b, "Before") if (b := params.get("Before")) is not None else None
    after = Cursor.decode(a, "After") if (a := params.get("After")) is not None else None
    if before is not None and after is not None:
        raise FilterError("give Before or After, not both")

    return CallListRequest(
        filters=CallFilters(
            sids=sids,
            created=created,
            to=params.get("To"),
            from_=params.get("From"),
            statuses=statuses,
            duration=duration,
            price=price,
            sub_types=sub_types,
        ),
        created_text=created_text,
        echo={
            name: value
            for name in ("Sid", "To", "From", "Status", "Duration", "Price", "Direction")
            if (value := params.get(name)) is not None
        },
        page_size=page_size,
        ascending=sort.endswith(":asc"),
        before=before,
        after=after,
    )


# -- queries ------------------------------------------------------------------------------
_u = usage_records.c
_CALL_COLUMNS = (
    _u.id,
    _u.natural_id,
    _u.account_id,
    _u.from_number,
    _u.to_number,
    _u.status,
    _u.sub_type,
    _u.duration_seconds,
    _u.price_micros,
    _u.occurred_at_us,
    _u.updated_at_us,
)


def _call(row: Any) -> CallView:  # a row of _CALL_COLUMNS
    m = row._mapping
    return CallView(
        id=int(m["id"]),
        sid=str(m["natural_id"]),
        account_id=str(m["account_id"]),
        from_number=m["from_number"],
        to_number=m["to_number"],
        status=str(m["status"]),
        direction=_SUB_TYPE_DIRECTION.get(str(m["sub_type"]), str(m["sub_type"])),
        duration_seconds=m["duration_seconds"],
        price_micros=int(m["price_micros"]),
        created_at_us=int(m["occurred_at_us"]),
        updated_at_us=int(m["updated_at_us"]),
    )


def _in_range(column: sa.ColumnElement[int], bounds: Range) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    if bounds.low is not None:
        clauses.append(column >= bounds.low)
    if bounds.high is not None:
        clauses.append(column < bounds.high)
    return clauses


def _call_filters(account_id: str, f: CallFilters) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [
        _u.account_id == account_id,
        _u.service == "voice",
        _u.status != "in-progress",  # calls in progress are not listed
    ]
    if f.sids is not None:
        where.append(_u.natural_id.in_(f.sids))
    where += _in_range(_u.occurred_at_us, f.created)
    if f.to is not None:
        where.append(_u.to_number == f.to)
    if f.from_ is not None:
        where.append(_u.from_number == f.from_)
    if f.statuses is not None:
        where.append(_u.status.in_(f.statuses))
    if f.duration.low is not None or f.duration.high is not None:
        where.append(_u.duration_seconds.is_not(None))
        where += _in_range(_u.duration_seconds, f.duration)
    where += _in_range(_u.price_micros, f.price)
    if f.sub_types is not None:
        where.append(_u.sub_type.in_(f.sub_types) if f.sub_types else sa.false())
    return where


def _beyond(cursor: Cursor, later: bool) -> sa.ColumnElement[bool]:
    """Records strictly after (later=True) or before the cursor in (occurred_at_us, id)."""
    if later:
        return sa.or_(
            _u.occurred_at_us > cursor.occurred_at_us,
            sa.and_(_u.occurred_at_us == cursor.occurred_at_us, _u.id > cursor.id),
        )
    return sa.or_(
        _u.occurred_at_us < cursor.occurred_at_us,
        sa.and_(_u.occurred_at_us == cursor.occurred_at_us, _u.id < cursor.id),
    )


class ExotelQueries:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def now_us(self) -> int:
        return to_micros(self.clock.now())

    def account(self, account_id: str) -> AccountInfo | None:
        query = (
            sa.select(
                accounts.c.id, accounts.c.timezone, accounts.c.currency, balances.c.updated_at_us
            )
            .select_from(accounts.outerjoin(balances, balances.c.account_id == accounts.c.id))
            .where(accounts.c.id == account_id)
        )
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return AccountInfo(str(row[0]), str(row[1]), str(row[2]), int(row[3] or 0))

    def call(self, account_id: str, call_sid: str) -> CallView | None:
        """One call, in progress or not."""
        query = sa.select(*_CALL_COLUMNS).where(
            _u.account_id == account_id, _u.service == "voice", _u.natural_id == call_sid
        )
        with self.db.read() as conn:
            row = conn.execute(query).first()
        return _call(row) if row is not None else None

    def sms(self, account_id: str, sms_sid: str) -> SmsView | None:
        query = sa.select(
            _u.natural_id,
            _u.account_id,
            _u.from_number,
            _u.to_number,
            _u.status,
            _u.sub_type,
            _u.quantity,
            _u.price_micros,
            _u.occurred_at_us,
            _u.updated_at_us,
        ).where(_u.account_id == account_id, _u.service == "sms", _u.natural_id == sms_sid)
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return SmsView(
            sid=str(row[0]),
            account_id=str(row[1]),
            from_number=row[2],
            to_number=row[3],
            stored_status=str(row[4]),
            sms_type=str(row[5]),
            units=int(row[6]),
            price_micros=int(row[7]),
            created_at_us=int(row[8]),
            updated_at_us=int(row[9]),
        )

    def calls(self, account_id: str, request: CallListRequest) -> CallPage:
        """One page of completed calls, with the total matching and the cursors of the pages
        on either side (exact: each is checked with an EXISTS)."""
        where = _call_filters(account_id, request.filters)
        size = request.page_size
        # Reading "backwards" (Before=) walks the sort order in reverse, then flips the page.
        backwards = request.before is not None
        walk_later = request.ascending != backwards  # direction of travel in key order
        query = sa.select(*_CALL_COLUMNS).where(*where)
        cursor = request.before or request.after
        if cursor is not None:
            query = query.where(_beyond(cursor, walk_later))
        if walk_later:
            query = query.order_by(_u.occurred_at_us.asc(), _u.id.asc())
        else:
            query = query.order_by(_u.occurred_at_us.desc(), _u.id.desc())
        with self.db.read() as conn:
            rows = [_call(r) for r in conn.execute(query.limit(size + 1))]
            more = len(rows) > size
            rows = rows[:size]
            if backwards:
                rows.reverse()
            total = int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(usage_records).where(*where)
                ).scalar_one()
            )
            prev_cursor = next_cursor = None
            if rows:
                first = Cursor(rows[0].created_at_us, rows[0].id)
                last = Cursor(rows[-1].created_at_us, rows[-1].id)
                has_prev = more if backwards else _exists(conn, where, first, not request.ascending)
                has_next = _exists(conn, where, last, request.ascending) if backwards else more
                prev_cursor = first if has_prev else None
                next_cursor = last if has_next else None
        return CallPage(rows, total, size, prev_cursor, next_cursor)


def _exists(
    conn: Connection, where: list[sa.ColumnElement[bool]], cursor: Cursor, later: bool
) -> bool:
    query = sa.select(_u.id).where(*where, _beyond(cursor, later)).limit(1)
    return conn.execute(query).first() is not None

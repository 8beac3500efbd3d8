"""Cursor pagination: `?limit=` (1-1000, default 50) and an opaque `?after=` cursor.

Every list is a keyset page in a stable order. A route asks its query for `limit + 1`
rows (`fetch_size`) and `page` keeps `limit` of them: `next_cursor` names the last row kept
and is given only when a further row exists, so the last page says so itself."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from fastapi import Query

from usagewatch.domain.errors import Malformed

LIMIT_DEFAULT = 50
LIMIT_MAX = 1000
CURSOR_LENGTH_MAX = 200
CURSOR_INT_MAX = 2**63 - 1  # a signed 64-bit column (BIGINT, SQLite INTEGER)
_INT = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes "²"
_CURSOR_DESCRIPTION = "the `next_cursor` of the previous page, as is"
Row = TypeVar("Row")


def limit_param(
    limit: int = Query(
        LIMIT_DEFAULT, ge=1, le=LIMIT_MAX, description=f"rows per page, 1-{LIMIT_MAX}"
    ),
) -> int:
    return limit


def after_param(
    after: str | None = Query(None, description=_CURSOR_DESCRIPTION),
) -> str | None:
    return after


def fetch_size(limit: int) -> int:
    """Rows to ask for: one more than a page, to know whether another page follows."""
    return limit + 1


def page(
    rows: Sequence[Row], limit: int, key: Callable[[Row], str | int]
) -> tuple[list[Row], str | None]:
    """The first `limit` of `rows` (fetched with `fetch_size(limit)`) and the cursor of the
    next page: the key of the last row kept, or None when no row follows it."""
    kept = list(rows[:limit])
    if len(rows) <= limit:
        return kept, None
    return kept, encode_cursor(key(kept[-1]))


def encode_cursor(value: str | int) -> str:
    return base64.urlsafe_b64encode(f"c1:{value}".encode()).decode().rstrip("=")


def _invalid() -> Malformed:
    return Malformed("invalid_cursor", "this cursor was not produced by this API", "after")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    if len(cursor) > CURSOR_LENGTH_MAX:
        raise _invalid()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith("c1:") or "\x00" in text:  # PostgreSQL refuses NUL in text
        raise _invalid()
    return text[3:]


def _cursor_int(text: str) -> int:
    if _INT.fullmatch(text) is None or int(text) > CURSOR_INT_MAX:
        raise _invalid()
    return int(text)


def decode_int_cursor(cursor: str | None) -> int | None:
    text = decode_cursor(cursor)
    return None if text is None else _cursor_int(text)


def pair_key(number: int, text: str) -> str:
    """The cursor key of a row ordered by (an integer column, a string id breaking ties);
    `decode_pair_cursor` reads it back."""
    return f"{number}:{text}"


def decode_pair_cursor(cursor: str | None) -> tuple[int, str] | None:
    text = decode_cursor(cursor)
    if text is None:
        return None
    number, colon, rest = text.partition(":")
    if not colon or not rest:
        raise _invalid()
    return _cursor_int(number), rest

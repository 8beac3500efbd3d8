"""Cursor pagination: `?limit=` (1-1000, default 50) and an opaque `?after=` cursor."""

from __future__ import annotations

import base64
import binascii

from fastapi import Query

from usagewatch.domain.errors import Malformed

LIMIT_DEFAULT = 50
LIMIT_MAX = 1000


def limit_param(limit: int = Query(LIMIT_DEFAULT, ge=1, le=LIMIT_MAX)) -> int:
    return limit


def encode_cursor(value: str | int) -> str:
    return base64.urlsafe_b64encode(f"c1:{value}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith("c1:") or len(cursor) > 200:
        raise Malformed("invalid_cursor", "this cursor was not produced by this API", "after")
    return text[3:]


def decode_int_cursor(cursor: str | None) -> int | None:
    text = decode_cursor(cursor)
    if text is None:
        return None
    if not text.isdigit():
        raise Malformed("invalid_cursor", "this cursor was not produced by this API", "after")
    return int(text)

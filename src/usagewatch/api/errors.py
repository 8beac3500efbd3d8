"""The one place where failures become HTTP responses in the documented envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from usagewatch.domain.errors import CODES, UsageWatchError

log = logging.getLogger(__name__)

_PYDANTIC_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
}
_MALFORMED = {"json_invalid", "model_attributes_type", "dict_type", "model_type"}


def envelope(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    assert code in CODES, code
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    headers = {"WWW-Authenticate": 'Basic realm="usagewatch", Bearer'} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path") else []
    return ".".join(parts) or None


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UsageWatchError)
    return envelope(exc.status, exc.code, exc.message, exc.field)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    kind = str(first.get("type", ""))
    loc = tuple(first.get("loc", ()))
    if kind in _MALFORMED and len(loc) <= 2:
        return envelope(
            400, "malformed_json", "the body must be a JSON object sent as application/json"
        )
    if loc and loc[0] == "query" and loc[-1] == "limit":
        return envelope(422, "invalid_limit", "limit must be between 1 and 1000", "limit")
    code = kind if kind in CODES else _PYDANTIC_CODES.get(kind, "validation_error")
    message = str(first.get("msg", "invalid value"))
    return envelope(422, code, message, _field(loc))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        return envelope(405, "method_not_allowed", "method not allowed on this route")
    if exc.status_code == 404:
        return envelope(404, "not_found", "no such route")
    return envelope(exc.status_code, "validation_error", str(exc.detail))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return envelope(500, "internal_error", "an unexpected error; nothing was changed")


def install(app: FastAPI) -> None:
    app.add_exception_handler(UsageWatchError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

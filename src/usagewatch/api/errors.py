"""The one place where failures become HTTP responses in the documented envelope."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from usagewatch.domain.errors import CODES, RateLimited, UsageWatchError

log = logging.getLogger(__name__)

_PYDANTIC_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
}
_MALFORMED = {"json_invalid", "model_attributes_type", "dict_type", "model_type"}


def envelope(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    assert code in CODES, code
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    all_headers = dict(headers or {})
    if status == 401:
        all_headers["WWW-Authenticate"] = 'Basic realm="usagewatch", Bearer'
    return JSONResponse({"error": body}, status_code=status, headers=all_headers or None)


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path") else []
    return ".".join(parts) or None


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UsageWatchError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return envelope(exc.status, exc.code, exc.message, exc.field, headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    kind = str(first.get("type", ""))
    loc = tuple(first.get("loc", ()))
    if (kind in _MALFORMED and len(loc) <= 2) or (kind == "missing" and loc == ("body",)):
        return envelope(
            400, "malformed_json", "the body must be a JSON object sent as application/json"
        )
    if loc and loc[0] == "query" and loc[-1] == "limit":
        return envelope(422, "invalid_limit", "limit must be between 1 and 1000", "limit")
    code, message = validation_code(first)
    return envelope(422, code, message, _field(loc))


def validation_code(error: Mapping[str, Any]) -> tuple[str, str]:
    """(code, message) of one pydantic error, as the API reports it (the dashboard's forms
    validate with the same models and show the same codes)."""
    kind = str(error.get("type", ""))
    code = kind if kind in CODES else _PYDANTIC_CODES.get(kind, "validation_error")
    return code, str(error.get("msg", "invalid value"))


def _allowed_methods(request: Request) -> str:
    """Every method the path accepts (Starlette's own Allow names only the first route)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.path and route.methods and compile_path(route.path)[0].match(request.url.path):
            methods.update(route.methods)
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:  # with the Allow header that RFC 9110 requires
        return envelope(
            405,
            "method_not_allowed",
            "method not allowed on this route",
            headers={"Allow": _allowed_methods(request)},
        )
    if exc.status_code == 404:
        return envelope(404, "not_found", "no such route")
    if exc.status_code == 400:  # FastAPI could not read the body (e.g. it is not UTF-8)
        return envelope(
            400, "malformed_json", "the body must be a JSON object sent as application/json"
        )
    return envelope(exc.status_code, "validation_error", str(exc.detail))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return envelope(500, "internal_error", "an unexpected error; nothing was changed")


def install(app: FastAPI) -> None:
    app.add_exception_handler(UsageWatchError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

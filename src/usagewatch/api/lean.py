"""The hot routes' JSON bodies, read and written by the route itself.

FastAPI resolves a route's parameters through its dependency solver on every request: with
the charge itself stubbed out, that was a third of an SMS request's CPU time in process
(0.59-0.63 ms per request before, 0.39-0.45 ms after, on a 2-core machine). A hot route (an
SMS, a WhatsApp conversation, a call's authorize and end) instead takes the `Request`,
reads its body with a `Body` in FastAPI's own steps (the same parser, model and errors, and
the access check with the same `allow` function between them), and returns its model
already serialized. Everything else stays as on every route: the middleware, the error
envelope, and the OpenAPI document, where the body appears under the model's own name as
before (`install_schemas`)."""

from __future__ import annotations

import asyncio
import email.message
import functools
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, ParamSpec, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import HTTPException, RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
T = TypeVar("T")

REF_TEMPLATE = "#/components/schemas/{model}"
_SCHEMAS: dict[str, dict[str, Any]] = {}  # model name -> its JSON schema, for install_schemas


class Body(Generic[M]):
    """A route's JSON body of model `model`, taken in FastAPI's two steps: `load` before the
    access check (a body that is not JSON at all gets its 400 first, as on every route),
    `validate` after it (so a caller without access never learns how its fields would be
    judged). `openapi` is the operation's requestBody, for the decorator's `openapi_extra`."""

    def __init__(self, model: type[M]) -> None:
        self.adapter = TypeAdapter(model)
        # without null values, as FastAPI writes its document (exclude_none)
        schema = jsonable_encoder(
            model.model_json_schema(ref_template=REF_TEMPLATE), exclude_none=True
        )
        for name, nested in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
            # FastAPI would tell two models of one name apart; here one would hide the other
            assert _SCHEMAS.setdefault(name, nested) == nested, f"two body models {name}"
        ref = {"$ref": REF_TEMPLATE.format(model=model.__name__)}
        self.openapi: dict[str, Any] = {
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}
        }

    async def read(
        self,
        request: Request,
        account_id: str,
        allowed: Callable[[str, Request], Awaitable[object]],
    ) -> M:
        """The body of a route under /v1/accounts/{account_id} whose access check is
        `allowed` (an `auth.allow(...)`), checked between the two steps."""
        loaded = await self.load(request)
        await allowed(account_id, request)
        return self.validate(loaded)

    @staticmethod
    async def load(request: Request) -> Any:
        """The body as FastAPI reads it before a route's dependencies: parsed when it is
        JSON (a Content-Type that is absent, application/json or any +json type: the app's
        `strict_content_type=False`), the bytes when it is something else (refused by
        `validate`), NO_BODY when empty. Not JSON, or not UTF-8: 400 `malformed_json`."""
        raw = await request.body()
        if not raw:
            return NO_BODY
        if not _json_content_type(request.headers.get("content-type")):
            return raw
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}
            raise RequestValidationError([error]) from None
        except Exception:  # not UTF-8, nested too deep (RecursionError): as FastAPI does
            raise HTTPException(400, "There was an error parsing the body") from None

    def validate(self, loaded: Any) -> M:
        """`load`'s result as the model, or what FastAPI raises for a declared body (the
        error handlers make it 400 `malformed_json` or the field's 422)."""
        if loaded is NO_BODY:
            raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "none"}])
        try:
            return self.adapter.validate_python(loaded)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from None


NO_BODY = object()


def _json_content_type(value: str | None) -> bool:
    if not value or value == "application/json":  # what clients send; parsing it costs 20 µs
        return True
    message = email.message.Message()
    message["content-type"] = value
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


# The hot routes' worker threads, as many as anyio's default limit. FastAPI's
# run_in_threadpool makes the same hop through anyio, whose capacity limiter and cancel
# scope cost the event loop 35-90 us more per call (measured in process, alternating).
_THREADS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="usagewatch-route")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a worker thread, awaited from the event loop."""
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_THREADS, call)


def respond(request: Request, value: BaseModel) -> Response:
    """`value` as the JSON response FastAPI would have written for it, with the status the
    route declares (the one its OpenAPI operation shows)."""
    status = getattr(request.scope.get("route"), "status_code", None) or 200
    return Response(value.model_dump_json(by_alias=True), status, media_type="application/json")


def install_schemas(app: FastAPI) -> None:
    """Put the `Body` models in the OpenAPI document's components, where their routes'
    requestBody refers to them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = build().setdefault("components", {}).setdefault("schemas", {})
            for name, schema in _SCHEMAS.items():
                assert schemas.setdefault(name, schema) == schema, f"two models {name}"
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

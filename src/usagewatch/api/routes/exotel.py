"""The Exotel-compatible read API (docs/exotel.md): Exotel v1 paths, field names, Basic auth
and RestException errors, for existing Exotel clients.

These routes answer every failure themselves, as a RestException in the requested format
(JSON on `.json` paths, XML otherwise), never with the native error envelope. Query
parameters are read as plain strings so that FastAPI's own validation never answers first.
Every GET path also answers HEAD; a catch-all route answers every other method and path.

A CallSid or SmsSid is read from the raw (still percent-encoded) last path segment: only a
literal `.json` suffix asks for JSON, so `a%2Ejson` is the call `a.json` in XML, and an
encoded `/` stays inside the sid. The Uris built here encode every character of a segment
but A-Z a-z 0-9 - _ ~ (`.` too: `..` or a trailing `.json` would name another resource).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlencode
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from usagewatch.api.auth import container_of, principal_of
from usagewatch.bootstrap import Container
from usagewatch.domain.errors import RateLimited, UsageWatchError
from usagewatch.domain.money import Money
from usagewatch.service.exotel import (
    ECHO_CHARS_MAX,
    AccountInfo,
    CallListRequest,
    CallPage,
    CallView,
    Cursor,
    ExotelQueries,
    FilterError,
    SmsView,
    parse_call_list,
    quoted,
)

log = logging.getLogger(__name__)
PREFIX = "/v1/Accounts/{AccountSid}"
router = APIRouter(
    prefix=PREFIX,
    tags=["Exotel-compatible API"],
    responses={"default": {"description": "RestException, as for 4XX"}},
)
ALLOW = "GET, HEAD"  # the methods every known path answers

JSON_TYPE = "application/json"
XML_TYPE = "application/xml; charset=utf-8"
_FORMATS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON on `.json` paths, otherwise XML in `<TwilioResponse>`",
        "content": {JSON_TYPE: {}, "application/xml": {}},
    },
    "4XX": {"description": 'RestException: `{"RestException": {"Status", "Message", "Code"}}`'},
}
# A list member's element name in XML.
_ITEM_NAMES = {"Calls": "Call"}
# Characters XML 1.0 cannot carry at all (escaping does not help): replaced.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class RestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- rendering ------------------------------------------------------------------------------
def _xml_text(value: object) -> str:
    return _XML_ILLEGAL.sub("\ufffd", str(value))


def _xml_fill(element: ET.Element, value: object) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _xml_fill(ET.SubElement(element, key), child)
    elif isinstance(value, list):
        item_name = _ITEM_NAMES.get(element.tag, "Item")
        for child in value:
            _xml_fill(ET.SubElement(element, item_name), child)
    elif value is not None:  # None: an empty element
        element.text = _xml_text(value)


def render(body: dict[str, Any], as_json: bool, status: int = 200) -> Response:
    if as_json:
        return Response(json.dumps(body), status_code=status, media_type=JSON_TYPE)
    root = ET.Element("TwilioResponse")
    _xml_fill(root, body)
    text = ET.tostring(root, encoding="unicode", xml_declaration=False)
    return Response(
        '<?xml version="1.0" encoding="UTF-8"?>\n' + text,
        status_code=status,
        media_type=XML_TYPE,
    )


def rest_exception(status: int, message: str, as_json: bool) -> Response:
    response = render(
        {"RestException": {"Status": status, "Message": message, "Code": status}},
        as_json,
        status,
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="usagewatch"'
    return response


def _split_json(text: str) -> tuple[str, bool]:
    """`CA1.json` -> ("CA1", True); `CA1` -> ("CA1", False)."""
    return (text[: -len(".json")], True) if text.endswith(".json") else (text, False)


def _wants_json(request: Request) -> bool:
    """A literal `.json` ends the path (an encoded `%2Ejson` belongs to a sid)."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        return raw.endswith(b".json")
    return request.url.path.endswith(".json")


def _sid_of(request: Request, matched: str) -> tuple[str, bool] | None:
    """(sid, as_json) named by the raw last path segment, the route having matched its
    decoded form as `matched`. None when there is no such resource: `matched` spans more
    than one segment (a literal `/`, as in Calls/CA1/Legs), or the sid is empty."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        last = raw.decode("latin-1").rsplit("/", 1)[-1]
        if unquote(last).count("/") != matched.count("/"):
            return None
        text, as_json = _split_json(last)
        sid = unquote(text)
    else:  # a server that does not pass the raw path: the decoded one
        if "/" in matched:
            return None
        sid, as_json = _split_json(matched)
    return (sid, as_json) if sid else None


def _segment(text: str) -> str:
    return quote(text, safe="").replace(".", "%2E")


def _uri(*parts: str, as_json: bool, query: dict[str, str] | None = None) -> str:
    path = "/v1/Accounts/" + "/".join(_segment(p) for p in parts)
    path += ".json" if as_json else ""
    return path + ("?" + urlencode(query, safe=":;,") if query else "")


def _price(micros: int) -> str:
    return Money(micros).format()


def call_body(call: CallView, account: AccountInfo, as_json: bool) -> dict[str, Any]:
    ended = not call.in_progress
    # The platform's side of the call: the number dialled in, or the caller id used.
    platform_number = call.to_number if call.direction == "inbound" else call.from_number
    duration = call.duration_seconds
    return {
        "Sid": call.sid,
        "ParentCallSid": None,
        "DateCreated": account.local(call.created_at_us),
        "DateUpdated": account.local(call.updated_at_us),
        "AccountSid": account.account_id,
        "To": call.to_number,
        "From": call.from_number,
        "PhoneNumberSid": platform_number,
        "Status": call.status,
        "StartTime": account.local(call.created_at_us),
        "EndTime": account.local(call.updated_at_us) if ended else None,
        "Duration": str(duration) if ended and duration is not None else None,
        "Price": _price(call.price_micros) if ended else None,
        "Direction": call.direction,
        "AnsweredBy": None,
        "ForwardedFrom": None,
        "CallerName": None,
        "Uri": _uri(account.account_id, "Calls", call.sid, as_json=as_json),
        "RecordingUrl": None,
    }


def sms_body(sms: SmsView, account: AccountInfo, as_json: bool) -> dict[str, Any]:
    status, detailed, code = sms.status
    sent_at = sms.sent_at_us
    return {
        "Sid": sms.sid,
        "AccountSid": account.account_id,
        "From": sms.from_number,
        "To": sms.to_number,
        "Body": "",  # bodies are never stored (privacy)
        "Status": status,
        "DetailedStatusCode": code,
        "DetailedStatus": detailed,
        "SmsUnits": sms.units,
        "Direction": "outbound-api",
        "DateCreated": account.local(sms.created_at_us),
        "DateUpdated": account.local(sms.updated_at_us),
        "DateSent": account.local(sent_at) if sent_at is not None else None,
        "Price": _price(sms.price_micros),
        "Uri": _uri(account.account_id, "SMS", "Messages", sms.sid, as_json=as_json),
    }


def list_body(
    page: CallPage, request: CallListRequest, account: AccountInfo, as_json: bool
) -> dict[str, Any]:
    base = {"DateCreated": request.created_text, **request.echo}
    base["PageSize"] = str(request.page_size)
    base["SortBy"] = "DateCreated:asc" if request.ascending else "DateCreated:desc"

    def page_uri(cursor_name: str | None, cursor: Cursor | None) -> str | None:
        if cursor_name is not None and cursor is None:
            return None
        query = dict(base)
        if cursor_name is not None and cursor is not None:
            query[cursor_name] = cursor.encode()
        return _uri(account.account_id, "Calls", as_json=as_json, query=query)

    return {
        "Metadata": {
            "Total": page.total,
            "PageSize": page.page_size,
            "FirstPageUri": page_uri(None, None),
            "PrevPageUri": page_uri("Before", page.prev_cursor),
            "NextPageUri": page_uri("After", page.next_cursor),
        },
        "Calls": [call_body(call, account, as_json) for call in page.calls],
    }


# -- the common frame: auth, account, errors -------------------------------------------------
Handler = Callable[[ExotelQueries, AccountInfo], dict[str, Any]]


def _finish(request: Request, response: Response) -> Response:
    """A HEAD request gets the GET answer's status and headers, Content-Length included,
    without its body (RFC 9110 9.3.2)."""
    if request.method == "HEAD":
        response.body = b""
    return response


def _answer(
    c: Container, request: Request, account_sid: str, handler: Handler, as_json: bool
) -> Response:
    """Authenticate, find the account (404 for another account's or an unknown one, never
    telling them apart), run `handler`; every failure becomes a RestException."""
    return _finish(request, _answer_body(c, request, account_sid, handler, as_json))


def _answer_body(
    c: Container, request: Request, account_sid: str, handler: Handler, as_json: bool
) -> Response:
    try:
        try:
            principal = principal_of(request)
        except RateLimited as exc:
            limited = rest_exception(429, exc.message, as_json)
            limited.headers["Retry-After"] = str(exc.retry_after)
            return limited
        except UsageWatchError as exc:
            raise RestError(401, "Authentication failed: send HTTP Basic sid:token") from exc
        queries = ExotelQueries(c.db, c.clock)
        account = queries.account(account_sid) if principal.sees(account_sid) else None
        if account is None:
            raise RestError(404, f"No account {quoted(account_sid)} for these credentials")
        return render(handler(queries, account), as_json)
    except RestError as exc:
        return rest_exception(exc.status, exc.message, as_json)
    except FilterError as exc:
        return rest_exception(400, str(exc), as_json)
    except UsageWatchError as exc:
        return rest_exception(exc.status, exc.message, as_json)
    except Exception:
        log.exception("unhandled error in the Exotel-compatible API")
        return rest_exception(500, "An unexpected error; nothing was changed", as_json)


# -- routes ------------------------------------------------------------------------------------
_DESC = "Exotel v1 form; add `.json` for JSON, else XML. Basic auth `key_id:token` or `sid:token`."
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Response])


def _get(path: str, **options: Any) -> Callable[[_Endpoint], _Endpoint]:
    """Route GET `path` (with `options`) and HEAD `path` (kept out of the OpenAPI document)
    to the endpoint, which answers HEAD without a body (`_finish`)."""

    def register(endpoint: _Endpoint) -> _Endpoint:
        router.head(path, include_in_schema=False)(endpoint)
        return router.get(path, **options)(endpoint)

    return register


def _not_found(request: Request, as_json: bool) -> Response:
    return _finish(request, rest_exception(404, "No such resource", as_json))


@_get("/Balance", summary="Exotel: account balance (XML)", responses=_FORMATS)
@_get("/Balance.json", summary="Exotel: account balance (JSON)", responses=_FORMATS)
def exotel_balance(request: Request, AccountSid: str) -> Response:
    c = container_of(request)

    def handler(queries: ExotelQueries, account: AccountInfo) -> dict[str, Any]:
        balance = c.queries.balance(account.account_id)  # may first forfeit due promotions
        info = queries.account(account.account_id) or account
        return {
            "Account": {
                "AccountSid": account.account_id,
                "BalanceData": {
                    "Balance": Money(balance.available_micros).format(),
                    "Currency": balance.currency,
                    "PricingPlan": "prepaid",
                    "DateUpdated": info.local(info.balance_updated_at_us),
                },
            }
        }

    return _answer(c, request, AccountSid, handler, _wants_json(request))


# Registered second (decorators apply bottom-up), undocumented: a sid with an encoded `/`.
@_get("/Calls/{CallSid:path}", include_in_schema=False)
@_get(
    "/Calls/{CallSid}",
    summary="Exotel: one call (add .json to the CallSid for JSON)",
    description=_DESC,
    responses=_FORMATS,
)
def exotel_call(request: Request, AccountSid: str, CallSid: str) -> Response:
    c = container_of(request)
    found = _sid_of(request, CallSid)
    if found is None:  # /Calls/CA1/Legs and the like
        return _not_found(request, _wants_json(request))
    call_sid, as_json = found

    def handler(queries: ExotelQueries, account: AccountInfo) -> dict[str, Any]:
        call = queries.call(account.account_id, call_sid)
        if call is None:
            raise RestError(404, f"No call {quoted(call_sid)} on this account")
        return {"Call": call_body(call, account, as_json)}

    return _answer(c, request, AccountSid, handler, as_json)


def _list_route(
    request: Request,
    AccountSid: str,
    params: dict[str, str | None],
) -> Response:
    c = container_of(request)
    as_json = _wants_json(request)

    def handler(queries: ExotelQueries, account: AccountInfo) -> dict[str, Any]:
        parsed = parse_call_list(params, account.timezone, queries.now_us())
        page = queries.calls(account.account_id, parsed)
        return list_body(page, parsed, account, as_json)

    return _answer(c, request, AccountSid, handler, as_json)


@_get("/Calls", summary="Exotel: bulk call list (XML)", responses=_FORMATS)
@_get("/Calls.json", summary="Exotel: bulk call list (JSON)", responses=_FORMATS)
def exotel_calls(
    request: Request,
    AccountSid: str,
    Sid: str | None = Query(None, description="Comma-separated CallSids, at most 100"),
    DateCreated: str | None = Query(
        None,
        description="gte:YYYY-MM-DD HH:MM:SS;lte:YYYY-MM-DD HH:MM:SS, account-local; "
        "default: the last 31 days",
    ),
    To: str | None = Query(None),
    From: str | None = Query(None),
    Status: str | None = Query(None, description="One or more call statuses, comma-separated"),
    Duration: str | None = Query(None, description="gte:10s;lte:45s"),
    Price: str | None = Query(None, description="gte:0.10;lte:1.0 (exact decimals)"),
    Direction: str | None = Query(None, description="inbound, outbound-api, outbound-dial"),
    PageSize: str | None = Query(None, description="1-100, default 50"),
    SortBy: str | None = Query(None, description="DateCreated:asc or DateCreated:desc"),
    Before: str | None = Query(None, description="Cursor from PrevPageUri"),
    After: str | None = Query(None, description="Cursor from NextPageUri"),
) -> Response:
    params = {
        "Sid": Sid,
        "DateCreated": DateCreated,
        "To": To,
        "From": From,
        "Status": Status,
        "Duration": Duration,
        "Price": Price,
        "Direction": Direction,
        "PageSize": PageSize,
        "SortBy": SortBy,
        "Before": Before,
        "After": After,
    }
    return _list_route(request, AccountSid, params)


def _is_sms_path(segments: tuple[str, str]) -> bool:
    return (segments[0].lower(), segments[1].lower()) == ("sms", "messages")


def _sms_route(request: Request, account_sid: str, segments: tuple[str, str], sid: str) -> Response:
    c = container_of(request)
    found = _sid_of(request, sid)
    if found is None or not _is_sms_path(segments):
        return _not_found(request, _wants_json(request))
    sms_sid, as_json = found

    def handler(queries: ExotelQueries, account: AccountInfo) -> dict[str, Any]:
        sms = queries.sms(account.account_id, sms_sid)
        if sms is None:
            raise RestError(404, f"No SMS {quoted(sms_sid)} on this account")
        return {"SMSMessage": sms_body(sms, account, as_json)}

    return _answer(c, request, account_sid, handler, as_json)


@_get(
    "/SMS/Messages/{SmsSid}",  # with an encoded `/` in the sid: the any-case route below
    summary="Exotel: one SMS (add .json to the SmsSid for JSON; SMS/Messages in any case)",
    description=_DESC,
    responses=_FORMATS,
)
def exotel_sms(request: Request, AccountSid: str, SmsSid: str) -> Response:
    return _sms_route(request, AccountSid, ("SMS", "Messages"), SmsSid)


@_get("/{SmsSegment}/{MessagesSegment}/{SmsSid:path}", include_in_schema=False)
def exotel_sms_any_case(
    request: Request,
    AccountSid: str,
    SmsSegment: str,
    MessagesSegment: str,
    SmsSid: str,
) -> Response:
    """`Sms/Messages`, `sms/messages`, …: the same as SMS/Messages."""
    return _sms_route(request, AccountSid, (SmsSegment, MessagesSegment), SmsSid)


def _is_known(request: Request) -> bool:
    """Whether a GET route above answers this path with something other than a 404."""
    for route in router.routes:
        match = route.path_regex.match(request.url.path) if isinstance(route, APIRoute) else None
        if match is None:
            continue
        params = match.groupdict()
        sid = params.get("CallSid", params.get("SmsSid"))
        if sid is not None and _sid_of(request, sid) is None:
            continue
        if "SmsSegment" in params and not _is_sms_path(
            (params["SmsSegment"], params["MessagesSegment"])
        ):
            continue
        return True
    return False


def exotel_other(request: Request) -> Response:
    """Last: anything else under /v1/Accounts/{AccountSid}/, in any method, answers in
    Exotel's form too, never with the native envelope: 405 on a known path with a method
    other than GET or HEAD (OPTIONS included), else 404."""
    as_json = _wants_json(request)
    if not _is_known(request):
        return _not_found(request, as_json)
    method = request.method[:ECHO_CHARS_MAX]
    response = rest_exception(405, f"{method} is not allowed here", as_json)
    response.headers["Allow"] = ALLOW  # HEAD never gets here: every known path answers it
    return response


# A plain Starlette route with an empty method list takes every method, even unknown ones
# (None would mean GET only, and FastAPI's routes need each method named).
router.add_route(PREFIX + "/{Rest:path}", exotel_other, methods=(), include_in_schema=False)

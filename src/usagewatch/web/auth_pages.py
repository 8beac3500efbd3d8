"""Sign-in, sign-out, the operator's account switch, the live balance feed and the assets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from usagewatch.api.routes.credits import _balance_events
from usagewatch.domain.errors import NotFound
from usagewatch.web.context import HERE, Dashboard
from usagewatch.web.sessions import COOKIE_NAME, admin_fingerprint, new_session

router = APIRouter(include_in_schema=False)
OPERATOR_LOGIN = "admin"  # the operator signs in with this name and the admin token
HOME = "/billing/usage"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def dashboard(request: Request) -> Dashboard:
    return request.app.state.dashboard  # type: ignore[no-any-return]


def _safe_next(value: str | None) -> str:
    """Only a local path: never an open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return HOME


@router.get("/")
@router.get("/billing")  # the address every notice links to
async def home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    d = dashboard(request)
    session = d.anonymous(request)
    response = d.render(request, "login.html", session, next=_safe_next(next), error=None)
    d.set_cookie(response, session, request)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    d = dashboard(request)
    before = d.session(request)
    form = await d.form(request, before)
    email = form.get("email", "").strip().lower()[:254]
    password = form.get("password", "")[:1024]
    client = request.client.host if request.client else "unknown"
    keys = (f"email:{email}", f"client:{client}")
    delay = d.throttle.delay_seconds(keys)
    if delay:
        await asyncio.sleep(delay)
    session = None
    if email == OPERATOR_LOGIN:
        if password and d.c.accounts.is_admin_token(password):
            first = await run_in_threadpool(d.c.accounts.list_accounts, 1, None)
            session = new_session(
                user_id=OPERATOR_LOGIN,
                account_id=first[0].id if first else None,
                role="admin",
                email=OPERATOR_LOGIN,
                admin_fingerprint=admin_fingerprint(d.c.accounts.admin_token_hash),
            )
    else:
        user = await run_in_threadpool(d.c.accounts.authenticate_user, email, password)
        if user is not None:
            session = new_session(
                user_id=user.user_id, account_id=user.account_id, role=user.role, email=user.email
            )
    if session is None or session.account_id is None:
        d.throttle.failed(keys)
        return d.render(
            request,
            "login.html",
            before,
            status_code=401,
            next=_safe_next(form.get("next")),
            error="Wrong email or password."
            if session is None
            else "Signed in, but there is no account yet: create one through the API first.",
        )
    d.throttle.succeeded(keys[0])
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    d.set_cookie(response, session, request)  # a new session: a new CSRF token
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    d = dashboard(request)
    await d.form(request, d.session(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


@router.post("/switch-account")
async def switch_account(request: Request) -> Response:
    d = dashboard(request)
    session = await d.signed_in(request)
    form = await d.form(request, session)
    if not session.is_admin:
        return Response("only the operator may switch accounts", status_code=403)
    account = await run_in_threadpool(d.c.accounts.get_account, form.get("account_id", ""))
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    d.set_cookie(response, session.with_account(account.id), request)
    return response


@router.get("/dashboard/balance/stream")
async def balance_stream(request: Request) -> StreamingResponse:
    """The header's live balance: the API's Server-Sent Events, authenticated by the
    session cookie (same origin only: the cookie is SameSite)."""
    d = dashboard(request)
    session = await d.signed_in(request)
    account_id = session.account_id or ""
    first = await run_in_threadpool(d.c.queries.balance, account_id)
    return StreamingResponse(
        _balance_events(request, d.c, account_id, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/assets/plotly.min.js")
async def plotly_js() -> Response:
    """plotly.js as shipped inside the pinned `plotly` wheel: never from a CDN."""
    import plotly

    path = Path(os.path.dirname(plotly.__file__)) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise NotFound("not_found", "plotly.min.js is missing from the plotly package")
    return FileResponse(
        path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    path = HERE / "static" / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or not path.is_file():
        raise NotFound("not_found", f"no asset {name!r}")
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "no-cache"})

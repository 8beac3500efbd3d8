"""The dashboard: server-rendered pages over the same services as the JSON API.

`install(app, container)` adds its routes (`/login`, `/billing/...`, the live balance feed,
the assets) and the two exception handlers that turn "not signed in" into a redirect to
/login and a form post without its CSRF token into a 403.
"""

from __future__ import annotations

import urllib.parse

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from usagewatch.bootstrap import Container
from usagewatch.web import alert_pages, auth_pages, billing_pages, payment_pages
from usagewatch.web.context import CsrfRefused, Dashboard, LoginRequired


def install(app: FastAPI, c: Container) -> None:
    app.state.dashboard = Dashboard.create(c)
    app.include_router(auth_pages.router)
    app.include_router(billing_pages.router)
    app.include_router(alert_pages.router)
    app.include_router(payment_pages.router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRefused, _csrf_refused)


async def _login_required(request: Request, _exc: Exception) -> Response:
    if request.url.path.startswith("/dashboard/"):  # the feed and downloads: no redirect
        return PlainTextResponse("sign in first", status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/"
    return RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}), status_code=303)


async def _csrf_refused(_request: Request, _exc: Exception) -> Response:
    return PlainTextResponse(
        "This form expired or did not come from this dashboard (missing CSRF token). "
        "Go back, reload the page and try again.",
        status_code=403,
    )

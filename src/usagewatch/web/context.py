"""What every dashboard page shares: the session, the signed-in account, CSRF checks, form
parsing, and rendering a template with the header (balance, banner, navigation)."""

from __future__ import annotations

import functools
import json
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from usagewatch.bootstrap import Container
from usagewatch.domain.clock import from_micros, to_micros
from usagewatch.domain.ledger import EntryKind
from usagewatch.domain.money import Money
from usagewatch.web.sessions import (
    COOKIE_NAME,
    Session,
    SessionSigner,
    SignInThrottle,
    admin_fingerprint,
    csrf_matches,
    new_session,
    resolve_secret,
)

HERE = Path(__file__).resolve().parent
FORM_BYTES_MAX = 64 * 1024

# The navigation, in order: (path, label, section).
NAV = (
    ("/billing/usage", "Usage", "Billing"),
    ("/billing/spending-limits", "Spending Limits", "Billing"),
    ("/billing/credits", "Credits", "Billing"),
    ("/billing/alerts", "Alerts", "Billing"),
    ("/billing/auto-recharge", "Auto-recharge", "Billing"),
    ("/notifications", "Notifications", "Account"),
    ("/settings/api-keys", "API Keys", "Account"),
)

# Why outbound is paused, and what to do: keyed by the balance's outbound_block_reason.
BLOCK_REASONS = {
    "insufficient_balance": (
        "Outbound calls and messages are paused: the available balance is zero.",
        "Add credits to resume at once.",
    ),
    "daily_cap_reached": (
        "Outbound calls and messages are paused: the daily spending cap is reached.",
        "They resume at midnight (account time), or raise the daily cap under Spending Limits.",
    ),
    "weekly_cap_reached": (
        "Outbound calls and messages are paused: the weekly spending cap is reached.",
        "They resume on Monday at midnight (account time), or raise the weekly cap under "
        "Spending Limits.",
    ),
    "monthly_cap_reached": (
        "Outbound calls and messages are paused: the monthly spending cap is reached.",
        "They resume on the 1st of next month, or raise the monthly cap under Spending Limits.",
    ),
    "account_not_active": (
        "Outbound calls and messages are paused: the account is not active.",
        "Contact support to reactivate the account.",
    ),
}


# Journal entry types in words (the Credits page); the API keeps the codes.
ENTRY_LABELS = {
    EntryKind.CREDIT_PAID: "Credit (paid)",
    EntryKind.CREDIT_PROMOTIONAL: "Credit (promotional)",
    EntryKind.HOLD: "Held for a call",
    EntryKind.HOLD_EXTEND: "Hold extended",
    EntryKind.CAPTURE: "Call charged",
    EntryKind.LATE_CAPTURE: "Call charged after its hold expired",
    EntryKind.RELEASE: "Hold released",
    EntryKind.HOLD_EXPIRED: "Hold expired",
    EntryKind.DEBIT: "Usage charged",
    EntryKind.PROMOTIONAL_EXPIRED: "Promotional credit expired",
}


def entry_label(kind: str) -> str:
    return ENTRY_LABELS[EntryKind(kind)]  # every kind has words (a test checks)


def _zone_label(timezone: str, now: datetime) -> str:
    """The account zone's abbreviation now ("IST"), as format_instant writes it."""
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(timezone)).tzname() or timezone


def block_text(code: str | None) -> tuple[str, str] | None:
    """The banner's (why, what to do) for a balance's outbound_block_reason; None when
    outbound is not paused. The page carries BLOCK_REASONS for app.js, which shows the same
    words when the live balance pauses or resumes outbound."""
    if code is None:
        return None
    return BLOCK_REASONS.get(code) or (
        f"Outbound calls and messages are paused ({reason_text(code)}).",
        "See Spending Limits and Credits.",
    )


def reason_text(code: str | None) -> str:
    """A limit's code in words, as the dry-run table shows it (the API keeps the code)."""
    return "" if code is None else code.replace("_", " ")


class Form(dict[str, str]):
    """A posted form: one value per name (the last), and every value of a name repeated
    (checkboxes) through `getlist`."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.lists: dict[str, list[str]] = {}
        for name, value in pairs:
            self.lists.setdefault(name, []).append(value)

    def getlist(self, name: str) -> list[str]:
        return list(self.lists.get(name, []))


class LoginRequired(Exception):
    """Raised by a page when nobody is signed in: the handler redirects to /login."""


class CsrfRefused(Exception):
    """A form post without the session's CSRF token: refused with 403."""


def format_money(micros: int, currency: str | None = None) -> str:
    """1234567.5 units -> "1,234,567.50" (exact: at least 2 decimals, up to 6)."""
    text = Money(micros).display()
    return f"{currency} {text}" if currency else text


def format_instant(micros: int | None, timezone: str | None = None) -> str:
    if micros is None:
        return "—"
    instant = from_micros(micros)
    if timezone:
        from zoneinfo import ZoneInfo

        local = instant.astimezone(ZoneInfo(timezone))
        return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "")
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_rfc3339(text: str, timezone: str) -> str:
    """An API timestamp ("2026-12-07T18:30:00Z") as format_instant writes it, in the zone."""
    return format_instant(to_micros(datetime.fromisoformat(text.replace("Z", "+00:00"))), timezone)


@dataclass
class Dashboard:
    """Per-app state of the dashboard: the cookie signer (built on first use, so an app that
    never serves a page never creates a secret file), the throttle and the templates."""

    c: Container
    throttle: SignInThrottle
    templates: jinja2.Environment

    @functools.cached_property
    def signer(self) -> SessionSigner:
        settings = self.c.settings
        secret = resolve_secret(settings.session_secret, settings.session_secret_file)
        return SessionSigner(secret, settings.session_max_age_seconds)

    @classmethod
    def create(cls, c: Container) -> Dashboard:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["money"] = format_money
        env.filters["instant"] = format_instant
        env.filters["at"] = format_rfc3339
        env.filters["grouped"] = lambda text: format_money(Money.parse(text).micros)
        env.filters["tojson_script"] = _json_for_script
        env.filters["reason"] = reason_text
        env.filters["entry_label"] = entry_label
        return cls(c, SignInThrottle(), env)

    # -- sessions ------------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        return self.signer.loads(request.cookies.get(COOKIE_NAME))

    async def signed_in(self, request: Request) -> Session:
        """The signed-in session, still valid (the user exists; the admin token unchanged)."""
        session = self.session(request)
        if session is None or not session.signed_in or session.account_id is None:
            raise LoginRequired
        if session.is_admin:
            current = admin_fingerprint(self.c.accounts.admin_token_hash)
            if session.admin_fingerprint != current:
                raise LoginRequired
        elif not await run_in_threadpool(self.c.accounts.user_exists, session.user_id or ""):
            raise LoginRequired
        return session

    def set_cookie(self, response: Response, session: Session, request: Request) -> None:
        response.set_cookie(
            COOKIE_NAME,
            self.signer.dumps(session),
            max_age=self.signer.max_age_seconds,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    def anonymous(self, request: Request) -> Session:
        """The visitor's session before sign-in (for the login form's CSRF token)."""
        current = self.session(request)
        return current if current is not None else new_session()

    # -- forms ---------------------------------------------------------------------------
    async def form(self, request: Request, session: Session | None) -> Form:
        """The posted urlencoded form, after checking its CSRF token against the session."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_BYTES_MAX:
                raise CsrfRefused  # nothing this large is one of our forms
        fields = Form(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), max_num_fields=50))
        if not csrf_matches(session, fields.get("csrf_token")):
            raise CsrfRefused
        return fields

    # -- rendering -----------------------------------------------------------------------
    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            request_path=request.url.path,
            session=session,
            csrf_token=session.csrf if session else "",
            nav=NAV,
            **values,
        )
        response = HTMLResponse(html, status_code=status_code)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    async def page(
        self, request: Request, template: str, session: Session, **values: Any
    ) -> HTMLResponse:
        """A page with the header: the account, its balance and banner, the account switcher
        for the operator."""
        c = self.c
        account_id = session.account_id or ""
        account = await run_in_threadpool(c.accounts.get_account, account_id)
        balance = await run_in_threadpool(c.queries.balance, account_id)
        accounts = (
            await run_in_threadpool(c.accounts.list_accounts, 200, None) if session.is_admin else []
        )
        block = block_text(balance.outbound_block_reason)
        return self.render(
            request,
            template,
            session,
            account=account,
            balance=balance,
            block=block,
            block_reasons=BLOCK_REASONS,
            zone_label=_zone_label(account.timezone, c.clock.now()),
            accounts=accounts,
            can_manage=session.role in ("owner", "admin"),
            **values,
        )


def _json_for_script(value: Any) -> Markup:
    """JSON safe inside <script type="application/json"> (no "</script>" break-out)."""
    text = json.dumps(value, separators=(",", ":"))
    safe = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(safe)  # escaped for a script element above


def now_utc() -> datetime:
    return datetime.now(UTC)

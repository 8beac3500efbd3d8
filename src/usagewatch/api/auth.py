"""Who is calling, and may they act on this account. The whole access policy is here."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from usagewatch.api.ratelimit import RateLimiter
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.errors import Forbidden, NotFound, RateLimited, Unauthenticated
from usagewatch.service.accounts import basic_principal

# What each kind of action allows. The operator (admin) may do everything.
READ = frozenset({Role.OWNER, Role.VIEWER, Role.PLATFORM})
MANAGE = frozenset({Role.OWNER})
PLATFORM = frozenset({Role.PLATFORM})
OPERATOR = frozenset[Role]()


# Dependencies are `async def`: FastAPI runs a plain `def` dependency in a worker thread,
# and that hop costs more than the check itself. Authentication reads the database only
# for a key this process has not seen lately (`AccountService.known_principal`), and then
# in a worker thread.
def container_of(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


async def container(request: Request) -> Container:
    return container_of(request)


def _credentials(request: Request) -> tuple[str | None, str | None]:
    """(token, Basic user name or None) from the Authorization header."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip() or None, None
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        username, sep, password = decoded.partition(":")
        return (password or None) if sep else None, username
    return None, None


def _checked(request: Request, principal: Principal | None, username: str | None) -> Principal:
    """The caller, once known and within its key's rate limit (401 / 429 otherwise)."""
    if principal is not None and username is not None:
        principal = basic_principal(principal, username)
    if principal is None:
        raise Unauthenticated(
            "unauthenticated", "send HTTP Basic key_id:token or Authorization: Bearer token"
        )
    if principal.key_id is not None:  # an API key; the operator's token is not limited
        limiter: RateLimiter = request.app.state.rate_limiter
        wait = limiter.retry_after(principal.key_id)
        if wait is not None:
            raise RateLimited(wait)
    return principal


def principal_of(request: Request) -> Principal:
    """Who is calling (401 `unauthenticated` when nobody); may read the database."""
    token, username = _credentials(request)
    accounts = container_of(request).accounts
    return _checked(request, accounts.principal_for_token(token) if token else None, username)


async def current_principal(request: Request) -> Principal:
    """`principal_of` as a dependency: the database read, when needed, in a worker thread."""
    token, username = _credentials(request)
    principal = None
    if token:
        accounts = container_of(request).accounts
        principal = accounts.known_principal(token)
        if principal is None:
            principal = await run_in_threadpool(accounts.principal_for_token, token)
    return _checked(request, principal, username)


def allow(roles: frozenset[Role]) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency for routes under /v1/accounts/{account_id}: the caller must see the
    account (else 404, never revealing it exists) and hold one of `roles` (else 403)."""

    async def dependency(account_id: str, request: Request) -> Principal:
        # current_principal called, not declared as a sub-dependency: one dependency for
        # FastAPI to resolve on every request instead of two
        principal = await current_principal(request)
        if not principal.sees(account_id):
            raise NotFound("account_not_found", f"no account {account_id!r}")
        if principal.role is not Role.ADMIN and principal.role not in roles:
            raise Forbidden("forbidden", f"a {principal.role.value} key may not do this")
        return principal

    return dependency


platform_only = allow(PLATFORM)  # the platform's routes: charges, calls, batches


async def admin_only(principal: Principal = Depends(current_principal)) -> Principal:
    if principal.role is not Role.ADMIN:
        raise Forbidden("forbidden", "only the operator may do this")
    return principal

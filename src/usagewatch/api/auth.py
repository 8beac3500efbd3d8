"""Who is calling, and may they act on this account. The whole access policy is here."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request

from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.errors import Forbidden, NotFound, Unauthenticated

# What each kind of action allows. The operator (admin) may do everything.
READ = frozenset({Role.OWNER, Role.VIEWER, Role.PLATFORM})
MANAGE = frozenset({Role.OWNER})
OPERATOR = frozenset[Role]()


# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in a
# worker thread, and that hop costs more than the check itself. Authentication reads the
# database, so it stays a plain `def`.
def container_of(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


async def container(request: Request) -> Container:
    return container_of(request)


def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    services = container_of(request).accounts
    principal = None
    if scheme.lower() == "bearer" and value:
        principal = services.principal_for_token(value.strip())
    elif scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        username, sep, password = decoded.partition(":")
        if sep:
            principal = services.principal_for_basic(username, password)
    if principal is None:
        raise Unauthenticated(
            "unauthenticated", "send HTTP Basic key_id:token or Authorization: Bearer token"
        )
    return principal


def allow(roles: frozenset[Role]) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency for routes under /v1/accounts/{account_id}: the caller must see the
    account (else 404, never revealing it exists) and hold one of `roles` (else 403)."""

    async def dependency(
        account_id: str, principal: Principal = Depends(current_principal)
    ) -> Principal:
        if not principal.sees(account_id):
            raise NotFound("account_not_found", f"no account {account_id!r}")
        if principal.role is not Role.ADMIN and principal.role not in roles:
            raise Forbidden("forbidden", f"a {principal.role.value} key may not do this")
        return principal

    return dependency


async def admin_only(principal: Principal = Depends(current_principal)) -> Principal:
    if principal.role is not Role.ADMIN:
        raise Forbidden("forbidden", "only the operator may do this")
    return principal

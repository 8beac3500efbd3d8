"""Accounts, API keys and dashboard users."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam

from usagewatch.api.auth import MANAGE, READ, admin_only, allow, container
from usagewatch.api.pagination import after_param, decode_cursor, fetch_size, limit_param, page
from usagewatch.api.schemas import (
    AccountCreate,
    AccountOut,
    ApiKeyCreate,
    ApiKeyOut,
    UserCreate,
    UserOut,
    instant,
)
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal, check_account_id
from usagewatch.service.accounts import Account

router = APIRouter(prefix="/v1/accounts", tags=["accounts and keys"])


def account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        name=account.name,
        currency=account.currency,
        timezone=account.timezone,
        status=account.status,
        created_at=instant(account.created_at_us) or "",
        inbound_at_zero=account.inbound_at_zero,
        sandbox=account.sandbox,
    )


@router.post("", status_code=201, response_model=AccountOut, summary="Create an account (admin)")
def create_account(
    body: AccountCreate,
    _: Principal = Depends(admin_only),
    c: Container = Depends(container),
) -> AccountOut:
    if body.id is not None:  # "" is a bad id, not a request for a generated one
        check_account_id(body.id)
    account = c.accounts.create_account(
        body.name, body.id, body.currency, body.timezone, body.inbound_at_zero, body.sandbox
    )
    return account_out(account)


@router.get("", summary="List accounts (admin)")
def list_accounts(
    limit: int = Depends(limit_param),
    after: str | None = Depends(after_param),
    _: Principal = Depends(admin_only),
    c: Container = Depends(container),
) -> dict[str, object]:
    rows = c.accounts.list_accounts(fetch_size(limit), decode_cursor(after))
    accounts, cursor = page(rows, limit, lambda a: a.id)
    return {"data": [account_out(a) for a in accounts], "next_cursor": cursor}


@router.get("/{account_id}", response_model=AccountOut, summary="Get an account")
def get_account(
    account_id: str, _: Principal = Depends(allow(READ)), c: Container = Depends(container)
) -> AccountOut:
    return account_out(c.accounts.get_account(account_id))


@router.post(
    "/{account_id}/api-keys",
    status_code=201,
    response_model=ApiKeyOut,
    summary="Issue an API key (admin, owner); the token is shown once",
)
def create_api_key(
    account_id: str,
    body: ApiKeyCreate,
    principal: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> ApiKeyOut:
    issued = c.accounts.create_api_key(account_id, body.role, principal)
    return ApiKeyOut(key_id=issued.key_id, token=issued.token, role=issued.role)


@router.delete(
    "/{account_id}/api-keys/{key_id}", status_code=204, summary="Revoke an API key (admin, owner)"
)
def revoke_api_key(
    account_id: str,
    key_id: str = PathParam(max_length=40),
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> Response:
    c.accounts.revoke_api_key(account_id, key_id)
    return Response(status_code=204)


@router.post(
    "/{account_id}/users",
    status_code=201,
    response_model=UserOut,
    summary="Create a dashboard user (admin, owner)",
)
def create_user(
    account_id: str,
    body: UserCreate,
    _: Principal = Depends(allow(MANAGE)),
    c: Container = Depends(container),
) -> UserOut:
    user = c.accounts.create_user(account_id, body.email, body.password, body.role)
    return UserOut(user_id=user.user_id, email=user.email, role=user.role)

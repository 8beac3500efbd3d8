"""Accounts, API keys, dashboard users, and who a request's credentials belong to."""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from usagewatch.adapters.db import limits_store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import accounts, api_keys, balances, users
from usagewatch.domain import accounts as rules
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.clock import Clock, to_micros
from usagewatch.domain.errors import Conflict, Invalid, NotFound
from usagewatch.domain.limits import Limits
from usagewatch.domain.security import (
    hash_password,
    hash_token,
    new_token,
    tokens_equal,
    verify_password,
)
from usagewatch.service.ledger import new_id

LIST_LIMIT_MAX = 1000
KEY_CACHE_SIZE = 10_000
ADMIN = Principal(Role.ADMIN, None, None)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    currency: str
    timezone: str
    status: str
    created_at_us: int
    inbound_at_zero: str = "allow"
    sandbox: bool = False


_ACCOUNT_COLUMNS = [accounts.c[f.name] for f in fields(Account)]


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    token: str  # shown once, never stored
    role: str


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    email: str
    role: str


@dataclass(frozen=True, slots=True)
class UserAccount:
    """A dashboard user with the account they belong to (what a sign-in yields)."""

    user_id: str
    account_id: str
    email: str
    role: str


@dataclass(frozen=True, slots=True)
class KeyView:
    key_id: str
    role: str
    created_at_us: int
    revoked_at_us: int | None


class KeyCache:
    """API keys this process looked up, by token digest, for `seconds` (monotonic time:
    it bounds how stale a key may be, it is no business rule of the test clock). Only
    keys that were found are kept; a revocation here empties it, and a lookup that began
    before the revocation is not kept (`generation`)."""

    def __init__(self, seconds: float, size: int = KEY_CACHE_SIZE) -> None:
        self.seconds = seconds
        self._size = size
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            found = self._entries.get(digest)
            if found is None:
                return None
            if found[0] <= time.monotonic():
                del self._entries[digest]
                return None
            return found[1]

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return  # a revocation happened since this lookup began
            self._entries[digest] = (time.monotonic() + self.seconds, principal)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1


class AccountService:
    def __init__(
        self, db: Database, clock: Clock, admin_token: str, key_cache_seconds: float = 5.0
    ) -> None:
        self.db = db
        self.clock = clock
        self._admin_token_hash = hash_token(admin_token)
        self._keys = KeyCache(key_cache_seconds)

    # -- accounts ------------------------------------------------------------------------
    def create_account(
        self,
        name: str,
        account_id: str | None = None,
        currency: str = rules.DEFAULT_CURRENCY,
        timezone: str = rules.DEFAULT_TIMEZONE,
        inbound_at_zero: str = "allow",
        sandbox: bool = False,
    ) -> Account:
        """A new account with a zero balance. A sandbox (development/test) account starts
        with the conservative spending limits of `domain.limits.Limits.sandbox`."""
        if not 1 <= len(name) <= 200:
            raise Invalid("validation_error", "name is 1 to 200 characters", "name")
        account = Account(
            id=rules.check_account_id(account_id) if account_id else new_id("ac"),
            name=name,
            currency=rules.check_currency(currency),
            timezone=rules.check_timezone(timezone),
            status="active",
            created_at_us=to_micros(self.clock.now()),
            inbound_at_zero=inbound_at_zero,
            sandbox=sandbox,
        )
        if inbound_at_zero not in ("allow", "deny"):
            raise Invalid("validation_error", "inbound_at_zero is allow or deny", "inbound_at_zero")
        try:
            with self.db.write() as conn:
                conn.execute(accounts.insert().values(**_fields(account)))
                conn.execute(
                    balances.insert().values(
                        account_id=account.id,
                        paid_micros=0,
                        promotional_micros=0,
                        reserved_micros=0,
                        overdraft_micros=0,
                        next_expiry_at_us=None,
                        version=0,
                        updated_at_us=account.created_at_us,
                    )
                )
                if sandbox:
                    limits_store.write_limits(
                        conn, account.id, Limits.sandbox(), account.created_at_us
                    )
        except IntegrityError as exc:
            raise Conflict("account_exists", f"account {account.id!r} exists", "id") from exc
        return account

    def get_account(self, account_id: str) -> Account:
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(*_ACCOUNT_COLUMNS).where(accounts.c.id == account_id)
            ).first()
        if row is None:
            raise NotFound("account_not_found", f"no account {account_id!r}")
        return Account(*row)

    def list_accounts(self, limit: int, after: str | None) -> list[Account]:
        query = sa.select(*_ACCOUNT_COLUMNS).order_by(accounts.c.id).limit(limit)
        if after is not None:
            query = query.where(accounts.c.id > after)
        with self.db.read() as conn:
            return [Account(*row) for row in conn.execute(query)]

    # -- keys --------------------------------------------------------------------------
    def create_api_key(self, account_id: str, role: str, by: Principal) -> IssuedKey:
        try:
            wanted = Role(role)
        except ValueError as exc:
            raise Invalid("invalid_role", f"unknown role {role!r}", "role") from exc
        if wanted is Role.ADMIN and by.role is not Role.ADMIN:
            raise Invalid("invalid_role", "only the operator may issue admin keys", "role")
        self.get_account(account_id)
        issued = IssuedKey(key_id=new_id("key"), token=new_token(), role=wanted.value)
        with self.db.write() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=issued.key_id,
                    account_id=account_id,
                    role=issued.role,
                    token_hash=hash_token(issued.token),
                    created_at_us=to_micros(self.clock.now()),
                    revoked_at_us=None,
                )
            )
        return issued

    def revoke_api_key(self, account_id: str, key_id: str) -> None:
        with self.db.write() as conn:
            done = conn.execute(
                api_keys.update()
                .where(
                    api_keys.c.account_id == account_id,
                    api_keys.c.key_id == key_id,
                    api_keys.c.revoked_at_us.is_(None),
                )
                .values(revoked_at_us=to_micros(self.clock.now()))
            )
        self._keys.clear()  # revoked here: refused from this request on
        if done.rowcount != 1:
            raise NotFound("api_key_not_found", f"no active key {key_id!r}")

    # -- users -------------------------------------------------------------------------
    def create_user(self, account_id: str, email: str, password: str, role: str) -> User:
        if role not in ("owner", "viewer"):
            raise Invalid("invalid_role", "dashboard users are owner or viewer", "role")
        user = User(user_id=new_id("usr"), email=rules.check_email(email), role=role)
        password_hash = hash_password(rules.check_password(password))
        self.get_account(account_id)
        try:
            with self.db.write() as conn:
                conn.execute(
                    users.insert().values(
                        user_id=user.user_id,
                        account_id=account_id,
                        email=user.email,
                        password_hash=password_hash,
                        role=role,
                        created_at_us=to_micros(self.clock.now()),
                    )
                )
        except IntegrityError as exc:
            raise Conflict("user_exists", "a user with this email exists", "email") from exc
        return user

    def list_api_keys(self, account_id: str) -> list[KeyView]:
        """The account's keys, newest first (never their tokens)."""
        query = (
            sa.select(
                api_keys.c.key_id,
                api_keys.c.role,
                api_keys.c.created_at_us,
                api_keys.c.revoked_at_us,
            )
            .where(api_keys.c.account_id == account_id)
            .order_by(api_keys.c.created_at_us.desc(), api_keys.c.key_id)
            .limit(LIST_LIMIT_MAX)
        )
        with self.db.read() as conn:
            return [KeyView(*row) for row in conn.execute(query)]

    def authenticate_user(self, email: str, password: str) -> UserAccount | None:
        """The user with this email and password, or None. An unknown email costs the
        same slow hash as a wrong password, so timing does not tell which it was."""
        query = sa.select(
            users.c.user_id,
            users.c.account_id,
            users.c.email,
            users.c.role,
            users.c.password_hash,
        ).where(users.c.email == email.strip().lower()[:254])
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            verify_password(password, _dummy_password_hash())
            return None
        if not verify_password(password, row.password_hash):
            return None
        return UserAccount(row.user_id, row.account_id, row.email, row.role)

    def user_exists(self, user_id: str) -> bool:
        with self.db.read() as conn:
            found = conn.execute(sa.select(users.c.user_id).where(users.c.user_id == user_id))
            return found.first() is not None

    @property
    def admin_token_hash(self) -> str:
        return self._admin_token_hash

    def is_admin_token(self, token: str) -> bool:
        return tokens_equal(hash_token(token), self._admin_token_hash)

    # -- authentication ----------------------------------------------------------------
    def known_principal(self, token: str) -> Principal | None:
        """Who `token` is, when that is known without the database: the admin token, or a
        key this process looked up in the last `api_key_cache_seconds`. None: look it up
        (`principal_for_token`)."""
        return self._known(hash_token(token))

    def _known(self, digest: str) -> Principal | None:
        if tokens_equal(digest, self._admin_token_hash):
            return ADMIN
        return self._keys.get(digest)

    def principal_for_token(self, token: str) -> Principal | None:
        """Bearer token: the operator's admin token, or an API key's token."""
        digest = hash_token(token)
        known = self._known(digest)
        if known is not None:
            return known
        generation = self._keys.generation
        with self.db.read() as conn:
            row = conn.execute(_key_by_digest, {"digest": digest}).first()
        if row is None:
            return None
        principal = Principal(Role(row.role), row.account_id, row.key_id)
        self._keys.put(digest, principal, generation)
        return principal


def basic_principal(principal: Principal | None, username: str) -> Principal | None:
    """The principal of HTTP Basic `username:password`, given who the password is: the
    user name is the key id (or the account id, Exotel style)."""
    if principal is None:
        return None
    if principal.role is Role.ADMIN and principal.key_id is None:
        return principal  # the operator token with any username
    if username in (principal.key_id, principal.account_id):
        return principal
    return None


_key_by_digest = sa.select(api_keys.c.key_id, api_keys.c.account_id, api_keys.c.role).where(
    api_keys.c.token_hash == sa.bindparam("digest"), api_keys.c.revoked_at_us.is_(None)
)


def _fields(account: Account) -> dict[str, object]:
    return {
        "id": account.id,
        "name": account.name,
        "currency": account.currency,
        "timezone": account.timezone,
        "status": account.status,
        "created_at_us": account.created_at_us,
        "inbound_at_zero": account.inbound_at_zero,
        "sandbox": account.sandbox,
    }


@functools.cache
def _dummy_password_hash() -> str:
    return hash_password("not-a-real-password-0123456789")


def random_admin_token() -> str:
    return "uwadmin_" + secrets.token_urlsafe(32)

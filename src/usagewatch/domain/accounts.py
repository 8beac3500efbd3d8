"""Account facts and the rules for their values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from usagewatch.domain.errors import Invalid

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
PASSWORD_LENGTH_MIN = 12
DEFAULT_CURRENCY = "INR"
DEFAULT_TIMEZONE = "Asia/Kolkata"


class Role(StrEnum):
    ADMIN = "admin"  # the operator: every account
    OWNER = "owner"  # one account, full control
    VIEWER = "viewer"  # one account, read-only
    PLATFORM = "platform"  # one account: authorize calls and post usage


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role, the account a key belongs to (None for the operator's token)."""

    role: Role
    account_id: str | None
    key_id: str | None

    def sees(self, account_id: str) -> bool:
        return self.role is Role.ADMIN or self.account_id == account_id


def check_account_id(value: str) -> str:
    if not ACCOUNT_ID.match(value):
        raise Invalid("invalid_account_id", "account ids are 1-64 of A-Z a-z 0-9 _ -", "id")
    return value


def check_currency(value: str) -> str:
    if not CURRENCY.match(value):
        raise Invalid("invalid_currency", "currency is a 3-letter ISO 4217 code", "currency")
    return value


def check_timezone(value: str) -> str:
    if not value or value.startswith("/") or ".." in value or len(value) > 64:
        raise Invalid("invalid_timezone", f"unknown time zone {value[:64]!r}", "timezone")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid("invalid_timezone", f"unknown time zone {value!r}", "timezone") from exc
    return value


def check_email(value: str) -> str:
    if len(value) > 254 or not EMAIL.match(value):
        raise Invalid("invalid_email", "not an email address", "email")
    return value.lower()


def check_password(value: str) -> str:
    if len(value) < PASSWORD_LENGTH_MIN or len(value) > 1024:
        raise Invalid("weak_password", "passwords need 12 to 1024 characters", "password")
    return value

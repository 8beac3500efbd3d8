"""Request and response bodies. Money is a decimal string on the wire, Money inside."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from usagewatch.domain.clock import format_instant, from_micros
from usagewatch.domain.money import Money, MoneyFormatError

MONEY_PATTERN = r"^-?[0-9]+(\.[0-9]{1,6})?$"
# A plain decimal string of any size: one too long for Money.parse is too large, not malformed.


def _money(value: object) -> Money:
    if isinstance(value, Money):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "money_must_be_string", 'money is a decimal string such as "10.50", not a number'
        )
    try:
        return Money.parse(value)
    except MoneyFormatError as exc:
        raise PydanticCustomError(exc.code, str(exc)) from exc


def _instant(value: object) -> datetime:
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            if parsed.tzinfo is not None and "T" in value.upper():
                return parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 past UTC
            pass
    raise PydanticCustomError(
        "invalid_timestamp", "an RFC 3339 timestamp with a zone, e.g. 2026-12-31T18:30:00Z"
    )


MoneyIn = Annotated[
    Money,
    PlainValidator(_money),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["1000.00"]}),
]
InstantIn = Annotated[
    datetime,
    PlainValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-12-31T18:30:00Z"]}),
]
MoneyOut = Annotated[str, Field(pattern=MONEY_PATTERN, examples=["1000.00"])]


def money(micros: int) -> str:
    return Money(micros).format()


def instant(micros: int | None) -> str | None:
    return format_instant(from_micros(micros)) if micros is not None else None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _role_check(*allowed: str) -> Callable[[object], str]:
    """A role validator whose bad values get the documented `invalid_role` code."""

    def check(value: object) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise PydanticCustomError("invalid_role", f"role is one of: {', '.join(allowed)}")
        return value

    return check


KEY_ROLES = ("admin", "owner", "viewer", "platform")
USER_ROLES = ("owner", "viewer")
KeyRole = Annotated[
    str,
    PlainValidator(_role_check(*KEY_ROLES)),
    WithJsonSchema({"type": "string", "enum": KEY_ROLES}),
]
UserRole = Annotated[
    str,
    PlainValidator(_role_check(*USER_ROLES)),
    WithJsonSchema({"type": "string", "enum": USER_ROLES}),
]


# -- accounts -------------------------------------------------------------------------------
class AccountCreate(Strict):
    id: str | None = Field(None, description="client-chosen id (like an Exotel AccountSid)")
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field("INR", description="ISO 4217 code")
    timezone: str = Field("Asia/Kolkata", description="IANA zone; days and months use it")
    inbound_at_zero: Literal["allow", "deny"] = Field(
        "allow", description="inbound calls when the balance cannot pay a pulse"
    )
    sandbox: bool = Field(
        False,
        description="a development/test account: starts with conservative spending limits "
        "(daily 100.00, monthly 1000.00, per call 600 s or 50.00)",
    )


class AccountOut(BaseModel):
    id: str
    name: str
    currency: str
    timezone: str
    status: str
    created_at: str
    inbound_at_zero: str
    sandbox: bool


class ApiKeyCreate(Strict):
    role: KeyRole


class ApiKeyOut(BaseModel):
    key_id: str
    token: str = Field(description="shown once; only its SHA-256 digest is stored")
    role: str


class UserCreate(Strict):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    role: UserRole = "viewer"


class UserOut(BaseModel):
    user_id: str
    email: str
    role: str


# -- credits and balance ----------------------------------------------------------------------
class CreditCreate(Strict):
    type: Literal["paid", "promotional"]
    amount: MoneyIn
    expires_at: InstantIn | None = Field(None, description="required for promotional credit")
    description: str | None = Field(None, max_length=500)


class CreditOut(BaseModel):
    id: str
    type: str
    amount: MoneyOut
    remaining: MoneyOut
    reserved: MoneyOut = Field("0.00", description="part of remaining held for calls")
    expires_at: str | None
    description: str | None
    created_at: str


class PromotionalExpiry(BaseModel):
    amount: MoneyOut
    expires_at: str


class BalanceOut(BaseModel):
    currency: str
    available_balance: MoneyOut = Field(
        description="paid_credits + promotional_credits - reserved_amount"
    )
    paid_credits: MoneyOut = Field(description="unspent paid credit (negative after an overrun)")
    promotional_credits: MoneyOut = Field(description="unspent, unexpired promotional credit")
    promotional_expiries: list[PromotionalExpiry]
    reserved_amount: MoneyOut = Field(description="held for calls in progress")
    today_usage: MoneyOut = Field(description="charged today, account-local day")
    month_usage: MoneyOut = Field(description="charged this calendar month, account-local")
    outbound_allowed: bool
    outbound_block_reason: str | None
    as_of: str


class LedgerEntryOut(BaseModel):
    id: str
    type: str
    amount: MoneyOut = Field(description="change in paid + promotional credits")
    reserved_change: MoneyOut = Field(description="change in the reserved amount")
    balance_after: MoneyOut = Field(description="available balance after this entry")
    reference: str | None
    description: str | None
    created_at: str


class TestClockOut(BaseModel):
    now: str


class TestClockAdvance(Strict):
    seconds: int = Field(ge=0, le=5 * 366 * 24 * 3600)


class ErrorBody(BaseModel):
    code: str = Field(description="stable snake_case code; docs/errors.md lists every one")
    message: str = Field(description="what went wrong, for a person")
    field: str | None = Field(None, description="the input field at fault, when there is one")


class ErrorOut(BaseModel):
    error: ErrorBody

"""The whole error hierarchy, with every stable error code in one catalogue.

    UsageWatchError(code, message, field)
    ├── Malformed          400  the request could not be read
    ├── Unauthenticated    401  no or bad credentials
    ├── PaymentRequired    402  denied for money reasons (balance, caps, budgets)
    ├── Forbidden          403  authenticated but not allowed
    ├── NotFound           404  absent, or belonging to another account
    ├── Conflict           409  idempotency key reuse, state conflict
    ├── Invalid            422  values that break a rule
    ├── RateLimited        429  the key sent too many requests a second
    └── Unavailable        503  the service cannot answer now

Each class carries its HTTP status; the HTTP layer reads it in one exception handler
(`usagewatch.api.errors`), so the mapping lives here and nowhere else.
Every code raised anywhere must be in CODES; `docs/errors.md` documents each one and a test
keeps the two in step.
"""

from __future__ import annotations

from typing import ClassVar

# code -> what it means. Keep sorted by family; docs/errors.md mirrors this list.
CODES: dict[str, str] = {
    # 400
    "malformed_json": "The body is not valid JSON, or not a JSON object.",
    "invalid_idempotency_key": "The Idempotency-Key header is empty or longer than 255 characters.",
    "invalid_cursor": "The `after` cursor was not produced by this API.",
    "missing_idempotency_key": "This request moves money and needs an Idempotency-Key header.",
    # 401
    "unauthenticated": "No credentials, unknown key, wrong token or revoked key.",
    # 402
    "insufficient_balance": "The available balance cannot cover the amount.",
    "account_not_active": "The account is suspended or closed; outbound usage is refused.",
    "daily_cap_reached": "The daily spending cap is reached: outbound is paused until the next "
    "account-local day (or until the cap is raised).",
    "weekly_cap_reached": "The weekly spending cap is reached: outbound is paused until Monday "
    "00:00 account-local (or until the cap is raised).",
    "monthly_cap_reached": "The monthly spending cap is reached: outbound is paused until the "
    "next account-local month (or until the cap is raised).",
    "campaign_budget_exhausted": "The campaign spent its budget and is paused; raise the budget.",
    "campaign_paused": "The campaign was paused by hand; PATCH its status to active.",
    "per_call_cap_reached": "The call reached the per-call cap (duration or cost): disconnect it.",
    "call_duration_max_reached": "The call reached the platform's maximum call duration.",
    # 403
    "forbidden": "The key's role may not perform this action.",
    # 404
    "not_found": "No such route, or the resource does not exist for this caller.",
    "account_not_found": "No such account (or it belongs to someone else).",
    "api_key_not_found": "No such API key on this account.",
    "hold_not_found": "No such hold on this account.",
    "sms_not_found": "No SMS with this sms_sid on this account.",
    "call_not_found": "No call with this call_sid on this account.",
    "alert_not_found": "No alert with this id on this account.",
    "campaign_not_found": "No campaign with this campaign_id on this account.",
    "subscription_not_found": "No active number rental or agent seat with this id.",
    "statement_not_found": "No monthly statement with this id on this account.",
    "payment_not_found": "No payment with this payment_id on this account.",
    # 405
    "method_not_allowed": "The route exists but not with this HTTP method.",
    # 409
    "idempotency_key_reused": "The Idempotency-Key (or natural id) was used with another payload.",
    "account_exists": "An account with this id already exists.",
    "user_exists": "A dashboard user with this email already exists.",
    "hold_closed": "The hold was already captured, released or expired.",
    "already_active": "This number rental or agent seat is already active.",
    "campaign_exists": "A campaign with this campaign_id already exists on this account.",
    "call_not_in_progress": "The call has ended or its reservation lapsed; it cannot be extended.",
    # 413
    "request_too_large": "The body exceeds max_request_body_bytes.",
    # 422
    "validation_error": "A value has the wrong type or shape; `field` names it.",
    "missing_field": "A required field is absent; `field` names it.",
    "unknown_field": "A field that this endpoint does not accept; `field` names it.",
    "money_must_be_string": "Money must be a decimal string such as '10.50', never a number.",
    "invalid_amount": "The amount is not a plain decimal string.",
    "amount_not_positive": "The amount must be greater than zero.",
    "amount_finer_than_currency": "An amount to charge to a card is finer than the currency's "
    "smallest unit (INR: 0.01).",
    "amount_too_precise": "The amount has more than 6 decimal places (finer than a micro-unit).",
    "amount_negative": "A cap or budget cannot be negative (zero: nothing may be spent).",
    "too_many_alerts": "An account has at most 50 alerts.",
    "invalid_alert_type": "An alert's type is low_balance or usage.",
    "threshold_required": "Give one of threshold and threshold_percent_of_average_monthly_usage.",
    "invalid_threshold_percent": "The percentage is a number above 0 with at most 2 decimals.",
    "invalid_period": "A usage alert's period is day or month; a low-balance alert has none.",
    "invalid_frequency": "An alert's frequency is once or every_24_hours.",
    "invalid_channel": "Channels are some of email, sms, dashboard, webhook.",
    "recipients_required": "A channel without recipients: emails, phones or a webhook_url.",
    "invalid_phone": "Phone numbers are E.164, such as +919800000001.",
    "invalid_number": "A number is an optional '+' and 3-15 digits; an SMS sender may be an ID.",
    "webhook_url_not_allowed": "The webhook URL is not http(s) or resolves to a private address.",
    "per_call_duration_too_short": "per_call_max_duration_seconds is shorter than one pulse.",
    "amount_too_large": "The amount exceeds the documented maximum of 1,000,000,000 units.",
    "balance_limit_exceeded": "The credit would take the balance over 1,000,000,000,000 units.",
    "expires_at_required": "Promotional credit needs an expires_at.",
    "expires_at_in_past": "expires_at must be later than now.",
    "expires_at_not_allowed": "Paid credit does not expire; omit expires_at.",
    "invalid_timestamp": "Not an RFC 3339 timestamp with a time zone.",
    "invalid_account_id": "Account ids are 1-64 characters of letters, digits, '_' and '-'.",
    "invalid_currency": "Currency must be a three-letter ISO 4217 code in upper case.",
    "invalid_timezone": "Not an IANA time zone name such as Asia/Kolkata.",
    "invalid_role": "Not a role that may be given here.",
    "invalid_email": "Not an email address.",
    "weak_password": "Passwords need at least 12 characters.",
    "invalid_limit": "`limit` must be between 1 and 1000.",
    "invalid_duration": "A duration in seconds out of its documented range.",
    "batch_too_large": "A usage batch carries more than 10,000 events.",
    "batch_empty": "A usage batch carries no events (it needs 1 to 10,000).",
    "occurred_in_future": "occurred_at is more than 300 seconds ahead of the server's clock.",
    "occurred_too_long_ago": "occurred_at is more than 90 days ago.",
    "invalid_units": "SMS units must be a whole number from 1 to 10.",
    "sms_too_long": "The SMS body needs more than 10 units (segments).",
    "invalid_sms_type": "The SMS type is not transactional, promotional or service.",
    "invalid_whatsapp_category": "Not a WhatsApp category: marketing, utility, authentication…",
    "invalid_status": "Not a status this endpoint accepts; the message lists them.",
    "invalid_call_direction": "The call direction is not outbound or inbound.",
    "invalid_rate": "A price in the rate card is negative or over 1,000,000 units.",
    "invalid_pulse_seconds": "pulse_seconds must be a whole number from 1 to 3600.",
    "invalid_date": "Not a calendar date like 2026-11-28.",
    "invalid_date_range": "The period's `from` is after its `to`.",
    "date_range_too_long": "A report or export period spans at most 366 days.",
    "invalid_service": "Not a service: voice, sms, whatsapp, number, agent_seat (or all).",
    "invalid_export_format": "The export format is not csv, xlsx or pdf.",
    "invalid_months": "`months` must be between 1 and 24.",
    "invalid_max_recharges_per_day": "max_recharges_per_day must be a whole number from 1 to 100.",
    # 429
    "rate_limited": "The API key sent more requests per second than this server allows "
    "(USAGEWATCH_API_RATE_LIMIT); retry after the Retry-After header's seconds.",
    # 500 / 503
    "internal_error": "An unexpected fault; nothing was changed. Retry with the same key.",
    "not_ready": "The database is unreachable or its migrations are not current.",
}


class UsageWatchError(Exception):
    """Base of every error that reaches a client with a stable code."""

    status: ClassVar[int] = 500

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        if code not in CODES:
            raise AssertionError(f"undocumented error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class Malformed(UsageWatchError):
    status = 400


class Unauthenticated(UsageWatchError):
    status = 401


class PaymentRequired(UsageWatchError):
    status = 402


class Forbidden(UsageWatchError):
    status = 403


class NotFound(UsageWatchError):
    status = 404


class Conflict(UsageWatchError):
    status = 409


class Invalid(UsageWatchError):
    status = 422


class RateLimited(UsageWatchError):
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "rate_limited", f"too many requests with this key; retry in {retry_after} s"
        )
        self.retry_after = retry_after


class Unavailable(UsageWatchError):
    status = 503


def insufficient_balance(needed: str, available: str) -> PaymentRequired:
    return PaymentRequired(
        "insufficient_balance",
        f"available balance {available} cannot cover {needed}",
    )

"""Settings, all read from the environment with the USAGEWATCH_ prefix (or CLI flags).

Every field here is documented in docs/configuration.md; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./usagewatch.db"
# Admin tokens that are obviously placeholders; refused outside development mode.
PLACEHOLDER_TOKENS = frozenset({"admin", "changeme", "change-me", "secret", "token", "password"})
ADMIN_TOKEN_LENGTH_MIN = 24


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USAGEWATCH_", extra="ignore")

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLite file or PostgreSQL URL")
    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on")
    admin_token: str | None = Field(None, description="operator token (role admin)")
    dev_mode: bool = Field(False, description="allow weak admin tokens; never in production")
    test_clock: bool = Field(False, description="switch on the /v1/test-clock endpoints")
    test_clock_start: str | None = Field(None, description="RFC 3339 start of the test clock")
    max_request_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="body size limit")
    sweep_interval_seconds: float = Field(1.0, gt=0, le=60, description="expiry sweeper period")
    slow_lane: Literal["process", "thread", "off"] = Field(
        "process", description="where serve renders monthly statements"
    )
    db_pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connections per process")
    api_key_cache_seconds: float = Field(
        5.0, ge=0, le=300, description="how long a process trusts an API key it looked up"
    )
    api_rate_limit: float = Field(
        1000,
        ge=0,
        le=1_000_000,
        description="requests a second each API key may send to one server process, with "
        "bursts of one second's worth; past it 429 rate_limited; 0 = no limit",
    )
    log_level: str = Field("info", description="uvicorn log level")
    call_reservation_window_seconds: int = Field(
        300, ge=1, le=3600, description="seconds of a call each hold (and extension) covers"
    )
    call_duration_max_seconds: int = Field(
        10800, ge=1, le=86400, description="platform-wide maximum call duration"
    )
    call_hold_grace_seconds: int = Field(
        120, ge=1, le=3600, description="a call hold expires this long after its window ends"
    )
    default_rates_json: str | None = Field(
        None, description="platform default rate card (API rates shape, JSON); partial is fine"
    )
    # -- alerts and notification delivery ---------------------------------------------
    public_url: str = Field(
        "http://127.0.0.1:8000", description="the dashboard's address, linked from messages"
    )
    smtp_host: str | None = Field(None, description="SMTP server for email notices")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port")
    smtp_from: str = Field("usagewatch@localhost", description="From address of notices")
    smtp_user: str | None = Field(None, description="SMTP user (with smtp_password)")
    smtp_password: str | None = Field(None, description="SMTP password")
    smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS")
    sms_gateway_url: str | None = Field(None, description="HTTP SMS gateway for SMS notices")
    webhook_allow_private: bool = Field(
        False, description="allow webhooks to loopback/private addresses (development only)"
    )
    delivery_max_attempts: int = Field(
        8, ge=1, le=50, description="delivery attempts per notice and channel before failed"
    )
    promo_expiry_notice_days: int = Field(
        7, ge=0, le=90, description="warn this many days before promotional credit expires"
    )
    payment_gateway: Literal["simulated"] = Field(
        "simulated", description="payment gateway adapter for payments and auto-recharge"
    )
    simulated_gateway_outcome: Literal["succeed", "decline", "timeout"] = Field(
        "succeed", description="what the simulated gateway answers every charge"
    )
    payment_retry_base_seconds: int = Field(
        30, ge=1, le=3600, description="first retry delay of an unanswered payment; doubles"
    )
    payment_attempts_max: int = Field(
        8, ge=1, le=50, description="gateway calls of one payment before it is marked failed"
    )
    auto_recharge_decline_backoff_seconds: int = Field(
        3600, ge=60, le=7 * 86400, description="no new auto-recharge this long after a decline"
    )
    session_secret: str | None = Field(
        None, description="signs dashboard session cookies (32+ characters); else the file's"
    )
    session_secret_file: str = Field(
        ".usagewatch-session-secret",
        description="where a generated session secret is kept when session_secret is unset",
    )
    session_max_age_seconds: int = Field(
        8 * 3600, ge=60, le=30 * 86400, description="a dashboard session lasts this long"
    )

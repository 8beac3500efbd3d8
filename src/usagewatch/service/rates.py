"""Rate cards: platform defaults (from configuration) overlaid with each account's
overrides (stored as they were PUT, in the API's rates shape)."""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy.engine import Connection

from usagewatch.adapters.db import store, usage_store
from usagewatch.adapters.db.config_cache import cache_for
from usagewatch.adapters.db.engine import Database
from usagewatch.domain.clock import Clock, to_micros
from usagewatch.domain.errors import NotFound
from usagewatch.domain.money import Money
from usagewatch.domain.rating import RateCard, SmsType, WhatsAppCategory

# Built-in platform defaults (INR), used unless USAGEWATCH_DEFAULT_RATES_JSON overrides them.
BUILTIN_DEFAULT_RATES: dict[str, Any] = {
    "voice": {"pulse_seconds": 60, "outbound_per_pulse": "0.60", "inbound_per_pulse": "0.30"},
    "sms": {"transactional": "0.20", "promotional": "0.25", "service": "0.15"},
    "whatsapp": {
        "marketing": "0.80",
        "utility": "0.35",
        "authentication": "0.30",
        "service": "0.00",
    },
    "number_rental_monthly": "500.00",
    "agent_seat_monthly": "1200.00",
}


def parse_rates(shape: dict[str, Any]) -> dict[str, Any]:
    """API rates shape with decimal strings -> the same shape with Money (for RateCard)."""

    def convert(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: convert(k, v) for k, v in value.items()}
        if value is None or key == "pulse_seconds":
            return value
        return Money.parse(value) if isinstance(value, str) else value

    return {k: convert(k, v) for k, v in shape.items()}


def format_rates(shape: dict[str, Any]) -> dict[str, Any]:
    """The inverse: Money -> decimal strings, for storage and responses."""
    return {
        k: format_rates(v) if isinstance(v, dict) else v.format() if isinstance(v, Money) else v
        for k, v in shape.items()
    }


def platform_card(defaults_json: str | None) -> RateCard:
    base = RateCard(
        pulse_seconds=60,
        voice_outbound_per_pulse=Money(0),
        voice_inbound_per_pulse=Money(0),
        sms={kind: Money(0) for kind in SmsType},
        whatsapp={category: Money(0) for category in WhatsAppCategory},
        number_rental_monthly=Money(0),
        agent_seat_monthly=Money(0),
    )
    card = base.merged(parse_rates(BUILTIN_DEFAULT_RATES))
    if defaults_json:
        card = card.merged(parse_rates(json.loads(defaults_json)))
    return card


class RateService:
    def __init__(self, db: Database, clock: Clock, defaults: RateCard) -> None:
        self.db = db
        self.clock = clock
        self.defaults = defaults

    def card_in(
        self, conn: Connection, account_id: str, config_version: int | None = None
    ) -> RateCard:
        """The account's effective card, read inside the caller's transaction; given the
        `config_version` read with the account lock (a command), from the per-process cache
        while that version holds (a rate change bumps it)."""
        if config_version is None:
            stored = usage_store.read_rate_overrides(conn, account_id)
        else:
            stored = cache_for(conn).get(
                "rates",
                account_id,
                config_version,
                lambda: usage_store.read_rate_overrides(conn, account_id),
            )
        if stored is None:
            return self.defaults
        return self._merged(stored)

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - bounded; keyed by the stored text
    def _merged(self, overrides_json: str) -> RateCard:
        """The card for a stored override (a pure function of its text, so cached)."""
        return self.defaults.merged(parse_rates(json.loads(overrides_json)))

    def card(self, account_id: str) -> RateCard:
        with self.db.read() as conn:
            return self.card_in(conn, account_id)

    def replace_overrides(self, account_id: str, overrides: dict[str, Any]) -> RateCard:
        """PUT: the account's overrides become exactly `overrides` (Money values); entries
        left out fall back to the platform defaults. Validated before anything is stored."""
        card = self.defaults.merged(overrides)
        with self.db.write() as conn:
            if store.read_account_state(conn, account_id) is None:
                raise NotFound("account_not_found", f"no account {account_id!r}")
            usage_store.write_rate_overrides(
                conn, account_id, json.dumps(format_rates(overrides)), to_micros(self.clock.now())
            )
        return card

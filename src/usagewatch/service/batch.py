"""Batch ingest of completed usage (calls, SMS, WhatsApp conversations) — usage that already
happened, so it is charged even when money is short: the shortfall is one explicit overrun.

A batch is one transaction: every valid event is applied, or (on a crash) none is. Each
event is judged on its own — a malformed one is `rejected` with its error code, a natural id
seen before with the same payload is a `duplicate` (charged once, ever), the same id with
another payload is `rejected` (idempotency_key_reused). Set-based: one lookup for known
ids, one journal entry for the batch's total (the records carry each event's price, so the
journal and the records reconcile), bulk inserts for records and one upsert per rollup row.

Records are dated by when the usage happened (`occurred_at`, account-local); the journal
entry by when the money moved.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from usagewatch.adapters.db import limits_store, usage_store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.schema import usage_records
from usagewatch.domain import rating
from usagewatch.domain.clock import Clock, local_date, to_micros
from usagewatch.domain.errors import Invalid, UsageWatchError
from usagewatch.domain.money import Money
from usagewatch.domain.numbers import check_number, check_sender
from usagewatch.service import statements
from usagewatch.service.ledger import Command, LedgerService, new_id
from usagewatch.service.limits import campaign_spends
from usagewatch.service.rates import RateService
from usagewatch.service.usage import SMS_STATUSES, check_natural_id

BATCH_EVENTS_MAX = 10_000
FUTURE_SKEW_SECONDS = 300  # occurred_at may be this far ahead of our clock
PAST_DAYS_MAX = 90  # and no older than this
CALL_STATUSES = frozenset({"completed", "failed", "busy", "no-answer", "canceled"})
_ID_FIELD = {"call": "call_sid", "sms": "sms_sid", "whatsapp": "conversation_id"}
_SERVICE = {"call": "voice", "sms": "sms", "whatsapp": "whatsapp"}
_FIELDS = {
    "call": {
        "kind",
        "call_sid",
        "direction",
        "from",
        "to",
        "status",
        "duration_seconds",
        "consumer",
        "campaign_id",
        "occurred_at",
    },
    "sms": {
        "kind",
        "sms_sid",
        "type",
        "to",
        "from",
        "body",
        "units",
        "status",
        "consumer",
        "campaign_id",
        "occurred_at",
    },
    "whatsapp": {"kind", "conversation_id", "category", "consumer", "campaign_id", "occurred_at"},
}


@dataclass(frozen=True, slots=True)
class EventResult:
    id: str | None
    status: str  # applied | duplicate | rejected
    price_micros: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_field: str | None = None  # the event's field at fault, as the error envelope's


@dataclass(slots=True)
class _Event:
    index: int
    service: str
    natural_id: str
    sub_type: str
    status: str
    pricing: tuple[Any, ...]  # what the price depends on (see _price_of)
    raw: Mapping[str, Any]
    occurred_at: datetime
    print_: str


class BatchService:
    def __init__(
        self, db: Database, clock: Clock, ledger: LedgerService, rates: RateService
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.rates = rates

    def ingest(self, account_id: str, events: list[Any]) -> list[EventResult]:
        if not events:
            raise Invalid("batch_empty", "a batch has at least one event", "events")
        if len(events) > BATCH_EVENTS_MAX:
            raise Invalid(
                "batch_too_large", f"a batch has 1 to {BATCH_EVENTS_MAX} events", "events"
            )
        results: list[EventResult | None] = [None] * len(events)
        parsed: list[_Event] = []
        parser = _Parser(self.clock.now())
        for index, raw in enumerate(events):
            try:
                parsed.append(parser.parse(index, raw))
            except UsageWatchError as exc:
                results[index] = EventResult(
                    _id_of(raw), "rejected", None, exc.code, exc.message, exc.field
                )

        def command(cmd: Command) -> list[EventResult]:
            self._apply(cmd, parsed, results)
            return [r for r in results if r is not None]

        out = self.ledger.run_command(account_id, None, None, list, command)
        assert len(out) == len(events)
        return out

    def _apply(self, cmd: Command, events: list[_Event], results: list[EventResult | None]) -> None:
        account_id = cmd.state.account_id
        card = self.rates.card_in(cmd.conn, account_id, cmd.state.config_version)
        tz = cmd.state.timezone
        now_us = cmd.now_us
        # Events of a batch share few distinct prices and instants: work each out once.
        prices: dict[tuple[Any, ...], tuple[int, int | None, Money] | UsageWatchError] = {}
        instants: dict[datetime, tuple[str, int]] = {}
        seen: dict[tuple[str, str], _Event] = {}
        candidates: list[tuple[_Event, tuple[Any, ...]]] = []
        for event in events:
            key = (event.service, event.natural_id)
            if key in seen:  # the same id twice in one batch
                _judge_repeat(event, seen[key].print_, results)
                continue
            priced = prices.get(event.pricing)
            if priced is None:
                priced = prices[event.pricing] = _price_of(card, event.pricing)
            if isinstance(priced, UsageWatchError):
                results[event.index] = EventResult(
                    event.natural_id, "rejected", None, priced.code, priced.message, priced.field
                )
                continue
            quantity, duration, price = priced
            dated = instants.get(event.occurred_at)
            if dated is None:
                dated = instants[event.occurred_at] = (
                    local_date(event.occurred_at, tz).isoformat(),
                    to_micros(event.occurred_at),
                )
            seen[key] = event
            raw = event.raw
            # the record's values in usage_store.RECORD_NAMES order
            row: tuple[Any, ...] = (
                account_id,
                event.service,
                event.sub_type,
                event.natural_id,
                event.status,
                raw.get("consumer"),
                raw.get("campaign_id"),
                raw.get("from"),
                raw.get("to"),
                quantity,
                duration,
                price.micros,
                dated[0],
                dated[1],
                now_us,
                event.print_,
                None,  # start_result_json
                None,  # end_result_json
                None,  # end_fingerprint
            )
            candidates.append((event, row))
        # Insert first: ids the account already has are skipped by the unique constraint,
        # then judged (duplicate or conflicting) from what is stored.
        skipped = usage_store.insert_new_records(cmd.conn, [row for _, row in candidates])
        if skipped:
            stored = _stored_fingerprints(cmd, sorted(skipped))
            for event, _row in candidates:
                key = (event.service, event.natural_id)
                if key in skipped:
                    _judge_repeat(event, stored[key], results)
        rollups: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        totals: dict[str, int] = defaultdict(int)  # usage date -> price of its events
        applied = 0
        for event, row in candidates:
            if skipped and (event.service, event.natural_id) in skipped:
                continue
            day, price_micros = row[_DATE], row[_PRICE]
            consumer, campaign = row[_CONSUMER] or "", row[_CAMPAIGN] or ""
            group = (day, row[_SERVICE_AT], row[_SUB_TYPE], consumer, campaign)
            sums = rollups[group]
            sums[0] += 1
            sums[1] += row[_QUANTITY]
            sums[2] += row[_DURATION] or 0
            sums[3] += price_micros
            sums[4] += row[_STATUS] == "delivered"
            totals[day] += price_micros
            applied += 1
            results[event.index] = EventResult(event.natural_id, "applied", price_micros)
        # One journal entry per usage date, its reference that date: the journal is dated
        # when the money moved, and the reference says which day's usage it paid for, so
        # `usagewatch reconcile` can match it with the records (dated when usage happened).
        batch_id = new_id("batch")
        for day, total in sorted(totals.items()):
            if total > 0:
                posting = cmd.book.debit(Money(total), cmd.now, allow_overrun=True)
                cmd.record(
                    [posting],
                    f"{batch_id}:{day}",
                    None,
                    None,
                    reference=day,
                    description=f"batch of {applied} usage events: those of {day}",
                )
        if rollups:
            usage_store.add_rollups(cmd.conn, account_id, rollups)
            limits_store.add_campaign_spend(cmd.conn, campaign_spends(account_id, rollups))
        # usage of a month before this one may belong to a statement already made
        this_month = cmd.today[:7]
        earlier = {day[:7] for day in totals if day[:7] < this_month}
        statements.mark_revisions(cmd.conn, account_id, earlier, now_us)


def _price_of(
    card: rating.RateCard, pricing: tuple[Any, ...]
) -> tuple[int, int | None, Money] | UsageWatchError:
    """(quantity, duration_seconds, price) of an event from its pricing key, or the error
    that rejects it."""
    try:
        if pricing[0] == "sms":
            _, sms_type, count = pricing
            return count, None, rating.price_sms(card, sms_type, count)
        if pricing[0] == "whatsapp":
            return 1, None, rating.price_whatsapp(card, pricing[1])
        _, direction, status, duration = pricing
        if status != "completed":
            return 0, duration, Money(0)
        priced = rating.price_call(card, direction, duration)
        return priced.pulses, duration, priced.price
    except UsageWatchError as exc:
        return exc


def _judge_repeat(event: _Event, earlier_print: str, results: list[EventResult | None]) -> None:
    if earlier_print == event.print_:
        results[event.index] = EventResult(event.natural_id, "duplicate")
    else:
        results[event.index] = EventResult(
            event.natural_id,
            "rejected",
            None,
            "idempotency_key_reused",
            "this id was used with another payload",
        )


def _stored_fingerprints(cmd: Command, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Fingerprints of natural ids this account already has (index lookups in chunks)."""
    found: dict[tuple[str, str], str] = {}
    by_service: dict[str, list[str]] = defaultdict(list)
    for service, natural_id in sorted(set(keys)):
        by_service[service].append(natural_id)
    for service, ids in by_service.items():
        for start in range(0, len(ids), 500):
            rows = cmd.conn.execute(
                sa.select(usage_records.c.natural_id, usage_records.c.request_fingerprint).where(
                    usage_records.c.account_id == cmd.state.account_id,
                    usage_records.c.service == service,
                    usage_records.c.natural_id.in_(ids[start : start + 500]),
                )
            )
            for natural_id, print_ in rows:
                found[(service, natural_id)] = print_
    return found


def _id_of(raw: Any) -> str | None:
    if isinstance(raw, Mapping):
        for field in _ID_FIELD.values():
            value = raw.get(field)
            if isinstance(value, str):
                return value
    return None


def _text(raw: Mapping[str, Any], field: str, required: bool = False, length: int = 128) -> Any:
    value = raw.get(field)
    if value is None:
        if required:
            raise Invalid("missing_field", f"{field} is required", field)
        return None
    if not isinstance(value, str) or len(value) > length:
        raise Invalid("validation_error", f"{field} is a string of at most {length}", field)
    return value


_E = TypeVar("_E")
# _apply builds a record's values in this order (the table's): a schema change must show here
assert [
    *("account_id", "service", "sub_type", "natural_id", "status", "consumer", "campaign_id"),
    *("from_number", "to_number", "quantity", "duration_seconds", "price_micros", "local_date"),
    *("occurred_at_us", "updated_at_us", "request_fingerprint", "start_result_json"),
    *("end_result_json", "end_fingerprint"),
] == usage_store.RECORD_NAMES
# positions in a record's values (usage_store.RECORD_NAMES)
_SERVICE_AT, _SUB_TYPE, _STATUS, _CONSUMER, _CAMPAIGN = (
    usage_store.RECORD_NAMES.index(name)
    for name in ("service", "sub_type", "status", "consumer", "campaign_id")
)
_QUANTITY, _DURATION, _PRICE, _DATE = (
    usage_store.RECORD_NAMES.index(name)
    for name in ("quantity", "duration_seconds", "price_micros", "local_date")
)
_TEXT_LENGTHS_MAX = (("consumer", 128), ("campaign_id", 64))


class _Parser:
    """Validates one batch's events. Timestamps and enum names repeat across a batch, so
    each distinct string is parsed once (the checks and their errors are unchanged)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._instants: dict[str, datetime] = {}
        self._names: dict[tuple[Callable[[object], Any], str], Any] = {}

    def _name(self, parse: Callable[[object], _E], value: object) -> _E:
        if type(value) is not str:
            return parse(value)  # raises (or accepts) exactly as before
        hit = self._names.get((parse, value))
        if hit is None:
            hit = self._names[(parse, value)] = parse(value)
        return hit

    def _occurred_at(self, value: Any) -> datetime:
        if type(value) is not str:
            return _occurred_at(value, self.now)
        instant = self._instants.get(value)
        if instant is None:
            instant = self._instants[value] = _occurred_at(value, self.now)
        return instant

    def parse(self, index: int, raw: Any) -> _Event:
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise Invalid("validation_error", "an event is a JSON object", "events")
        kind = raw.get("kind")
        if type(kind) is not str or kind not in _ID_FIELD:
            raise Invalid("validation_error", "kind is call, sms or whatsapp", "kind")
        if not _FIELDS[kind].issuperset(raw):
            field = sorted(raw.keys() - _FIELDS[kind])[0]
            raise Invalid("unknown_field", f"{kind} events do not take {field!r}", field)
        id_field = _ID_FIELD[kind]
        natural_id = check_natural_id(_text(raw, id_field, required=True), id_field)
        occurred_at = self._occurred_at(raw.get("occurred_at"))
        for field, length in _TEXT_LENGTHS_MAX:
            value = raw.get(field)
            if value is not None and (not isinstance(value, str) or len(value) > length):
                raise Invalid("validation_error", f"{field} is a string of at most {length}", field)
        pricing: tuple[Any, ...]
        if kind == "sms":
            sms_type = self._name(rating.parse_sms_type, raw.get("type"))
            body, units = raw.get("body"), raw.get("units")
            if (body is None) == (units is None):
                raise Invalid("validation_error", "give either body or units", "body")
            count = (
                rating.sms_segments(body).units
                if body is not None
                else rating.check_sms_units(units)
            )
            sub_type = sms_type.value
            # a completed SMS may carry its delivery status already (default: sent)
            sms_status = raw.get("status", "sent")
            if type(sms_status) is not str or sms_status not in SMS_STATUSES:
                raise Invalid(
                    "invalid_status", f"status is one of {sorted(SMS_STATUSES)}", "status"
                )
            status = sms_status
            pricing = ("sms", sms_type, count)
        elif kind == "whatsapp":
            category = self._name(rating.parse_whatsapp_category, raw.get("category"))
            sub_type = category.value
            status = "charged"
            pricing = ("whatsapp", category)
        else:
            direction = self._name(rating.parse_call_direction, raw.get("direction"))
            call_status = raw.get("status")
            if type(call_status) is not str or call_status not in CALL_STATUSES:
                raise Invalid(
                    "invalid_status", f"status is one of {sorted(CALL_STATUSES)}", "status"
                )
            status = call_status
            duration = rating.check_duration(raw.get("duration_seconds"))
            sub_type = direction.value
            pricing = ("call", direction, status, duration)

        if kind != "whatsapp":  # numbers: an SMS's `to` is required, the rest optional
            to, sender = raw.get("to"), raw.get("from")
            if to is not None:
                check_number(to, "to")
            elif kind == "sms":
                raise Invalid("missing_field", "to is required", "to")
            if sender is not None:
                (check_sender if kind == "sms" else check_number)(sender, "from")
        # The event's payload, as sent (flat JSON: strings, numbers, null), digested.
        print_ = hashlib.sha256(repr(sorted(raw.items())).encode()).hexdigest()
        return _Event(
            index, _SERVICE[kind], natural_id, sub_type, status, pricing, raw, occurred_at, print_
        )


def _occurred_at(value: Any, now: datetime) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise Invalid("invalid_timestamp", "occurred_at is an RFC 3339 timestamp", "occurred_at")
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(
            "invalid_timestamp", "occurred_at is an RFC 3339 timestamp", "occurred_at"
        ) from exc
    if instant.tzinfo is None:
        raise Invalid("invalid_timestamp", "occurred_at needs a time zone", "occurred_at")
    if instant > now + timedelta(seconds=FUTURE_SKEW_SECONDS):
        raise Invalid("occurred_in_future", "occurred_at is in the future", "occurred_at")
    if instant < now - timedelta(days=PAST_DAYS_MAX):
        raise Invalid(
            "occurred_too_long_ago", f"usage older than {PAST_DAYS_MAX} days", "occurred_at"
        )
    return instant.astimezone(now.tzinfo)

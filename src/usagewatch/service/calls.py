"""Calls: authorize (hold the first reservation window), extend (hold the next), end
(price in pulses, capture, release the rest). Each is one ledger command; the call's usage
record, and at the end its daily rollup, are written in the same transaction.

`max_duration_seconds` comes from `rating.max_call_seconds`, the exact inverse of the
pulse pricing that settles the call: charging exactly that duration keeps the available
balance at or above zero; one more pulse would not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from usagewatch.adapters.db import store, usage_store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.usage_store import UsageRecord
from usagewatch.domain import rating
from usagewatch.domain.clock import Clock
from usagewatch.domain.errors import Conflict, Invalid, NotFound
from usagewatch.domain.money import Money
from usagewatch.domain.numbers import check_number
from usagewatch.service.ledger import Command, LedgerService, fingerprint
from usagewatch.service.limits import LimitsService, add_spend
from usagewatch.service.rates import RateService
from usagewatch.service.usage import check_natural_id

END_STATUSES = frozenset({"completed", "failed", "busy", "no-answer", "canceled"})


@dataclass(frozen=True, slots=True)
class CallSettings:
    window_seconds: int = 300
    duration_max_seconds: int = 10_800
    hold_grace_seconds: int = 120


@dataclass(frozen=True, slots=True)
class CallResult:
    call_sid: str
    direction: str
    status: str
    max_duration_seconds: int
    reserved_micros: int
    reserved_until_us: int | None
    duration_seconds: int | None
    pulses: int
    price_micros: int


@dataclass(frozen=True, slots=True)
class CallView:
    """A call's record and its hold (None: the call never held money, e.g. an inbound
    call at zero balance)."""

    record: UsageRecord
    hold: store.HoldRow | None

    @property
    def reserved_micros(self) -> int:
        return self.hold.amount_micros if self.hold and self.hold.status == "open" else 0


class CallService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ledger: LedgerService,
        rates: RateService,
        settings: CallSettings,
        limits: LimitsService,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.rates = rates
        self.settings = settings
        self.limits = limits

    def authorize(
        self,
        account_id: str,
        call_sid: str,
        direction: str,
        *,
        from_: str | None = None,
        to: str | None = None,
        consumer: str | None = None,
        campaign_id: str | None = None,
    ) -> CallResult:
        """May this call go ahead, and for how long? Holds the first window's price.
        Outbound calls are refused (402) when not even one pulse is covered; inbound calls
        follow the account's inbound_at_zero policy: 'allow' (the default; charged at the
        end, an explicit overrun if short) or 'deny'."""
        check_natural_id(call_sid, "call_sid")
        kind = rating.parse_call_direction(direction)
        for number, field in ((from_, "from"), (to, "to")):
            if number is not None:
                check_number(number, field)
        print_ = fingerprint(
            {
                "direction": kind.value,
                "from": from_,
                "to": to,
                "consumer": consumer,
                "campaign_id": campaign_id,
            }
        )
        limit = self.settings.duration_max_seconds

        def command(cmd: Command) -> CallResult:
            prior = usage_store.find_record(cmd.conn, account_id, "voice", call_sid)
            if prior is not None:
                if prior.request_fingerprint != print_ or prior.start_result_json is None:
                    raise Conflict("idempotency_key_reused", "call_sid used with another payload")
                return CallResult(**json.loads(prior.start_result_json))
            card = self.rates.card_in(cmd.conn, account_id, cmd.state.config_version)
            admitted, allowance = self.limits.admit_call(
                cmd, card, kind, campaign_id, held=Money(0), platform_max_seconds=limit
            )
            max_seconds = allowance.max_seconds
            if max_seconds == 0:
                one_pulse = rating.price_call(card, kind, 1).price
                raise self.limits.refuse(admitted, allowance.reason, campaign_id, one_pulse)
            available = Money(cmd.state.available_micros)
            window = min(self.settings.window_seconds, max_seconds)
            hold_price = rating.price_call(card, kind, window).price
            reserved, until = 0, None
            if hold_price.is_positive() and hold_price <= available:
                ttl = window + self.settings.hold_grace_seconds
                hold = cmd.place_hold(call_sid, hold_price, ttl, f"hold:{call_sid}", None)
                reserved, until = hold.amount_micros, cmd.now_us + window * 1_000_000
                outbound = kind is rating.CallDirection.OUTBOUND
                self.limits.committed(cmd, admitted, hold_price, outbound)
            result = CallResult(
                call_sid=call_sid,
                direction=kind.value,
                status="in-progress",
                max_duration_seconds=max_seconds,
                reserved_micros=reserved,
                reserved_until_us=until,
                duration_seconds=None,
                pulses=0,
                price_micros=0,
            )
            usage_store.insert_record(
                cmd.conn,
                UsageRecord(
                    id=None,
                    account_id=account_id,
                    service="voice",
                    sub_type=kind.value,
                    natural_id=call_sid,
                    status="in-progress",
                    consumer=consumer,
                    campaign_id=campaign_id,
                    from_number=from_,
                    to_number=to,
                    quantity=0,
                    duration_seconds=None,
                    price_micros=0,
                    local_date=cmd.today,
                    occurred_at_us=cmd.now_us,
                    updated_at_us=cmd.now_us,
                    request_fingerprint=print_,
                    start_result_json=_dump(result),
                ),
            )
            return result

        return self.ledger.run_command(account_id, None, None, CallResult, command)

    def extend(self, account_id: str, call_sid: str) -> CallResult:
        """Hold the next window while the call runs; 402 when nothing more is allowed
        (the platform then disconnects)."""
        limit = self.settings.duration_max_seconds

        def command(cmd: Command) -> CallResult:
            record = self._record(cmd, call_sid)
            if record.status != "in-progress":
                raise Conflict("call_not_in_progress", f"call {call_sid!r} is {record.status}")
            card = self.rates.card_in(cmd.conn, account_id, cmd.state.config_version)
            kind = rating.parse_call_direction(record.sub_type)
            hold = store.find_hold(cmd.conn, account_id, call_sid)
            if hold is None:  # nothing is held for free or zero-balance inbound calls
                return self._in_progress(record, limit, 0, None)
            if hold.status != "open" or hold.expires_at_us <= cmd.now_us:
                raise Conflict("call_not_in_progress", "the call's reservation lapsed")
            held = Money(hold.amount_micros)
            covered = rating.max_call_seconds(card, kind, held, limit)
            admitted, allowance = self.limits.admit_call(
                cmd, card, kind, record.campaign_id, held=held, platform_max_seconds=limit
            )
            max_seconds = allowance.max_seconds
            target = min(covered + self.settings.window_seconds, max_seconds)
            more = rating.price_call(card, kind, target).price - held
            if target <= covered or not more.is_positive():
                one_pulse = rating.price_call(card, kind, 1).price
                raise self.limits.refuse(admitted, allowance.reason, record.campaign_id, one_pulse)
            elapsed_seconds = (cmd.now_us - record.occurred_at_us) // 1_000_000
            ttl = max(target - elapsed_seconds, 1) + self.settings.hold_grace_seconds
            extended = cmd.extend_hold(call_sid, more, ttl, f"extend:{call_sid}:{target}", None)
            self.limits.committed(cmd, admitted, more, kind is rating.CallDirection.OUTBOUND)
            until = record.occurred_at_us + target * 1_000_000
            return self._in_progress(record, max_seconds, extended.amount_micros, until)

        return self.ledger.run_command(account_id, None, None, CallResult, command)

    def end(self, account_id: str, call_sid: str, status: str, duration_seconds: int) -> CallResult:
        """Price the call (completed calls: whole pulses, a partial one rounded up; any
        other status costs nothing), capture it from the hold and release the rest."""
        if status not in END_STATUSES:
            raise Invalid("invalid_status", f"status is one of {sorted(END_STATUSES)}", "status")
        duration = rating.check_duration(duration_seconds)
        print_ = fingerprint({"status": status, "duration": duration})

        def command(cmd: Command) -> CallResult:
            record = self._record(cmd, call_sid)
            if record.status != "in-progress":
                if record.end_fingerprint != print_ or record.end_result_json is None:
                    raise Conflict("idempotency_key_reused", "the call already ended otherwise")
                return CallResult(**json.loads(record.end_result_json))
            kind = rating.parse_call_direction(record.sub_type)
            card = self.rates.card_in(cmd.conn, account_id, cmd.state.config_version)
            if status == "completed":
                priced = rating.price_call(card, kind, duration)
            else:
                priced = rating.CallPrice(0, Money(0))
            hold = store.find_hold(cmd.conn, account_id, call_sid)
            if hold is not None and priced.price.is_positive():
                cmd.capture_hold(call_sid, priced.price, f"capture:{call_sid}", None)
            elif hold is not None and hold.status == "open":
                cmd.release_hold(call_sid, f"release:{call_sid}", None)
            elif priced.price.is_positive():  # nothing was held: charge what it cost
                posting = cmd.book.debit(priced.price, cmd.now, allow_overrun=True)
                cmd.record([posting], f"call:{call_sid}", None, None, reference=call_sid)
            record.status = status
            record.duration_seconds = duration
            record.quantity = priced.pulses
            record.price_micros = priced.price.micros
            record.local_date = cmd.today  # usage counts on the day it is charged
            record.updated_at_us = cmd.now_us
            result = CallResult(
                call_sid=call_sid,
                direction=kind.value,
                status=status,
                max_duration_seconds=duration,
                reserved_micros=0,
                reserved_until_us=None,
                duration_seconds=duration,
                pulses=priced.pulses,
                price_micros=priced.price.micros,
            )
            record.end_result_json = _dump(result)
            record.end_fingerprint = print_
            usage_store.update_record(cmd.conn, record)
            usage_store.add_to_rollup(
                cmd.conn,
                record,
                records=1,
                quantity=priced.pulses,
                duration_seconds=duration,
                cost_micros=priced.price.micros,
            )
            add_spend(cmd.conn, account_id, record.campaign_id, priced.price.micros)
            return result

        return self.ledger.run_command(account_id, None, None, CallResult, command)

    def get(self, account_id: str, call_sid: str) -> CallView:
        with self.db.read() as conn:
            record = usage_store.find_record(conn, account_id, "voice", call_sid)
            if record is None:
                raise NotFound("call_not_found", f"no call {call_sid!r}")
            return CallView(record, store.find_hold(conn, account_id, call_sid))

    def list(self, account_id: str, limit: int, before_id: int | None) -> list[CallView]:
        with self.db.read() as conn:
            if store.read_account_state(conn, account_id) is None:
                raise NotFound("account_not_found", f"no account {account_id!r}")
            records = usage_store.list_records(conn, account_id, "voice", limit, before_id)
            held = store.holds_of(conn, account_id, [r.natural_id for r in records])
        return [CallView(r, held.get(r.natural_id)) for r in records]

    @staticmethod
    def _record(cmd: Command, call_sid: str) -> UsageRecord:
        record = usage_store.find_record(cmd.conn, cmd.state.account_id, "voice", call_sid)
        if record is None:
            raise NotFound("call_not_found", f"no call {call_sid!r}")
        return record

    @staticmethod
    def _in_progress(
        record: UsageRecord, max_seconds: int, reserved: int, until: int | None
    ) -> CallResult:
        return CallResult(
            call_sid=record.natural_id,
            direction=record.sub_type,
            status="in-progress",
            max_duration_seconds=max_seconds,
            reserved_micros=reserved,
            reserved_until_us=until,
            duration_seconds=None,
            pulses=0,
            price_micros=0,
        )


def _dump(result: CallResult) -> str:
    return json.dumps(asdict(result), separators=(",", ":"))

"""Usage commands: each one prices a piece of usage, charges it through the ledger, and
records it (usage record + daily rollup) in the same transaction as the charge.

The natural id (sms_sid, ...) is the idempotency key: the same id with the same payload
returns the first result and charges once; with another payload it is a 409.
"""

from __future__ import annotations

from dataclasses import dataclass

from usagewatch.adapters.db import usage_store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.usage_store import UsageRecord
from usagewatch.domain import rating
from usagewatch.domain.clock import Clock
from usagewatch.domain.errors import Conflict, Invalid, NotFound
from usagewatch.service.ledger import Command, LedgerService, fingerprint
from usagewatch.service.rates import RateService

NATURAL_ID_LENGTH_MAX = 128
SMS_STATUSES = frozenset(
    {"queued", "sending", "submitted", "sent", "delivered", "failed", "failed-dnd"}
)


@dataclass(frozen=True, slots=True)
class SmsResult:
    sms_sid: str
    sms_type: str
    units: int
    price_micros: int
    status: str


def check_natural_id(value: str, field: str) -> str:
    if not 1 <= len(value) <= NATURAL_ID_LENGTH_MAX or not value.isprintable():
        raise Invalid("validation_error", f"{field} is 1-128 printable characters", field)
    return value


class UsageService:
    def __init__(
        self, db: Database, clock: Clock, ledger: LedgerService, rates: RateService
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.rates = rates

    # -- SMS -----------------------------------------------------------------------------
    def charge_sms(
        self,
        account_id: str,
        sms_sid: str,
        sms_type: str,
        *,
        to: str,
        from_: str | None = None,
        body: str | None = None,
        units: int | None = None,
        consumer: str | None = None,
        campaign_id: str | None = None,
    ) -> SmsResult:
        """Charge an outbound SMS: units from the body's GSM-7/UCS-2 segmentation, or as
        given; price = units x the account's price for the type. Refused (402) when the
        available balance cannot cover it."""
        check_natural_id(sms_sid, "sms_sid")
        kind = rating.parse_sms_type(sms_type)
        if (body is None) == (units is None):
            raise Invalid("validation_error", "give either body or units", "body")
        segments = rating.sms_segments(body) if body is not None else None
        counted = segments.units if segments is not None else rating.check_sms_units(units)
        print_ = fingerprint(
            {
                "type": kind.value,
                "to": to,
                "from": from_,
                "units": counted,
                "body": body,
                "consumer": consumer,
                "campaign_id": campaign_id,
            }
        )

        def command(cmd: Command) -> SmsResult:
            prior = usage_store.find_record(cmd.conn, account_id, "sms", sms_sid)
            if prior is not None:
                return _replay_sms(prior, print_)
            price = rating.price_sms(self.rates.card_in(cmd.conn, account_id), kind, counted)
            postings = [cmd.book.debit(price, cmd.now)] if price.is_positive() else []
            record = UsageRecord(
                id=None,
                account_id=account_id,
                service="sms",
                sub_type=kind.value,
                natural_id=sms_sid,
                status="sent",
                consumer=consumer,
                campaign_id=campaign_id,
                from_number=from_,
                to_number=to,
                quantity=counted,
                duration_seconds=None,
                price_micros=price.micros,
                local_date=cmd.today,
                occurred_at_us=cmd.now_us,
                updated_at_us=cmd.now_us,
                request_fingerprint=print_,
            )
            usage_store.insert_record(cmd.conn, record)
            usage_store.add_to_rollup(
                cmd.conn,
                record,
                records=1,
                quantity=counted,
                duration_seconds=0,
                cost_micros=price.micros,
            )
            result = _sms_result(record)
            if postings:
                cmd.record(postings, f"sms:{sms_sid}", print_, result, reference=sms_sid)
            return result

        return self.ledger.run_command(account_id, None, None, SmsResult, command)

    def sms_status(self, account_id: str, sms_sid: str, status: str) -> SmsResult:
        """Record a delivery report; the rollup's delivered count follows (for the delivery
        rate). Moves no money."""
        if status not in SMS_STATUSES:
            raise Invalid("invalid_status", f"status is one of {sorted(SMS_STATUSES)}", "status")

        def command(cmd: Command) -> SmsResult:
            record = usage_store.find_record(cmd.conn, account_id, "sms", sms_sid)
            if record is None:
                raise NotFound("sms_not_found", f"no SMS {sms_sid!r}")
            delivered = int(status == "delivered") - int(record.status == "delivered")
            record.status = status
            record.updated_at_us = cmd.now_us
            usage_store.update_record(cmd.conn, record)
            if delivered:
                usage_store.add_delivered(cmd.conn, record, delivered)
            return _sms_result(record)

        return self.ledger.run_command(account_id, None, None, SmsResult, command)


def _sms_result(record: UsageRecord) -> SmsResult:
    return SmsResult(
        sms_sid=record.natural_id,
        sms_type=record.sub_type,
        units=record.quantity,
        price_micros=record.price_micros,
        status=record.status,
    )


def _replay_sms(prior: UsageRecord, print_: str) -> SmsResult:
    if prior.request_fingerprint != print_:
        raise Conflict("idempotency_key_reused", "this sms_sid was used with another payload")
    return _sms_result(prior)

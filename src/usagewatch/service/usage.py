"""Usage commands: each one prices a piece of usage, charges it through the ledger, and
records it (usage record + daily rollup) in the same transaction as the charge.

The natural id (sms_sid, ...) is the idempotency key: the same id with the same payload
returns the first result and charges once; with another payload it is a 409.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from usagewatch.adapters.db import limits_store, usage_store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.usage_store import UsageRecord
from usagewatch.domain import rating
from usagewatch.domain.clock import Clock
from usagewatch.domain.errors import Conflict, Invalid, NotFound
from usagewatch.domain.money import Money
from usagewatch.domain.numbers import check_number, check_sender
from usagewatch.service.ledger import Charge, Command, LedgerService, fingerprint
from usagewatch.service.limits import LimitsService
from usagewatch.service.rates import RateService

P = ParamSpec("P")
R = TypeVar("R")

NATURAL_ID_LENGTH_MAX = 128
SMS_STATUSES = frozenset(
    {"queued", "sending", "submitted", "sent", "delivered", "failed", "failed-dnd"}
)


@dataclass(frozen=True, slots=True)
class WhatsAppResult:
    conversation_id: str
    category: str
    price_micros: int


@dataclass(frozen=True, slots=True)
class SmsResult:
    sms_sid: str
    sms_type: str
    units: int
    price_micros: int
    status: str


def run_now(
    make: Callable[Concatenate[UsageService, P], Charge[R]], doc: str
) -> Callable[Concatenate[UsageService, P], R]:
    """A method that runs `make`'s charge in this thread (`LedgerService.run_charge`), with
    `make`'s arguments: the in-process form of a charge the routes run from the loop."""

    def run(self: UsageService, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.ledger.run_charge(make(self, *args, **kwargs))

    run.__doc__ = doc
    run.__name__ = "charge_" + make.__name__.removesuffix("_charge")
    run.__qualname__ = make.__qualname__.replace(make.__name__, run.__name__)
    return run


def check_natural_id(value: str, field: str) -> str:
    if not 1 <= len(value) <= NATURAL_ID_LENGTH_MAX or not value.isprintable():
        raise Invalid("validation_error", f"{field} is 1-128 printable characters", field)
    return value


class UsageService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ledger: LedgerService,
        rates: RateService,
        limits: LimitsService,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.rates = rates
        self.limits = limits

    # -- SMS -----------------------------------------------------------------------------
    def sms_charge(
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
    ) -> Charge[SmsResult]:
        """An outbound SMS's input checked (422s here), as a charge for the ledger to run
        (`charge_sms` runs it in this thread; the route, from the event loop, hands it to
        `LedgerService.run_charge_async`)."""
        check_natural_id(sms_sid, "sms_sid")
        kind = rating.parse_sms_type(sms_type)
        if (body is None) == (units is None):
            raise Invalid("validation_error", "give either body or units", "body")
        segments = rating.sms_segments(body) if body is not None else None
        counted = segments.units if segments is not None else rating.check_sms_units(units)
        check_number(to, "to")
        if from_ is not None:
            check_sender(from_)
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
            record = charge_once(
                cmd,
                "sms",
                sms_sid,
                kind.value,
                counted,
                print_,
                lambda card: rating.price_sms(card, kind, counted),
                self.rates,
                from_=from_,
                to=to,
                consumer=consumer,
                campaign_id=campaign_id,
                status="sent",
                limits=self.limits,
            )
            return _sms_result(record)

        # a campaign's row changes without a version: such a charge takes the locking read
        return Charge(account_id, SmsResult, command, ("sms", sms_sid), campaign_id is None)

    charge_sms = run_now(
        sms_charge,
        """Charge an outbound SMS: units from the body's GSM-7/UCS-2 segmentation, or as
        given; price = units x the account's price for the type. Refused (402) by the
        gate: the available balance, the daily and monthly caps, the campaign's budget.""",
    )

    # -- WhatsApp ------------------------------------------------------------------------
    def whatsapp_charge(
        self,
        account_id: str,
        conversation_id: str,
        category: str,
        *,
        consumer: str | None = None,
        campaign_id: str | None = None,
    ) -> Charge[WhatsAppResult]:
        """A WhatsApp conversation's input checked, as a charge for the ledger to run."""
        check_natural_id(conversation_id, "conversation_id")
        kind = rating.parse_whatsapp_category(category)
        print_ = fingerprint(
            {"category": kind.value, "consumer": consumer, "campaign_id": campaign_id}
        )

        def command(cmd: Command) -> WhatsAppResult:
            record = charge_once(
                cmd,
                "whatsapp",
                conversation_id,
                kind.value,
                1,
                print_,
                lambda card: rating.price_whatsapp(card, kind),
                self.rates,
                consumer=consumer,
                campaign_id=campaign_id,
                status="charged",
                limits=self.limits,
            )
            return WhatsAppResult(conversation_id, record.sub_type, record.price_micros)

        usage = ("whatsapp", conversation_id)
        return Charge(account_id, WhatsAppResult, command, usage, campaign_id is None)

    charge_whatsapp = run_now(
        whatsapp_charge,
        "Charge a WhatsApp conversation at its category's price; 402 when short.",
    )

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


def charge_once(
    cmd: Command,
    service: str,
    natural_id: str,
    sub_type: str,
    quantity: int,
    print_: str,
    price_of: Callable[[rating.RateCard], Money],
    rates: RateService,
    *,
    status: str,
    from_: str | None = None,
    to: str | None = None,
    consumer: str | None = None,
    campaign_id: str | None = None,
    duration_seconds: int | None = None,
    allow_overrun: bool = False,
    limits: LimitsService | None = None,
) -> UsageRecord:
    """Inside a command: charge a piece of usage once per natural id, and write its usage
    record and rollup. A replay (same id, same payload) returns the first record and moves
    nothing; the same id with another payload is a 409. Outbound usage passes the gate of
    `limits` (402 with the denying code); otherwise it is refused with 402 when the
    available balance cannot cover the price, unless `allow_overrun` (usage that already
    happened). A campaign's charges count toward its budget. The record is looked up first
    (with the account lock when the command asked for it: `run_command(usage=...)`), and
    written with the posting, in one statement on PostgreSQL."""
    account_id = cmd.state.account_id
    if cmd.usage_key == (service, natural_id):
        prior = UsageRecord(*cmd.usage_row) if cmd.usage_row is not None else None
    else:
        prior = usage_store.find_record(cmd.conn, account_id, service, natural_id)
    if prior is not None:
        return _replayed(prior, print_)
    price = price_of(rates.card_in(cmd.conn, account_id, cmd.state.config_version))
    record = UsageRecord(
        id=None,
        account_id=account_id,
        service=service,
        sub_type=sub_type,
        natural_id=natural_id,
        status=status,
        consumer=consumer,
        campaign_id=campaign_id,
        from_number=from_,
        to_number=to,
        quantity=quantity,
        duration_seconds=duration_seconds,
        price_micros=price.micros,
        local_date=cmd.today,
        occurred_at_us=cmd.now_us,
        updated_at_us=cmd.now_us,
        request_fingerprint=print_,
    )
    admitted = limits.admit_charge(cmd, price, campaign_id) if limits is not None else None
    if price.is_positive():
        writes = [usage_store.record_write(record)]
        if campaign_id:
            writes.append(limits_store.spend_write(account_id, campaign_id, price.micros))
        posting = cmd.book.debit(price, cmd.now, allow_overrun)
        key = f"{service}:{natural_id}"
        cmd.record([posting], key, None, None, reference=natural_id, also=writes)
    elif not usage_store.insert_record_once(cmd.conn, record):
        found = usage_store.find_record(cmd.conn, account_id, service, natural_id)
        assert found is not None, "the insert was skipped, so the record exists"
        return _replayed(found, print_)
    if admitted is not None and limits is not None:
        limits.committed(cmd, admitted, price)
    return record


def _replayed(prior: UsageRecord, print_: str) -> UsageRecord:
    """The first record of a natural id, when the payload is the same (else 409)."""
    if prior.request_fingerprint != print_:
        raise Conflict(
            "idempotency_key_reused", f"{prior.natural_id!r} was used with another payload"
        )
    return prior


def _sms_result(record: UsageRecord) -> SmsResult:
    return SmsResult(
        sms_sid=record.natural_id,
        sms_type=record.sub_type,
        units=record.quantity,
        price_micros=record.price_micros,
        status=record.status,
    )

"""Payments ("Add Credits") and auto-recharge.

A payment's life, whoever started it:
  1. a row `pending` is written under the account lock, with its gateway idempotency key
     (a manual one by `pay`; an automatic one by the ledger trigger, in the very transaction
     of the charge that took the balance below the threshold);
  2. after that commit, outside any lock, the gateway is asked (`pay` itself for a manual
     payment, the scheduler job for an automatic one and for every retry);
  3. the answer is written: `succeeded` adds the paid credit (its idempotency key derived
     from the payment, so a retry never credits twice) and then marks the payment;
     `declined` marks it and backs auto-recharge off; `pending` (a timeout) leaves it for the
     job to ask again, with the same key, after an exponential back-off, until
     `attempts_max`, when it is marked `failed` for a person to reconcile.
Every step is idempotent, so a crash anywhere is repaired by the job's next run.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from usagewatch.adapters.db import payments_store, store
from usagewatch.adapters.db.engine import Database
from usagewatch.adapters.db.payments_store import PaymentRow, RuleRow
from usagewatch.domain.clock import (
    Clock,
    format_instant,
    from_micros,
    local_date,
    next_day_start,
    to_micros,
)
from usagewatch.domain.errors import Conflict, Invalid, NotFound, UsageWatchError
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import AMOUNT_MICROS_MAX, Money
from usagewatch.domain.payments import (
    AutoRechargeRule,
    GatewayResult,
    GatewayStatus,
    PaymentGateway,
    PaymentKind,
    PaymentStatus,
    Recharge,
    RechargeFacts,
    check_chargeable,
    check_rule,
    decide,
    retry_delay_seconds,
)
from usagewatch.service import notifications
from usagewatch.service.ledger import Command, LedgerService, fingerprint
from usagewatch.service.notifications import Notice

log = logging.getLogger(__name__)
SWEEP_BATCH_MAX = 200


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    retry_base_seconds: int = 30
    attempts_max: int = 8
    decline_backoff_seconds: int = 3600


@dataclass(frozen=True, slots=True)
class RuleView:
    rule: AutoRechargeRule | None
    paused_until_us: int | None
    updated_at_us: int | None
    pending_payment_id: int | None
    recharges_today: int


def public_id(payment_id: int) -> str:
    return f"pay_{payment_id}"


def parse_public_id(text: str) -> int:
    digits = text.removeprefix("pay_")
    if text == digits or not digits.isdigit() or len(digits) > 18:
        raise NotFound("payment_not_found", f"no payment {text!r}")
    return int(digits)


def check_payment_amount(amount: Money) -> Money:
    if not amount.is_positive():
        raise Invalid("amount_not_positive", "the amount must be greater than zero", "amount")
    if amount.micros > AMOUNT_MICROS_MAX:
        raise Invalid("amount_too_large", "the amount exceeds 1,000,000,000", "amount")
    return amount


class PaymentService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ledger: LedgerService,
        gateway: PaymentGateway,
        settings: PaymentSettings | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.gateway = gateway
        self.settings = settings or PaymentSettings()
        ledger.add_trigger(self.on_money_moved)

    # -- manual payments ("Add Credits") ---------------------------------------------------
    def pay(self, account_id: str, amount: Money, request_key: str) -> PaymentRow:
        """Charge the account's payment method through the gateway; add paid credit only when
        it succeeds. `request_key` (the Idempotency-Key) makes it happen once: a replay
        answers with the payment as it stands now and charges nothing."""
        check_payment_amount(amount)
        print_ = fingerprint({"amount": amount.micros})
        replay = False

        def body(cmd: Command) -> PaymentRow:
            nonlocal replay
            existing = payments_store.find_by_request_key(cmd.conn, account_id, request_key)
            replay = existing is not None  # set on every run: a body may run twice
            if existing is not None:
                if existing.request_fingerprint != print_:
                    raise Conflict(
                        "idempotency_key_reused",
                        "this idempotency key was already used with a different request",
                    )
                return existing
            check_chargeable(amount, cmd.state.currency)
            # The request itself makes the first gateway call: the job retries only if it
            # has not answered by the first back-off.
            return self._insert(cmd, PaymentKind.MANUAL, amount, 1, request_key, print_)

        row = self.ledger.run_command(account_id, None, None, PaymentRow, body)
        if replay:
            return row
        return self._settle(row, self._call_gateway(row), in_request=True)

    def _insert(
        self,
        cmd: Command,
        kind: PaymentKind,
        amount: Money,
        attempts: int,
        request_key: str | None = None,
        print_: str | None = None,
    ) -> PaymentRow:
        now = cmd.now_us
        delay = retry_delay_seconds(attempts, self.settings.retry_base_seconds) if attempts else 0
        return payments_store.insert_payment(
            cmd.conn,
            {
                "account_id": cmd.state.account_id,
                "kind": kind.value,
                "amount_micros": amount.micros,
                "status": PaymentStatus.PENDING.value,
                "attempts": attempts,
                "request_key": request_key,
                "request_fingerprint": print_,
                "gateway_key": f"uwpay_{secrets.token_hex(16)}",
                "local_date": cmd.today,
                "created_at_us": now,
                "updated_at_us": now,
                "next_attempt_at_us": now + delay * 1_000_000,
            },
        )

    # -- reads -----------------------------------------------------------------------------
    def list(self, account_id: str, limit: int, before_id: int | None) -> list[PaymentRow]:
        with self.db.read() as conn:
            self._account(conn, account_id)
            return payments_store.list_payments(conn, account_id, limit, before_id)

    def get(self, account_id: str, payment_id: int) -> PaymentRow:
        with self.db.read() as conn:
            self._account(conn, account_id)
            row = payments_store.find_payment(conn, account_id, payment_id)
        if row is None:
            raise NotFound("payment_not_found", f"no payment {public_id(payment_id)!r}")
        return row

    @staticmethod
    def _account(conn: Connection, account_id: str) -> store.AccountState:
        state = store.read_account_state(conn, account_id)
        if state is None:
            raise NotFound("account_not_found", f"no account {account_id!r}")
        return state

    # -- the gateway call and its outcome ------------------------------------------------
    def _call_gateway(self, row: PaymentRow) -> GatewayResult:
        """Ask the gateway, outside any transaction. An exception means "no answer"."""
        try:
            return self.gateway.charge(row.account_id, Money(row.amount_micros), row.gateway_key)
        except Exception as exc:  # a network fault is an unknown outcome: ask again later
            log.warning("payment %s: gateway call failed: %s", public_id(row.id), exc)
            return GatewayResult(
                GatewayStatus.PENDING, None, "the payment provider could not be reached"
            )

    def _settle(self, row: PaymentRow, result: GatewayResult, *, in_request: bool) -> PaymentRow:
        """Write the gateway's answer about `row` (idempotent: a settled payment stays)."""
        credit_id: str | None = None
        final = PaymentStatus.PENDING
        error: str | None = result.message
        if result.status is GatewayStatus.SUCCEEDED:
            try:
                credit_id = self.ledger.add_credit(
                    row.account_id,
                    LotKind.PAID,
                    Money(row.amount_micros),
                    idempotency_key=f"payment:{row.gateway_key}",
                    description=_credit_description(row),
                ).id
                final, error = PaymentStatus.SUCCEEDED, None
            except UsageWatchError as exc:  # charged, but the credit is refused: a person acts
                log.error("payment %s charged but not credited: %s", public_id(row.id), exc)
                final = PaymentStatus.FAILED
                error = (
                    f"charged (provider reference {result.gateway_reference}) but the credit "
                    f"was refused: {exc.message}; refund the charge or credit it by hand"
                )
        elif result.status is GatewayStatus.DECLINED:
            final = PaymentStatus.DECLINED
        elif row.attempts >= self.settings.attempts_max:
            final = PaymentStatus.FAILED
            error = (
                f"no final answer from the payment provider after {row.attempts} attempts "
                f"({result.message}); check the charge with idempotency key {row.gateway_key} "
                "with the provider before paying again"
            )

        def body(cmd: Command) -> PaymentRow:
            values: dict[str, object] = {
                "gateway_reference": result.gateway_reference or row.gateway_reference,
                "error": error,
                "updated_at_us": cmd.now_us,
            }
            if final is not PaymentStatus.PENDING:
                values |= {
                    "status": final.value,
                    "credit_lot_id": credit_id,
                    "next_attempt_at_us": None,
                }
            settled = payments_store.settle(cmd.conn, row.id, values)
            if settled and final is not PaymentStatus.PENDING:
                self._after_outcome(cmd, row, final, result, error, notify=not in_request)
            now_row = payments_store.find_payment(cmd.conn, row.account_id, row.id)
            assert now_row is not None
            return now_row

        return self.ledger.run_command(row.account_id, None, None, PaymentRow, body)

    def _after_outcome(
        self,
        cmd: Command,
        row: PaymentRow,
        final: PaymentStatus,
        result: GatewayResult,
        error: str | None,
        *,
        notify: bool,
    ) -> None:
        """What a payment's final outcome causes: a back-off and a notice for auto-recharge,
        a notice for a manual payment settled after its request, another recharge when a
        successful one left the balance still below the threshold."""
        rule_row = payments_store.read_rule(cmd.conn, cmd.state.account_id)
        if row.kind == PaymentKind.AUTO.value:
            if final is not PaymentStatus.SUCCEEDED and rule_row is not None:
                until = cmd.now_us + self.settings.decline_backoff_seconds * 1_000_000
                payments_store.set_paused_until(cmd.conn, cmd.state.account_id, until)
                rule_row = payments_store.read_rule(cmd.conn, cmd.state.account_id)
            notifications.record(
                cmd.conn,
                cmd.state.account_id,
                _recharge_notice(cmd, row, final, result, error, rule_row),
                cmd.now_us,
            )
        elif notify:
            notifications.record(
                cmd.conn, cmd.state.account_id, _payment_notice(cmd, row, final, error), cmd.now_us
            )
        if final is PaymentStatus.SUCCEEDED and rule_row is not None:
            self._evaluate(cmd, rule_row, cmd.state.available_micros)

    # -- auto-recharge: the rule ---------------------------------------------------------
    def rule(self, account_id: str) -> RuleView:
        with self.db.read() as conn:
            state = self._account(conn, account_id)
            return self._rule_view(conn, state, self.clock.now())

    def put_rule(self, account_id: str, rule: AutoRechargeRule) -> RuleView:
        """Replace the rule. It applies at once: enabled below the threshold, a recharge
        starts now (unless one is on its way or the day's maximum is reached). Saving the
        rule ends a back-off after a decline (the owner has acted)."""
        check_rule(rule)

        def body(cmd: Command) -> RuleView:
            check_chargeable(rule.amount, cmd.state.currency)
            payments_store.write_rule(cmd.conn, cmd.state.account_id, rule, cmd.now_us)
            row = payments_store.read_rule(cmd.conn, cmd.state.account_id)
            assert row is not None
            self._evaluate(cmd, row, cmd.state.available_micros)
            return self._rule_view(cmd.conn, cmd.state, cmd.now)

        return self.ledger.run_command(account_id, None, None, RuleView, body)

    @staticmethod
    def _rule_view(conn: Connection, state: store.AccountState, now: datetime) -> RuleView:
        row = payments_store.read_rule(conn, state.account_id)
        day = local_date(now, state.timezone).isoformat()
        pending, today = payments_store.recharge_facts(conn, state.account_id, day)
        return RuleView(
            rule=row.rule if row is not None else None,
            paused_until_us=row.paused_until_us if row is not None else None,
            updated_at_us=row.updated_at_us if row is not None else None,
            pending_payment_id=pending,
            recharges_today=today,
        )

    # -- auto-recharge: the trigger ------------------------------------------------------
    def on_money_moved(self, cmd: Command) -> None:
        """The ledger trigger: inside every command that moved money, under the account lock
        (so concurrent charges are decided one after the other), before its commit."""
        row = payments_store.cached_rule(cmd.conn, cmd.state.account_id, cmd.state.config_version)
        if row is None or not row.rule.enabled:
            return
        if cmd.state.available_micros >= row.rule.threshold.micros:
            return
        self._evaluate(cmd, row, cmd.available_before)

    def _evaluate(self, cmd: Command, row: RuleRow, available_before: int) -> None:
        account_id = cmd.state.account_id
        pending, started_today = payments_store.recharge_facts(cmd.conn, account_id, cmd.today)
        decision = decide(
            RechargeFacts(
                rule=row.rule,
                available_before=Money(available_before),
                available_after=Money(cmd.state.available_micros),
                paused_until_us=row.paused_until_us,
                now_us=cmd.now_us,
                pending=pending is not None,
                started_today=started_today,
            )
        )
        if decision is Recharge.START:
            self._insert(cmd, PaymentKind.AUTO, row.rule.amount, 0)
            if row.paused_until_us is not None:
                payments_store.set_paused_until(cmd.conn, account_id, None)
        elif decision is Recharge.DAILY_MAX:
            until = to_micros(next_day_start(cmd.now, cmd.state.timezone))
            if row.paused_until_us is None or row.paused_until_us < until:
                payments_store.set_paused_until(cmd.conn, account_id, until)
                notice = _daily_max_notice(cmd, row.rule, started_today, until)
                notifications.record(cmd.conn, account_id, notice, cmd.now_us)

    # -- time-driven work: gateway calls and retries, the end of back-offs -----------------
    def run_due(self) -> int:
        """Ask the gateway about every payment whose (next) attempt is due, and look again
        at every rule whose back-off ended. Safe in several processes at once: a payment is
        claimed by a compare-and-set before its gateway call."""
        now_us = to_micros(self.clock.now())
        with self.db.read() as conn:
            due = payments_store.due_payments(conn, now_us, SWEEP_BATCH_MAX)
            rules = payments_store.rules_due(conn, now_us, SWEEP_BATCH_MAX)
        done = 0
        for account_id, payment_id in due:
            done += self._attempt(account_id, payment_id)
        for account_id in rules:
            self.ledger.run_command(account_id, None, None, type(None), self._wake_rule)
            done += 1
        return done

    def _attempt(self, account_id: str, payment_id: int) -> int:
        with self.db.write() as conn:
            now_us = to_micros(self.clock.now())
            row = payments_store.find_payment(conn, account_id, payment_id)
            if row is None or row.next_attempt_at_us is None or row.next_attempt_at_us > now_us:
                return 0
            delay = retry_delay_seconds(row.attempts + 1, self.settings.retry_base_seconds)
            if not payments_store.claim(conn, payment_id, now_us, now_us + delay * 1_000_000):
                return 0  # another worker has it
        row.attempts += 1
        self._settle(row, self._call_gateway(row), in_request=False)
        return 1

    def _wake_rule(self, cmd: Command) -> None:
        row = payments_store.read_rule(cmd.conn, cmd.state.account_id)
        if row is None or row.paused_until_us is None or row.paused_until_us > cmd.now_us:
            return
        payments_store.set_paused_until(cmd.conn, cmd.state.account_id, None)
        woken = RuleRow(row.rule, None, row.updated_at_us)
        self._evaluate(cmd, woken, cmd.state.available_micros)

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            dues = [payments_store.next_payment_due(conn), payments_store.next_rule_due(conn)]
        known = [d for d in dues if d is not None]
        return from_micros(min(known)) if known else None


# -- messages a billing person can act on --------------------------------------------------
def _credit_description(row: PaymentRow) -> str:
    what = "auto-recharge" if row.kind == PaymentKind.AUTO.value else "payment"
    return f"{what} {public_id(row.id)}"


def _amount(cmd: Command, micros: int) -> str:
    return f"{cmd.state.currency} {Money(micros).display()}"


def _recharge_notice(
    cmd: Command,
    row: PaymentRow,
    final: PaymentStatus,
    result: GatewayResult,
    error: str | None,
    rule_row: RuleRow | None,
) -> Notice:
    account = cmd.state.account_id
    available = _amount(cmd, cmd.state.available_micros)
    amount = _amount(cmd, row.amount_micros)
    threshold = _amount(cmd, rule_row.rule.threshold.micros) if rule_row else None
    data: dict[str, object] = {
        "payment_id": public_id(row.id),
        "amount": Money(row.amount_micros).format(),
        "available_balance": Money(cmd.state.available_micros).format(),
        "threshold": rule_row.rule.threshold.format() if rule_row else None,
        "status": final.value,
        "gateway_reference": result.gateway_reference,
    }
    if final is PaymentStatus.SUCCEEDED:
        return Notice(
            "auto_recharge_succeeded",
            f"Auto-recharge added {amount} of paid credit to account {account} (payment "
            f"{public_id(row.id)}) after the available balance fell below {threshold}. "
            f"Available balance is now {available}.",
            data,
        )
    paused = rule_row.paused_until_us if rule_row else None
    retry = format_instant(from_micros(paused)) if paused is not None else "later"
    data["error"] = error
    data["next_attempt_after"] = retry if paused is not None else None
    return Notice(
        "auto_recharge_failed",
        f"Auto-recharge of {amount} for account {account} failed: {error}. Available "
        f"balance is {available}, below the auto-recharge threshold of {threshold}; when it "
        "reaches zero, outbound calls and messages stop. Update the payment method, or add "
        f"credit now in Billing > Add Credits. Auto-recharge tries again after {retry}, or at "
        "the next time the balance falls below the threshold after a top-up (saving the "
        "auto-recharge settings also lets it try again).",
        data,
    )


def _payment_notice(
    cmd: Command, row: PaymentRow, final: PaymentStatus, error: str | None
) -> Notice:
    amount = _amount(cmd, row.amount_micros)
    data: dict[str, object] = {
        "payment_id": public_id(row.id),
        "amount": Money(row.amount_micros).format(),
        "available_balance": Money(cmd.state.available_micros).format(),
        "status": final.value,
        "error": error,
    }
    if final is PaymentStatus.SUCCEEDED:
        return Notice(
            "payment_succeeded",
            f"Payment {public_id(row.id)} of {amount} for account {cmd.state.account_id} "
            f"went through: the credit was added. Available balance is now "
            f"{_amount(cmd, cmd.state.available_micros)}.",
            data,
        )
    return Notice(
        "payment_failed",
        f"Payment {public_id(row.id)} of {amount} for account {cmd.state.account_id} did not "
        f"go through: {error}. No credit was added. Check the payment method and try again "
        "in Billing > Add Credits.",
        data,
    )


def _daily_max_notice(
    cmd: Command, rule: AutoRechargeRule, started_today: int, until_us: int
) -> Notice:
    return Notice(
        "auto_recharge_limit_reached",
        f"Auto-recharge of account {cmd.state.account_id} has reached its maximum of "
        f"{rule.max_recharges_per_day} recharges today ({started_today} made), and the "
        f"available balance {_amount(cmd, cmd.state.available_micros)} is below the "
        f"threshold of {_amount(cmd, rule.threshold.micros)}. No more recharges until "
        f"{format_instant(from_micros(until_us))} (the next local day). Add credit in Billing "
        "> Add Credits, or raise the maximum in the auto-recharge settings.",
        {
            "max_recharges_per_day": rule.max_recharges_per_day,
            "recharges_today": started_today,
            "available_balance": Money(cmd.state.available_micros).format(),
            "threshold": rule.threshold.format(),
            "paused_until": format_instant(from_micros(until_us)),
        },
    )

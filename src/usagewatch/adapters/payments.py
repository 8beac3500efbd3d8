"""Payment gateway adapters. Built in: a simulated gateway for development, demos and tests.

A real provider's adapter implements `usagewatch.domain.payments.PaymentGateway` (one
method, `charge`) and is chosen in `gateway_from_settings`; see the README's "Payment
gateway" section for the contract (idempotency keys above all).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from usagewatch.domain.money import Money
from usagewatch.domain.payments import GatewayResult, GatewayStatus, PaymentGateway

OUTCOMES = ("succeed", "decline", "timeout")


@dataclass(frozen=True, slots=True)
class SimulatedCharge:
    account_id: str
    amount: Money
    idempotency_key: str
    reference: str


class SimulatedGateway:
    """Answers every charge with `outcome` (USAGEWATCH_SIMULATED_GATEWAY_OUTCOME):
    `succeed` charges, `decline` refuses, `timeout` gives no answer (`pending`), as a
    provider that is down or slow would.

    Like a real provider it remembers idempotency keys: a key that got a final answer gets
    the same answer again and is never charged twice; a key that timed out is decided
    afresh on the next call (the outcome may have been changed meanwhile, e.g. by a test:
    timeout, then succeed). A key reused for another account or amount is declined.
    Memory is per process: several processes sharing one database each simulate their own
    provider.
    """

    def __init__(self, outcome: str = "succeed") -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome is one of {OUTCOMES}")
        self.outcome = outcome
        self.calls = 0  # every call, replays and timeouts included
        self.charges: list[SimulatedCharge] = []  # money actually taken, once per key
        self._answers: dict[str, tuple[str, int, GatewayResult]] = {}
        self._lock = threading.Lock()

    def charge(self, account_id: str, amount: Money, idempotency_key: str) -> GatewayResult:
        with self._lock:
            self.calls += 1
            seen = self._answers.get(idempotency_key)
            if seen is not None:
                if seen[:2] != (account_id, amount.micros):
                    return GatewayResult(
                        GatewayStatus.DECLINED,
                        None,
                        "idempotency key reused for a different charge (simulated gateway)",
                    )
                return seen[2]
            if self.outcome == "timeout":
                return GatewayResult(
                    GatewayStatus.PENDING, None, "the payment provider did not answer in time"
                )
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
            if self.outcome == "decline":
                result = GatewayResult(
                    GatewayStatus.DECLINED,
                    f"sim_dec_{digest}",
                    "the card was declined (simulated gateway)",
                )
            else:
                reference = f"sim_ch_{digest}"
                result = GatewayResult(GatewayStatus.SUCCEEDED, reference, "charged")
                self.charges.append(SimulatedCharge(account_id, amount, idempotency_key, reference))
            self._answers[idempotency_key] = (account_id, amount.micros, result)
            return result


def gateway_from_settings(name: str, simulated_outcome: str) -> PaymentGateway:
    """The adapter named by USAGEWATCH_PAYMENT_GATEWAY."""
    if name == "simulated":
        return SimulatedGateway(simulated_outcome)
    raise ValueError(f"unknown payment gateway {name!r}")

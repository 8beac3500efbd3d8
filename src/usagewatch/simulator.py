"""A traffic simulator: calls, SMS and WhatsApp conversations over the HTTP API of any
usagewatch server, at a steady rate, so a balance moves and budgets and caps are reached
the way real traffic reaches them. Calls end, and SMS get their delivery report (about 95%
delivered, the rest failed), a few seconds after they start. Uses only the public API (a
platform key or the admin token) and the standard library."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

REQUEST_TIMEOUT_SECONDS = 10.0
RATE_PER_SECOND_MAX = 200.0
DELIVERY_DELAY_SECONDS = (1.0, 6.0)  # a delivery report arrives this long after its SMS
DELIVERED_PERCENT = 95  # of the SMS sent; the others' reports say failed


@dataclass
class Traffic:
    url: str
    token: str
    account_id: str
    rate_per_second: float = 2.0
    campaign_id: str | None = None
    seed: int | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    _open_calls: list[tuple[float, str, int]] = field(default_factory=list)
    # (when, sms_sid, status): delivery reports still to post
    _pending_reports: list[tuple[float, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.rate_per_second <= RATE_PER_SECOND_MAX:
            raise ValueError(f"rate is more than 0 and at most {RATE_PER_SECOND_MAX} per second")
        self.url = self.url.rstrip("/")
        self.rng = random.Random(self.seed)

    # -- HTTP ----------------------------------------------------------------------------
    def post(self, path: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(
            f"{self.url}/v1/accounts/{self.account_id}{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {}

    def _note(self, kind: str, status: int, body: dict[str, object]) -> str:
        if status < 300:
            outcome = f"{kind} ok"
        else:
            error = body.get("error")
            code = error.get("code") if isinstance(error, dict) else None
            outcome = f"{kind} refused: {code or status}"
        self.outcomes[outcome] += 1
        return outcome

    # -- one event -----------------------------------------------------------------------
    def step(self) -> str:
        """Send one event (after ending the calls and posting the delivery reports whose
        time has come); returns its outcome."""
        now = time.monotonic()
        self._send_due(now)
        sid = uuid.uuid4().hex[:16]
        kind = self.rng.choices(["sms", "call", "whatsapp"], [45, 30, 25])[0]
        campaign = self.campaign_id if self.rng.random() < 0.5 else None
        if kind == "sms":
            body: dict[str, object] = {
                "sms_sid": f"sim-{sid}",
                "type": "promotional"
                if campaign
                else self.rng.choice(["transactional", "service"]),
                "to": f"+9198{self.rng.randrange(10**8):08d}",
                "body": "Your order has shipped. Track it in the app." * self.rng.choice([1, 1, 4]),
                "consumer": "marketing-bot" if campaign else "otp-service",
            }
            if campaign:
                body["campaign_id"] = campaign
            status, answer = self.post("/sms", body)
            if status < 300:
                delivered = self.rng.randrange(100) < DELIVERED_PERCENT
                self._pending_reports.append(
                    (
                        now + self.rng.uniform(*DELIVERY_DELAY_SECONDS),
                        f"sim-{sid}",
                        "delivered" if delivered else "failed",
                    )
                )
            return self._note("sms", status, answer)
        if kind == "whatsapp":
            body = {
                "conversation_id": f"sim-{sid}",
                "category": "marketing" if campaign else self.rng.choice(["utility", "service"]),
                "consumer": "marketing-bot" if campaign else "order-updates",
            }
            if campaign:
                body["campaign_id"] = campaign
            status, answer = self.post("/whatsapp/conversations", body)
            return self._note("whatsapp", status, answer)
        body = {
            "call_sid": f"sim-{sid}",
            "direction": "outbound",
            "to": f"+9198{self.rng.randrange(10**8):08d}",
            "consumer": self.rng.choice(["support-desk", "sales-team"]),
        }
        status, answer = self.post("/calls", body)
        if status < 300:
            # The call "lasts" 3-20 s of wall time: its hold shows as Reserved meanwhile.
            duration = self.rng.randint(20, 400)
            self._open_calls.append((now + self.rng.uniform(3, 20), f"sim-{sid}", duration))
        return self._note("call", status, answer)

    def _send_due(self, now: float) -> None:
        """End the calls and post the delivery reports due by `now` (monotonic)."""
        for due in [c for c in self._open_calls if c[0] <= now]:
            self._open_calls.remove(due)
            status, ended = self.post(
                f"/calls/{due[1]}/end", {"status": "completed", "duration_seconds": due[2]}
            )
            self._note("call end", status, ended)
        for report in [r for r in self._pending_reports if r[0] <= now]:
            self._pending_reports.remove(report)
            _, sms_sid, outcome = report
            status, answer = self.post(f"/sms/{sms_sid}/status", {"status": outcome})
            self._note(f"sms report {outcome}", status, answer)

    def finish(self) -> None:
        """Post every pending delivery report and end every open call, now."""
        self._send_due(float("inf"))

    def run(
        self,
        stop: threading.Event,
        duration_seconds: float | None = None,
        report: Callable[[str], None] | None = None,
        report_every_seconds: float = 10.0,
    ) -> Counter[str]:
        """Send events at the rate until `stop` is set or the duration has passed."""
        interval = 1.0 / self.rate_per_second
        started = next_report = time.monotonic()
        next_at = started
        try:
            while not stop.is_set():
                now = time.monotonic()
                if duration_seconds is not None and now - started >= duration_seconds:
                    break
                if now < next_at:
                    stop.wait(next_at - now)
                    continue
                next_at += interval
                try:
                    self.step()
                except (urllib.error.URLError, OSError) as exc:
                    self.outcomes[f"network error: {exc}"] += 1
                    stop.wait(1.0)
                if report is not None and now >= next_report:
                    next_report = now + report_every_seconds
                    report(self.summary())
        finally:
            self.finish()
        return self.outcomes

    def summary(self) -> str:
        parts = [f"{name} {count}" for name, count in sorted(self.outcomes.items())]
        return "simulator: " + (", ".join(parts) if parts else "starting")

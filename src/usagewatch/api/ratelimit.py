"""The per-key request rate limit (API.md's 429): a token bucket for each API key, in each
server process.

A key may send `per_second` requests a second on average, and a burst of one second's worth
(a full bucket, at least one request) after a quiet spell. Past that a request is refused with 429
`rate_limited` before any work, with `Retry-After` saying when one token is back. The
operator's admin token is not limited (it is not a key). Time is the process's monotonic
clock, not the test clock: the limit protects the server, it is not a billing rule."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

# Buckets of keys idle long enough to be full again are dropped past this many keys.
KEYS_KEPT_MAX = 10_000


class RateLimiter:
    def __init__(self, per_second: float, now: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = max(1.0, per_second)  # one second's worth, and at least one request
        self._now = now
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()  # authentication also runs in worker threads

    def retry_after(self, key: str) -> int | None:
        """Take one request from `key`'s bucket: None when it may go ahead, else the whole
        seconds (at least 1) until it may."""
        if self.per_second <= 0:
            return None
        now = self._now()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.per_second)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return max(1, math.ceil((1 - tokens) / self.per_second))
            if key not in self._buckets and len(self._buckets) >= KEYS_KEPT_MAX:
                self._forget_full(now)
            self._buckets[key] = (tokens - 1, now)
            return None

    def _forget_full(self, now: float) -> None:
        full_after = self.burst / self.per_second  # seconds for an empty bucket to refill
        for key, (_, at) in list(self._buckets.items()):
            if now - at >= full_after:
                del self._buckets[key]

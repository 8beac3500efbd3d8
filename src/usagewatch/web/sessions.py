"""Dashboard sessions: a signed cookie, CSRF tokens, and the sign-in throttle.

The session is a small JSON payload in an HttpOnly, SameSite=Lax cookie, signed with
HMAC-SHA256 under the session secret (`USAGEWATCH_SESSION_SECRET`, else a random one
generated once and kept in `USAGEWATCH_SESSION_SECRET_FILE`). Nothing is stored on the
server, so sessions survive restarts and work across processes sharing the secret; a
session ends at sign-out (the cookie is cleared) or when its age passes
`USAGEWATCH_SESSION_MAX_AGE_SECONDS`. Every session, signed in or not, carries its own CSRF
token, which every form posts back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE_NAME = "uw_session"
SECRET_LENGTH_MIN = 32
PAYLOAD_BYTES_MAX = 2048


@dataclass(frozen=True, slots=True)
class Session:
    """What a cookie says. `user_id` is None before sign-in; the operator is `admin`."""

    csrf: str
    issued_at: int
    user_id: str | None = None
    account_id: str | None = None
    role: str | None = None
    email: str | None = None
    admin_fingerprint: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def with_account(self, account_id: str) -> Session:
        return Session(
            self.csrf,
            self.issued_at,
            self.user_id,
            account_id,
            self.role,
            self.email,
            self.admin_fingerprint,
        )


def new_session(**fields: str | None) -> Session:
    return Session(csrf=secrets.token_urlsafe(24), issued_at=int(time.time()), **fields)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, secret: bytes, max_age_seconds: int) -> None:
        assert len(secret) >= SECRET_LENGTH_MIN, "the session secret is too short"
        self._key = hashlib.sha256(b"usagewatch-session\x00" + secret).digest()
        self.max_age_seconds = max_age_seconds

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def dumps(self, session: Session) -> str:
        fields = {k: v for k, v in _fields(session).items() if v is not None}
        payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def loads(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None if it is missing, forged, malformed or old."""
        if not cookie or len(cookie) > PAYLOAD_BYTES_MAX:
            return None
        payload, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        try:
            fields = json.loads(_unb64(payload))
            session = Session(**fields)
        except (ValueError, TypeError):
            return None
        age = (time.time() if now is None else now) - session.issued_at
        if not 0 <= age <= self.max_age_seconds:
            return None
        return session


def _fields(session: Session) -> dict[str, object]:
    return {name: getattr(session, name) for name in Session.__slots__}


def csrf_matches(session: Session | None, submitted: str | None) -> bool:
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode())


def admin_fingerprint(admin_token_hash: str) -> str:
    """Ties an operator session to the admin token it was opened with: a new token ends it."""
    return hashlib.sha256(b"usagewatch-admin-session\x00" + admin_token_hash.encode()).hexdigest()[
        :32
    ]


def resolve_secret(secret: str | None, secret_file: str) -> bytes:
    """The configured secret, or the one kept in `secret_file` (created, mode 0600, with 256
    random bits the first time)."""
    if secret:
        if len(secret) < SECRET_LENGTH_MIN:
            raise ValueError(
                f"USAGEWATCH_SESSION_SECRET needs at least {SECRET_LENGTH_MIN} characters"
            )
        return secret.encode()
    path = Path(secret_file)
    if path.is_file():
        kept = path.read_text(encoding="ascii").strip()
        if len(kept) >= SECRET_LENGTH_MIN:
            return kept.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    generated = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(generated + "\n")
    return generated.encode()


class SignInThrottle:
    """Slows down repeated failed sign-ins, per email and per client address: after
    `free_failures` failures within `window_seconds`, each attempt waits 0.25 s * 2^(n - free),
    at most `delay_max_seconds`. A success clears the email's count. Bounded in memory."""

    def __init__(
        self,
        free_failures: int = 3,
        window_seconds: float = 900.0,
        delay_max_seconds: float = 8.0,
        keys_max: int = 10_000,
    ) -> None:
        self.free_failures = free_failures
        self.window_seconds = window_seconds
        self.delay_max_seconds = delay_max_seconds
        self.keys_max = keys_max
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def _count(self, key: str, now: float) -> int:
        count, last = self._failures.get(key, (0, 0.0))
        return count if now - last <= self.window_seconds else 0

    def delay_seconds(self, keys: tuple[str, ...], now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            count = max(self._count(k, now) for k in keys)
        over = count - self.free_failures
        if over < 0:
            return 0.0
        return float(min(self.delay_max_seconds, 0.25 * 2**over))

    def failed(self, keys: tuple[str, ...], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) >= self.keys_max:
                oldest = sorted(self._failures.items(), key=lambda kv: kv[1][1])
                for key, _ in oldest[: self.keys_max // 10 or 1]:
                    del self._failures[key]
            for key in keys:
                self._failures[key] = (self._count(key, now) + 1, now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

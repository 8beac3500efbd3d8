"""Delivery channels: email over SMTP, SMS through an HTTP gateway, signed webhooks. Each
`send` raises `DeliveryError` with a short reason when the message did not go out; the
delivery worker records it and retries."""

from __future__ import annotations

import ipaddress
import json
import smtplib
import socket
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx

from usagewatch.config import Settings
from usagewatch.domain import webhooks

TIMEOUT_SECONDS = 10.0


class DeliveryError(Exception):
    pass


class UnsafeUrl(ValueError):
    pass


def check_webhook_url(url: str, allow_private: bool) -> str:
    """An http(s) URL whose host resolves only to public addresses (server-side request
    forgery: no loopback, private, link-local, multicast or reserved targets) unless
    `allow_private`. Raises UnsafeUrl."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("a webhook URL is http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeUrl("a webhook URL carries no credentials")
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"cannot resolve {parts.hostname!r}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise UnsafeUrl(f"{parts.hostname!r} resolves to a non-public address {address}")
    return url


class Channels:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def email(
        self,
        to: str,
        subject: str,
        text: str,
        attachments: list[tuple[str, str, bytes]] | None = None,
    ) -> str:
        s = self.settings
        if not s.smtp_host:
            raise DeliveryError("smtp not configured (USAGEWATCH_SMTP_HOST)")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = s.smtp_from, to, subject
        message.set_content(text)
        for filename, mime, data in attachments or []:
            main, sub = mime.split("/", 1)
            message.add_attachment(data, maintype=main, subtype=sub, filename=filename)
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=TIMEOUT_SECONDS) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_user and s.smtp_password:
                    smtp.login(s.smtp_user, s.smtp_password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"smtp: {exc}"[:300]) from exc
        return f"accepted by {s.smtp_host}"

    def sms(self, to: str, text: str, reference: str) -> str:
        url = self.settings.sms_gateway_url
        if not url:
            raise DeliveryError("sms gateway not configured (USAGEWATCH_SMS_GATEWAY_URL)")
        body = {"to": to, "body": text, "reference": reference}
        return self._post(url, json.dumps(body).encode(), {})

    def webhook(self, url: str, secret: str, message_id: str, timestamp: int, payload: Any) -> str:
        try:
            check_webhook_url(url, self.settings.webhook_allow_private)
        except UnsafeUrl as exc:
            raise DeliveryError(str(exc)) from exc
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhooks.sign(secret, message_id, timestamp, body),
        }
        return self._post(url, body, headers)

    @staticmethod
    def _post(url: str, body: bytes, headers: dict[str, str]) -> str:
        try:
            response = httpx.post(
                url,
                content=body,
                headers={"content-type": "application/json", **headers},
                timeout=TIMEOUT_SECONDS,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}")
        return f"HTTP {response.status_code}"

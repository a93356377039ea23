"""SMS sending with pluggable backends, chosen by settings.SMS_BACKEND."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from .phones import mask

logger = logging.getLogger(__name__)


class SmsError(Exception):
    """The message could not be handed to the gateway; the caller may retry."""


class SmsBackend(Protocol):
    # `key` is the same for every attempt at one message: a gateway that honours it sends the
    # message once however often it is handed over.
    def send(self, *, phone: str, body: str, key: str = "") -> None: ...


class ConsoleOutboxBackend:
    """For the embedded demo and tests: keeps messages in the database for the dev outbox page."""

    def send(self, *, phone: str, body: str, key: str = "") -> None:
        from .models import SmsOutboxMessage

        SmsOutboxMessage.objects.create(phone=phone, body=body)
        logger.info("sms to %s queued in the console outbox (%d chars)", mask(phone), len(body))


class HttpGatewayBackend:
    """POSTs JSON {"phone", "text"} to SMS_GATEWAY_URL with a bearer token and the message's
    `Idempotency-Key`; retries with backoff on connection errors and 5xx answers, gives up at once
    on 4xx (a retry would not help)."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = url or settings.SMS_GATEWAY_URL
        self.token = token or settings.SMS_GATEWAY_TOKEN
        if not self.url.startswith(("https://", "http://")):
            raise SmsError("SMS_GATEWAY_URL must be an http(s) URL")

    def send(self, *, phone: str, body: str, key: str = "") -> None:
        payload = json.dumps({"phone": phone, "text": body}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        if key:
            headers["Idempotency-Key"] = key
        last_error = ""
        for attempt in range(settings.SMS_GATEWAY_RETRIES):
            request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                self.url,
                data=payload,
                headers=headers,
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=settings.SMS_GATEWAY_TIMEOUT) as resp:  # noqa: S310
                    if 200 <= resp.status < 300:
                        return
                    last_error = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500:
                    raise SmsError(f"gateway refused the message: HTTP {exc.code}") from exc
                last_error = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                last_error = type(exc).__name__
            logger.warning(
                "sms to %s failed (attempt %d): %s", mask(phone), attempt + 1, last_error
            )
            time.sleep(min(0.2 * 2**attempt, 2.0))
        raise SmsError(f"gateway unreachable: {last_error}")


def get_backend() -> SmsBackend:
    return import_string(settings.SMS_BACKEND)()

"""Errors to Sentry (or a service that speaks its protocol), only when SENTRY_DSN is set.

Nothing personal leaves with an event: no user or address (`send_default_pii=False`), no request
body (sign-in forms carry phone numbers), no local variables of the failing frames, and of the
request only its method, path and a few harmless headers (query strings can hold a number too).
"""

from __future__ import annotations

KEPT_HEADERS = {"host", "user-agent", "accept-language", "x-request-id", "content-type"}


def scrub(event: dict, hint: dict) -> dict:
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("query_string", "cookies", "data", "env"):
            request.pop(key, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() in KEPT_HEADERS}
        url = request.get("url")
        if isinstance(url, str):
            request["url"] = url.split("?", 1)[0]
    event.pop("user", None)
    return event


def init(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        before_send=scrub,
        traces_sample_rate=traces_sample_rate,
    )

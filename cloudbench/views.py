"""The operator's endpoints: liveness, readiness, metrics, and the HLS playlist fetches nginx
mirrors here so that HLS viewers can be counted."""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from cloudbench import health, metrics
from cloudbench.client_address import address_in, client_ip

PLAYLIST_PATH = re.compile(r"/([A-Za-z0-9_-]{1,64})/[A-Za-z0-9_.-]{1,64}\.m3u8$")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    ready, checks = health.readiness()
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not address_in(client_ip(request), settings.METRICS_ALLOWED_IPS):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    from prometheus_client import CONTENT_TYPE_LATEST

    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


@csrf_exempt
@never_cache
def hls_playlist_seen(request: HttpRequest) -> HttpResponse:
    """nginx mirrors every HLS playlist request here (``X-Original-URI``); outside requests to
    this path are refused by nginx. Counts a distinct client (address and browser) per stream."""
    match = PLAYLIST_PATH.search(request.headers.get("X-Original-URI", "").split("?", 1)[0])
    if match is None:
        return HttpResponse(status=400)
    agent = hashlib.blake2s(request.headers.get("User-Agent", "").encode(), digest_size=4)
    metrics.hls_playlist_fetched(match.group(1), f"{client_ip(request)}|{agent.hexdigest()}")
    return HttpResponse(status=204)

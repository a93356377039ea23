"""Fixed-window rate limits kept in the cache (Redis in production and tests), shared by every
process: look-ups, comments, WebSocket messages."""

from __future__ import annotations

import time

from django.core.cache import cache


def allow(key: str, *, limit: int, period: int) -> bool:
    """Count one hit on `key`; False once more than `limit` hits fell in the current window of
    `period` seconds."""
    window = int(time.time() // period)
    cache_key = f"rl:{key}:{window}"
    # add() is atomic: only the first hit of a window creates the counter.
    if cache.add(cache_key, 1, timeout=period + 1):
        return True
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add() and incr()
        cache.add(cache_key, 1, timeout=period + 1)
        return True
    return count <= limit


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"

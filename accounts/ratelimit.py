"""Fixed-window rate limits kept in the cache (Redis in production and tests), shared by every
process: look-ups, comments, WebSocket messages."""

from __future__ import annotations

import time

from django.conf import settings
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


# Sign-in code guessing. allauth ends one pending sign-in after a few wrong codes, but a guesser
# can ask for a new code and keep going; this counts wrong codes per account across codes and,
# past the limit, refuses codes for that account (even the right one) until the lockout ends.
# The deadline is kept as a timestamp in the value, so that it is checked against the clock.


def _code_failures_key(user_id: int) -> str:
    return f"signin:code-failures:{user_id}"


def _code_lock_key(user_id: int) -> str:
    return f"signin:code-lock:{user_id}"


def code_failure_record(user_id: int) -> None:
    """One wrong sign-in code for this account; locks it once the limit is reached."""
    limit = settings.LOGIN_CODE_LOCKOUT_FAILURES
    period = settings.LOGIN_CODE_LOCKOUT_SECONDS
    key = _code_failures_key(user_id)
    if cache.add(key, 1, timeout=period):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:
            cache.add(key, 1, timeout=period)
            count = 1
    if count >= limit:
        cache.set(_code_lock_key(user_id), time.time() + period, timeout=period + 60)
        cache.delete(key)


def code_lockout_remaining(user_id: int) -> int:
    """Seconds until this account may sign in with a code again; 0 when it is not locked."""
    until = cache.get(_code_lock_key(user_id))
    if until is None:
        return 0
    return max(0, int(until - time.time() + 0.999))


class MessageBudget:
    """A token bucket for one WebSocket connection's messages (kept in memory: a socket lives
    in one process). ``take()`` says whether a message may be handled; ``rejected`` counts the
    refused ones, so that a consumer can warn once in a while and close a socket that keeps
    flooding."""

    def __init__(self, *, per_second: float, burst: float) -> None:
        self.per_second = per_second
        self.burst = burst
        self.tokens = burst
        self.rejected = 0
        self._refilled = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.rejected += 1
        return False

    @property
    def should_warn(self) -> bool:
        return self.rejected == 1 or self.rejected % 10 == 0

"""Guards for the Celery beat jobs: one run at a time across workers, and a record of each run.

The lock only saves work; correctness under a double run comes from the database (unique
constraints, row locks) and the notifications' dedupe keys."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.utils import timezone

LOCK_TTL = 15 * 60


def run_key(name: str) -> str:
    return f"periodic:runs:{name}"


def last_run(name: str) -> dict[str, Any] | None:
    return cache.get(f"periodic:last:{name}")


def runs_finished(name: str) -> int:
    return int(cache.get(run_key(name)) or 0)


def run_exclusive(name: str, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `job` unless another worker is running the same job; record the outcome."""
    lock = f"periodic:lock:{name}"
    token = secrets.token_hex(8)
    if not cache.add(lock, token, LOCK_TTL):
        _count(name)
        return {"skipped": "already running"}
    try:
        outcome = job()
    finally:
        if cache.get(lock) == token:
            cache.delete(lock)
    cache.set(
        f"periodic:last:{name}",
        {"finished_at": timezone.now().isoformat(), **outcome},
        timeout=None,
    )
    _count(name)
    return outcome


def _count(name: str) -> None:
    """Count finished executions (including ones that found the job already running)."""
    cache.add(run_key(name), 0, timeout=None)
    cache.incr(run_key(name))

"""Liveness and readiness of an installation, for load balancers, compose health checks and
``manage.py healthcheck``.

Readiness asks each dependency once and says, per check, ``"ok"`` or what is wrong:
the database, Redis (when configured: the embedded setup has none), at least one media node alive
by its heartbeat, and a Celery worker answering a ping (tasks run inline in the embedded setup).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection

OK = "ok"
CELERY_PING_TIMEOUT = 1.0


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return OK


def check_redis() -> str:
    if not settings.REDIS_URL:
        return OK  # the in-memory channel layer and cache: nothing to reach
    import redis

    client = redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return OK


def check_media_node() -> str:
    from streaming import heartbeat

    if settings.MEDIA_NODE_INPROCESS and not settings.REDIS_URL:
        # The node lives in this process and starts with the first room; once started it beats.
        from streaming.node import worker

        task = worker._worker_task
        if task is None:
            return OK
        if task.done():
            return "the in-process media node has stopped"
    if heartbeat.alive_nodes():
        return OK
    return f"no media node heartbeat in the last {settings.MEDIA_NODE_HEARTBEAT_TTL:g} s"


def check_celery() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return OK  # tasks run inline
    from cloudbench.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        replies = app.control.ping(timeout=CELERY_PING_TIMEOUT, limit=1, connection=conn)
    if replies:
        return OK
    return f"no Celery worker answered a ping within {CELERY_PING_TIMEOUT:g} s"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "redis": check_redis,
    "media_node": check_media_node,
    "celery": check_celery,
}


def readiness(names: list[str] | None = None) -> tuple[bool, dict[str, str]]:
    """Run the checks (all, or those named); True when every one said ok."""
    results: dict[str, str] = {}
    for name in names or list(CHECKS):
        try:
            results[name] = CHECKS[name]()
        except Exception as exc:  # noqa: BLE001 - the check's answer is what went wrong
            results[name] = f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
    return all(value == OK for value in results.values()), results

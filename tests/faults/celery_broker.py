"""Point this test process's Celery app at another broker (a private Redis) for a while."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cloudbench.celery import app


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    saved = app.conf.broker_url, app.conf.task_always_eager
    app.close()  # drop the pooled connections to the old broker
    app.conf.broker_url = url
    app.conf.task_always_eager = False
    try:
        yield
    finally:
        app.close()
        app.conf.broker_url, app.conf.task_always_eager = saved

"""Point this test process's Celery app at another broker (a private Redis) for a while."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from celery import _state

from cloudbench.celery import app


def _forget_connections() -> None:
    # app.close() drops the connection pool but not the producer pool, whose connections still
    # point at the broker used before (what celery does after a fork, done here by hand)
    app.close()
    # close() also takes the app off Celery's list of active apps, and a task module imported
    # after that (a @shared_task) would then register with no app: put it back.
    _state._register_app(app)
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    saved = app.conf.broker_url, app.conf.task_always_eager
    _forget_connections()
    app.conf.broker_url = url
    app.conf.task_always_eager = False
    try:
        yield
    finally:
        _forget_connections()
        app.conf.broker_url, app.conf.task_always_eager = saved

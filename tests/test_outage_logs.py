"""A service that is down is in the log as a few lines an operator can read, not as a traceback a
second: the channel layer's retries of Redis (cloudbench.logs.OutageFilter, configured for
channels_redis in settings.LOGGING) and a notification whose task cannot be queued."""

import io
import logging

import pytest
import redis.exceptions

from accounts import services
from accounts.models import Channel, Notification
from cloudbench.logs import OutageFilter
from tests.e2e.conftest import _free_port
from tests.faults.celery_broker import celery_broker


@pytest.fixture
def pubsub_log(monkeypatch):
    """What channels_redis's pub/sub logger lets through, on a clock the test moves."""
    logger = logging.getLogger("channels_redis.pubsub")
    # settings.LOGGING puts it there; dictConfig adds filters without removing any, so a process
    # that configured logging again (a Celery worker started in it calls django.setup()) has more
    outages = [f for f in logger.filters if isinstance(f, OutageFilter)]
    assert outages
    for outage in outages:
        monkeypatch.setattr(outage, "_reported", {})
    clock = [1000.0]
    monkeypatch.setattr("cloudbench.logs.time.monotonic", lambda: clock[0])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    yield logger, clock, stream
    logger.removeHandler(handler)


def _receive_task_fails(logger, exc: Exception) -> None:
    # as channels_redis's receive task reports each failed attempt
    try:
        raise exc
    except Exception:
        logger.exception("Unexpected exception in receive task")


def test_redis_down_for_a_minute_is_two_lines_and_another_error_keeps_its_traceback(pubsub_log):
    logger, clock, stream = pubsub_log
    refused = redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6390.")
    for _ in range(60):  # a retry a second
        _receive_task_fails(logger, refused)
        clock[0] += 1
    _receive_task_fails(logger, refused)
    _receive_task_fails(logger, ValueError("not a connection failure"))

    lines = stream.getvalue().splitlines()
    assert lines[:2] == [
        "ERROR Unexpected exception in receive task: ConnectionError: "
        "Error 111 connecting to 127.0.0.1:6390.",
        "ERROR Unexpected exception in receive task: ConnectionError: "
        "Error 111 connecting to 127.0.0.1:6390. (59 more like it since the last report)",
    ]
    assert lines[2] == "ERROR Unexpected exception in receive task"
    assert lines[3].startswith("Traceback") and lines[-1] == "ValueError: not a connection failure"
    assert stream.getvalue().count("Traceback") == 1


def test_a_timeout_or_a_refused_socket_counts_as_the_service_being_down(pubsub_log):
    logger, clock, stream = pubsub_log
    _receive_task_fails(logger, ConnectionRefusedError(111, "Connection refused"))
    _receive_task_fails(logger, redis.exceptions.TimeoutError("Timeout reading from socket"))
    clock[0] += 61
    _receive_task_fails(logger, redis.exceptions.TimeoutError("Timeout reading from socket"))
    assert stream.getvalue().splitlines() == [
        "ERROR Unexpected exception in receive task: ConnectionRefusedError: "
        "[Errno 111] Connection refused",
        "ERROR Unexpected exception in receive task: TimeoutError: Timeout reading from socket "
        "(1 more like it since the last report)",
    ]


@pytest.mark.django_db
def test_a_notification_queued_while_the_broker_is_down_is_one_warning_and_stays_queued(
    django_capture_on_commit_callbacks, caplog
):
    dead_broker = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    with (
        celery_broker(dead_broker),
        caplog.at_level(logging.WARNING),
        django_capture_on_commit_callbacks(execute=True),
    ):
        notification = services.notification_send(
            channel=Channel.SMS,
            kind="hearing_reminder",
            body="提醒",
            dedupe_key="outage-log",
            phone="17700000001",
        )

    notification.refresh_from_db()
    assert notification.status == Notification.Status.QUEUED
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.name == "accounts.services" and record.exc_info is None
    assert record.getMessage().startswith(
        f"notification {notification.pk} stays queued until the resend sweep: "
        "the broker is unreachable"
    )

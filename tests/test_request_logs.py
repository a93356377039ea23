"""The request id: set from the proxy's X-Request-ID (or made here), answered back, carried in the
Celery message of every task the request queues and restored by the worker, so the task's log lines
name the request; LOG_FORMAT=json writes one JSON object per line."""

import io
import json
import logging
import os
import subprocess
import sys

import pytest
from django.conf import settings

from accounts.models import Notification, SmsOutboxMessage
from cloudbench.logs import JsonFormatter, RequestIdFilter
from tests.factories import UserFactory
from tests.waits import wait_for


@pytest.fixture
def sms_log():
    """JSON lines logged by the SMS backend, which runs inside the delivery task."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("accounts.sms")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


def _task_lines(stream: io.StringIO, phone: str) -> list[dict]:
    """The backend logs inside the task's transaction: the lines are all there once the
    notification's delivery has committed."""
    wait_for(
        lambda: Notification.objects.filter(phone=phone, status=Notification.Status.SENT).exists(),
        f"the delivery to {phone} to commit",
        20,
    )
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.worker
def test_a_sign_in_code_s_delivery_task_logs_the_request_s_id(client, celery_worker_real, sms_log):
    UserFactory(phone="+8613800138811")

    response = client.post(
        "/accounts/login/code/", {"phone": "13800138811"}, HTTP_X_REQUEST_ID="edge-4f2a9c01d3"
    )

    assert response["X-Request-ID"] == "edge-4f2a9c01d3"
    (line,) = _task_lines(sms_log, "+8613800138811")
    assert line["request_id"] == "edge-4f2a9c01d3"
    assert line["logger"] == "accounts.sms" and line["level"] == "INFO"
    assert "console outbox" in line["message"]
    assert SmsOutboxMessage.objects.filter(phone="+8613800138811").count() == 1


@pytest.mark.worker
def test_a_forged_request_id_is_replaced_by_a_fresh_one(client, celery_worker_real, sms_log):
    UserFactory(phone="+8613800138812")

    response = client.post(
        "/accounts/login/code/",
        {"phone": "13800138812"},
        HTTP_X_REQUEST_ID='x" , "level": "CRITICAL\n' + "y" * 100,
    )

    made_here = response["X-Request-ID"]
    assert len(made_here) == 32 and made_here.isalnum()
    (line,) = _task_lines(sms_log, "+8613800138812")
    assert line["request_id"] == made_here and line["level"] == "INFO"


def test_every_response_carries_a_request_id(client, db):
    first, second = client.get("/"), client.get("/")
    assert first["X-Request-ID"] != second["X-Request-ID"]


JSON_PROBE = r"""
import logging, os
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "cloudbench.settings"
django.setup()
from cloudbench.logs import request_id
request_id.set("probe-0123456789")
logging.getLogger("cloudbench.probe").info("hearing %s opened", "H1")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("cloudbench.probe").exception("it broke")
"""


def _probe(log_format: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOG_FORMAT": log_format}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [sys.executable, "-c", JSON_PROBE],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_log_format_json_writes_one_object_per_line():
    result = _probe("json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert len(lines) == len(result.stderr.splitlines()), result.stderr

    info, error = (line for line in lines if line["logger"] == "cloudbench.probe")
    assert info["message"] == "hearing H1 opened" and info["level"] == "INFO"
    assert info["request_id"] == "probe-0123456789"
    assert info["timestamp"].endswith("+00:00")
    assert error["level"] == "ERROR" and error["exception"]["type"] == "ZeroDivisionError"
    assert "ZeroDivisionError: division by zero" in error["exception"]["traceback"]


def test_plain_logs_stay_the_default():
    result = _probe("plain")
    assert result.returncode == 0, result.stderr
    assert "INFO cloudbench.probe: hearing H1 opened" in result.stderr
    assert not any(line.startswith("{") for line in result.stderr.splitlines())


def test_an_unknown_log_format_is_refused():
    result = _probe("xml")
    assert result.returncode != 0 and "LOG_FORMAT" in result.stderr


def test_a_websocket_connection_has_one_request_id_for_its_lifetime():
    import asyncio

    from cloudbench.logs import RequestIdASGIMiddleware, request_id

    seen = []

    async def app(scope, receive, send):
        seen.append((scope["request_id"], request_id.get()))

    async def call(headers):
        scope = {"type": "websocket", "path": "/ws/x/", "headers": headers}
        await RequestIdASGIMiddleware(app)(scope, None, None)

    asyncio.run(call([(b"x-request-id", b"edge-77aa00bb11")]))
    asyncio.run(call([(b"x-request-id", b"<script>")]))

    assert seen[0] == ("edge-77aa00bb11", "edge-77aa00bb11")
    assert seen[1][0] == seen[1][1] and len(seen[1][0]) == 32
    assert request_id.get() is None

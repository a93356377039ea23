"""Log lines an operator can follow: a request id that a request carries into the Celery tasks it
queues, and (with LOG_FORMAT=json) one JSON object per line.

The id comes from the proxy's `X-Request-ID` when it looks like one (nginx sets it from its own
`$request_id`, overwriting whatever the client sent) and is made here otherwise. It lives in a
context variable: set by `RequestIdMiddleware` (HTTP) and `RequestIdASGIMiddleware` (WebSockets),
put into a task's message headers when the task is published and restored in the worker before the
task runs.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import re
import signal
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from celery import signals
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
TASK_HEADER = "request_id"
# What a proxy's id looks like (nginx's $request_id is 32 hex digits; a UUID passes too). Anything
# else, or anything longer, is not copied into our logs: a fresh id is made instead.
_VALID = re.compile(r"[A-Za-z0-9._-]{8,64}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


# `kill -USR2 <pid>` of a web process or a media node: every thread's stack, into its log
STACKS_SIGNAL = signal.SIGUSR2


def dump_stacks_on_signal() -> None:
    """On STACKS_SIGNAL, write the stack of every thread of this process to its standard error (its
    log), and go on: what a process that stopped answering is doing. faulthandler writes from the
    signal handler itself, in C, so this works even while the main thread is stuck inside a C
    call, where a Python signal handler would never run.

    On a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT: a crash in native code, such as
    a codec's) the stacks are written too, before the process dies; without them such a process
    just stops, with nothing in its log."""
    faulthandler.register(STACKS_SIGNAL, all_threads=True)
    faulthandler.enable(all_threads=True)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | bytes | None) -> str:
    """The id to use for a request that arrived with `value` in its X-Request-ID header."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _VALID.fullmatch(value):
        return value
    return new_request_id()


class RequestIdMiddleware:
    """Sets the request's id for everything logged while it is served, and answers with it."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _begin(self, request: HttpRequest):
        request.request_id = accept_request_id(request.headers.get(HEADER))
        return request_id.set(request.request_id)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = self._begin(request)
        try:
            response: HttpResponse = self.get_response(request)
        finally:
            request_id.reset(token)
        response[HEADER] = request.request_id
        return response

    async def __acall__(self, request: HttpRequest):
        token = self._begin(request)
        try:
            response: HttpResponse = await self.get_response(request)
        finally:
            request_id.reset(token)
        response[HEADER] = request.request_id
        return response


class RequestIdASGIMiddleware:
    """The same for a WebSocket: one id for the connection, in `scope["request_id"]` too."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        sent = dict(scope.get("headers") or []).get(HEADER.lower().encode())
        rid = accept_request_id(sent)
        token = request_id.set(rid)
        try:
            return await self.app({**scope, "request_id": rid}, receive, send)
        finally:
            request_id.reset(token)


# --- Celery: the id travels in the task message's headers ---------------------------------------


@signals.before_task_publish.connect(weak=False)
def _publish_request_id(headers=None, **kwargs) -> None:
    rid = request_id.get()
    if rid and headers is not None:
        headers[TASK_HEADER] = rid


_task_tokens: dict[str, object] = {}


@signals.task_prerun.connect(weak=False)
def _restore_request_id(task_id=None, task=None, **kwargs) -> None:
    rid = getattr(task.request, TASK_HEADER, None) if task is not None else None
    if rid and task_id:
        _task_tokens[task_id] = request_id.set(accept_request_id(rid))


@signals.task_postrun.connect(weak=False)
def _forget_request_id(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        request_id.reset(token)


# --- logging ------------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or None) on every record, for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def is_connection_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` says a service (Redis, the broker) could not be reached."""
    if exc is None:
        return False
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, OSError | RedisConnectionError | RedisTimeoutError | OperationalError)


class OutageFilter(logging.Filter):
    """For a logger that reports a service it cannot reach once a second, with a traceback each
    time (channels_redis's receive task, retrying Redis): the first such report as one line, then
    one line a minute with how many were left out. Records of other exceptions pass as they are."""

    EVERY = 60.0

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._reported: dict[str, tuple[float, int]] = {}  # logger -> (when, left out since)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not is_connection_failure(exc):
            return True
        now = time.monotonic()
        last, left_out = self._reported.get(record.name, (None, 0))
        if last is not None and now - last < self.EVERY:
            self._reported[record.name] = (last, left_out + 1)
            return False
        self._reported[record.name] = (now, 0)
        more = f" ({left_out} more like it since the last report)" if left_out else ""
        record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}{more}"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC), level, logger, message, request_id, and the
    exception (type, text, traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = {
                "type": record.exc_info[0].__name__,
                "message": str(record.exc_info[1]),
                "traceback": self.formatException(record.exc_info),
            }
        elif record.exc_text:
            entry["exception"] = {"traceback": record.exc_text}
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

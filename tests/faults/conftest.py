"""Services the fault tests break on purpose: a private Redis, daphne processes that are killed
and restarted on the same port, Celery workers in their own processes.

The machine's shared Redis (6379) is never stopped: each test that takes Redis away starts its own
`redis-server` on a free port and stops that one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from tests.e2e.conftest import (  # noqa: F401  (fixtures used by the tests here)
    ARTIFACTS,
    LiveServer,
    _database_url,
    _free_port,
    browser,
)
from tests.faults.redis_server import REDIS_SERVER, PrivateRedis


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    if not Path(REDIS_SERVER).exists():
        pytest.fail(f"redis-server not found at {REDIS_SERVER}: install Debian's redis-server")
    server = PrivateRedis(tmp_path, _free_port())
    try:
        yield server
    finally:
        server.stop()
        server.log.close()


@pytest.fixture
def server_factory(transactional_db) -> Iterator:
    """server_factory(**env) -> a LiveServer (daphne) that the test may kill and restart."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    servers: list[LiveServer] = []

    def make(**extra_env: str) -> LiveServer:
        env = {"CHANNEL_PREFIX": f"faults-{uuid.uuid4().hex[:8]}", "ICE_SERVERS": "[]"}
        env.update(extra_env)
        server = LiveServer(env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    connection.close()


def session_cookie(user, url: str) -> dict:
    """A signed-in session for a browser context (made before Playwright's loop runs here)."""
    client = Client()
    client.force_login(user)
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": url,
    }


def cookie_for(user) -> str:
    """A signed-in session as a `Cookie` header value, for a WebSocket client."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


class Worker:
    """`celery worker` in its own process (solo pool: the task runs in the process we kill)."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.log = open(log_dir / f"celery-{name}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cloudbench",
                "worker",
                "--pool",
                "solo",
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                *extra_args,
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        with open(self.log.name) as log:
            return "ready." in log.read()

    def output(self) -> str:
        with open(self.log.name) as log:
            return log.read()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "CELERY_EAGER": "0",
        "PYTHONPATH": str(settings.BASE_DIR),
        **extra,
    }


@pytest.fixture
def worker_factory(transactional_db, tmp_path) -> Iterator:
    workers: list[Worker] = []

    def make(name: str, env: dict[str, str], *extra_args: str) -> Worker:
        worker = Worker(name, env, tmp_path, extra_args)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()

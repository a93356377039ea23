"""`cloudbench.serve`: several daphne processes on one socket, a dead one started again."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from django.conf import settings

from tests.e2e.conftest import _database_url, _free_port


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return response.status


def _children(proc: subprocess.Popen) -> set[int]:
    """The launcher's live daphne processes (a killed one is a zombie until it is reaped)."""
    pids = set()
    for child in psutil.Process(proc.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "cloudbench.webserver" in child.cmdline():
                pids.add(child.pid)
        except psutil.Error:
            continue
    return pids


def _wait(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_two_processes_serve_one_port_and_a_killed_one_comes_back(transactional_db):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudbench.serve", "--workers", "2", "-p", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
    )
    try:
        first = _wait(lambda: len(_children(proc)) == 2 and _children(proc))
        _wait(lambda: _get(url) == 200)
        assert all(_get(url) == 200 for _ in range(10))
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        # The other process goes on answering meanwhile.
        assert all(_get(url) == 200 for _ in range(5))
        again = _wait(lambda: len(_children(proc)) == 2 and _children(proc) - {victim})
        assert victim not in again and len(again) == 2
        _wait(lambda: _get(url) == 200)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0


def test_more_than_one_process_needs_redis():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "cloudbench.serve", "--workers", "2", "-p", str(_free_port())],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "REDIS_URL" in out.stderr


@pytest.fixture(autouse=True)
def _no_leftovers():
    yield
    for p in psutil.Process().children(recursive=True):
        p.kill()

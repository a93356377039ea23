"""`cloudbench.serve`: several daphne processes on one socket, a dead one started again, and a
rolling restart (SIGHUP) that live viewers ride through."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import psutil
import pytest
from django.conf import settings
from django.test import Client

from cloudbench.serve import CLOSE_RESTART
from tests.e2e.conftest import _database_url, _free_port
from tests.factories import UserFactory, advance, make_case, make_expert
from tests.faults.live_client import LiveClient, WatchClient

# serve's processes and their viewers, timed against the clock
pytestmark = pytest.mark.realtime


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
        [sys.executable, "-m", "cloudbench.serve", "--workers", "2", "--spares", "0"]
        + ["-p", str(port)],
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
        again = _wait(lambda: len(_children(proc)) == 2 and _children(proc) - {victim}, 120)
        assert victim not in again and len(again) == 2
        _wait(lambda: _get(url) == 200)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0


def _serve(port: int, log, *args: str, **extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cloudbench.serve", *args, "-p", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _said(log, text: str) -> int:
    with open(log.name) as f:
        return f.read().count(text)


def _cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


VIEWERS = 15
# Generous: on a quiet machine a viewer is back in well under a second; on the machine these
# tests share, loaded twenty to sixty times over, it took up to ten.
BOUND = 30.0


def test_sighup_replaces_each_process_and_viewers_move_at_once_losing_nothing(
    transactional_db, tmp_path
):
    applicant, expert = UserFactory(), make_expert()
    hearing = advance(
        make_case(applicant=applicant, respondent=UserFactory()), "in_session", expert=expert
    )
    # ten posters: each stays under the per-user comment limit (10 in 30 s) however long
    # the restart takes on a busy machine
    posters = [_cookie(UserFactory()) for _ in range(10)]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    shared = {
        "CHANNEL_PREFIX": f"serve-{uuid.uuid4().hex[:8]}",
        "MEDIA_NODE_INPROCESS": "0",  # the node is its own process, as deployed
        "ICE_SERVERS": "[]",
    }
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    node_log = open(tmp_path / "medianode.log", "w")  # noqa: SIM115
    node = subprocess.Popen(
        [sys.executable, "manage.py", "medianode"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": _database_url(), **shared},
        stdout=node_log,
        stderr=subprocess.STDOUT,
    )
    proc = _serve(port, log, "--workers", "2", "--spares", "0", **shared)
    try:
        _wait(lambda: _said(log, "ready after") == 2, timeout=120)
        before = _children(proc)
        figures = asyncio.run(_ride_through_sighup(proc, log, base, hearing.public_id, posters))
        after = _children(proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        node.terminate()
        node.wait(timeout=15)
        log.close()
        node_log.close()
        print(open(log.name).read()[-4000:])
    print("gaps (s) per viewer, comment socket:", figures["live"])
    print("gaps (s) per viewer, watch socket:  ", figures["watch"])

    assert len(before) == 2 and len(after) == 2
    assert not before & after, (before, after)  # every process was replaced
    assert proc.returncode == 0
    # every viewer was moved once, by the close code that says "reconnect now", and came back
    # within the bound
    assert figures["codes"] == [[CLOSE_RESTART]] * (2 * VIEWERS), figures["codes"]
    for gaps in (figures["live"], figures["watch"]):
        assert len(gaps) == VIEWERS
        assert all(len(g) == 1 and g[0] < BOUND for g in gaps), gaps
    # each comment that was acknowledged reached every viewer once
    assert figures["acked"] == figures["posted"]
    for shown in figures["shown"]:
        assert shown == {text: 1 for text in figures["posted"]}


async def _ride_through_sighup(proc, log, base: str, room: str, posters: list[str]) -> dict:
    live = [LiveClient(base, room) for _ in range(VIEWERS)]
    watch = [WatchClient(base, room) for _ in range(VIEWERS)]
    writers = [LiveClient(base, room, cookie=c) for c in posters]
    tasks = [asyncio.ensure_future(c.run()) for c in [*live, *watch, *writers]]
    posted: list[str] = []

    async def post() -> None:
        n = len(posted)
        text = f"comment {n}"
        posted.append(text)
        await writers[n % len(writers)].post(f"restart-{n:08d}", text)

    async def until(condition, limit: float, why=lambda: "") -> None:
        give_up = time.monotonic() + limit
        while not condition():
            assert time.monotonic() < give_up, f"timed out {why()}"
            await asyncio.sleep(0.05)

    try:
        await until(lambda: all(c.connected.is_set() for c in [*live, *writers]), 60)
        await until(lambda: all(w.up for w in watch), 60)
        for _ in range(3):
            await post()
        os.kill(proc.pid, signal.SIGHUP)
        # comments keep coming while the processes are replaced, two a second
        while _said(log, "rolling restart done") == 0:
            assert proc.poll() is None and len(posted) < 400, "the rolling restart did not end"
            await post()
            await asyncio.sleep(0.5)
        for _ in range(3):
            await post()
        await until(lambda: not any(w.outbox for w in writers), 30, lambda: writers[0].errors)
        await until(lambda: all(len(c.shown) == len(posted) for c in live), 30)
        await until(lambda: all(w.up for w in watch), 30)
        await asyncio.sleep(0.5)  # a comment shown twice would have come by now
    finally:
        await asyncio.gather(*(c.stop() for c in [*live, *watch, *writers]))
        await asyncio.gather(*tasks, return_exceptions=True)
    acked = {text for w in writers for cid, text in _acked_texts(w)}
    return {
        "posted": posted,
        "acked": sorted(acked, key=posted.index),
        "shown": [dict(c.shown) for c in live],
        "codes": [c.close_codes for c in [*live, *watch]],
        "live": [[round(b - a, 2) for a, b in c.gaps] for c in live],
        "watch": [[round(b - a, 2) for a, b in w.gaps] for w in watch],
    }


def _acked_texts(writer: LiveClient):
    for client_id in writer.acked:
        yield client_id, f"comment {int(client_id.split('-')[1])}"


def test_a_standby_takes_a_killed_process_place_at_once(transactional_db, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc = _serve(port, log, "--workers", "1", "--spares", "1")
    try:
        _wait(lambda: _said(log, "standby (pid") == 1 and _said(log, "ready after") == 2, 120)
        serving = _children(proc)
        assert len(serving) == 2  # the process that serves and the standby
        with open(log.name) as f:
            first = int(f.read().split("web process 0 started (pid ")[1].split(")")[0])
        assert _get(url) == 200
        os.kill(first, signal.SIGKILL)
        _wait(lambda: _said(log, "took over as web process 0") == 1, 10)
        # the standby was ready: it answers without a start-up
        assert _get(url) == 200
        assert first not in _children(proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
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

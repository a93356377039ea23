"""A real daphne server on the test database, and headless Chromium (Debian's package) driven by
Playwright. Tests that use these see what a resident's browser sees."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from cloudbench.logs import STACKS_SIGNAL

# Playwright's sync API keeps an event loop running in this thread; the test's own ORM calls are
# still plain synchronous code, so Django's async-safety guard must not refuse them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # WebRTC over loopback: Chromium offers 127.0.0.1 as a host candidate (it leaves loopback
    # out by default), with plain addresses rather than mDNS names (which the node would have to
    # resolve by multicast). The node answers only on 127.0.0.1 and ignores the others
    # (ICE_HOST_ADDRESSES), so media never goes to the machine's external interface address.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"


def below_ephemeral() -> tuple[int, int]:
    """The ports under the kernel's ephemeral range, which it never hands out by itself (a bind
    to port 0, the local end of an outgoing connection). A port found free there stays free
    until the test's server binds it, whatever the tests beside it do meanwhile; one from the
    ephemeral range can be taken in between by any connection the machine opens (it was: the
    deployment test's web server could not bind its port)."""
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    return 10000, max(11000, first - 1)


def _free_port() -> int:
    """A TCP port free on 127.0.0.1, for a server a test starts: a random one from below the
    ephemeral range (`secrets`, so that workers whose `random` is seeded alike do not pick
    alike)."""
    low, high = below_ephemeral()
    for _ in range(1000):
        port = low + secrets.randbelow(high - low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {low}-{high}")


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


class LiveServer:
    """daphne in a subprocess. `restart()` starts a fresh process on the same port, as a deploy
    or a crash followed by the supervisor's restart would."""

    def __init__(
        self,
        extra_env: dict[str, str] | None = None,
        *,
        port: int | None = None,
        also_on: str | None = None,
    ) -> None:
        self.port = port or _free_port()
        # another local address it serves on besides 127.0.0.1 (a test's network namespace
        # reaches it there); the browsers that need a camera stay on 127.0.0.1, a secure origin
        self.also_on = also_on
        self.url = f"http://127.0.0.1:{self.port}"
        # The server runs with Django's async-safety guard on, as in production.
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
            "DATABASE_URL": _database_url(),
            "DJANGO_DEBUG": "0",
            "ALLOWED_HOSTS": ",".join(["127.0.0.1", "localhost", *([also_on] if also_on else [])]),
            "SITE_URL": self.url,
            "CELERY_EAGER": "1",
            "MEDIA_NODE_INPROCESS": "1",
            "MEDIA_ROOT": str(Path(settings.MEDIA_ROOT)),
            # the log is read after the server is terminated: nothing may stay in a buffer
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.log = open(ARTIFACTS.parent / f"daphne-{self.port}.log", "w")  # noqa: SIM115
        self.start()

    def start(self) -> None:
        self.halted = False
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cloudbench.webserver",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                *(["-e", f"tcp:port={self.port}:interface={self.also_on}"] if self.also_on else []),
                "asgi:application",
            ],
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: see {self.log.name}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=1)  # noqa: S310
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("daphne did not start in 30 s")

    def halt(self, *, kill: bool = False) -> None:
        """Stop the process (SIGKILL with `kill`, as in a crash) and wait for it to go."""
        if self.halted:
            return
        self.halted = True
        code = self.process.poll()
        if code is not None:
            # it went by itself (a crash's stacks are above, cloudbench.logs.dump_stacks_on_signal):
            # said at the end of its log and in the test's output
            note = (
                f"daphne on port {self.port} exited by itself with code {code}: see {self.log.name}"
            )
            self.log.write(f"\n({note})\n")
            self.log.flush()
            print(note, file=sys.stderr)
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            # It did not stop: its log ends with what each of its threads was doing
            # (cloudbench.logs.dump_stacks_on_signal), for the test that saw it hang.
            self.process.send_signal(STACKS_SIGNAL)
            time.sleep(1)
            self.process.kill()
            self.process.wait()
            self.log.write("\n(did not stop within 3 s of SIGTERM: stacks above, then SIGKILL)\n")
            self.log.flush()

    def restart(self, *, kill: bool = False, down_for: float = 0.0) -> None:
        self.halt(kill=kill)
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        self.halt()
        self.log.close()


@pytest.fixture
def live_server_url(transactional_db) -> Iterator[str]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LiveServer()
    try:
        yield server.url
    finally:
        server.stop()
        connection.close()


@pytest.fixture
def hls_in_tmp(settings, tmp_path):
    """The test's media and HLS files under its tmp_path; the live server started after this
    fixture (`live_server_url`) inherits them."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BROADCAST_HLS_ROOT = settings.MEDIA_ROOT / "hls"
    return settings.BROADCAST_HLS_ROOT


# Per test, not per session: Playwright's sync API keeps an asyncio loop running in the main thread
# while it is open, and a later transactional test whose service broadcasts after commit
# (realtime.publish_case_update → async_to_sync) would then fail in that thread.
@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's chromium package (make test does)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        # While that loop runs, asgiref gives this thread's code database connections of their
        # own, apart from the thread's: close them while they can still be reached, or one left
        # open keeps the test database from being dropped at the end of the run.
        connections.close_all()
        browser.close()


@pytest.fixture
def phone_page(browser):
    """A fresh browser context the size of a phone (360 px wide), Chinese first."""
    context = browser.new_context(viewport={"width": 360, "height": 780}, locale="zh-CN")
    page = context.new_page()
    yield page
    context.close()


_shots_key = pytest.StashKey[Path]()


@pytest.fixture
def shot(request):
    """shot(page, "step-name"): a full-page screenshot into test-artifacts/screenshots/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    request.config.stash[_shots_key] = ARTIFACTS
    prefix = request.node.name.replace("/", "_")

    def take(page, name: str) -> Path:
        path = ARTIFACTS / f"{prefix}--{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


JOURNEY_SHOTS = Path(
    os.environ.get("JOURNEY_SHOTS") or Path(settings.BASE_DIR) / "var" / "journey-shots"
)
_journey_key = pytest.StashKey[Path]()


@pytest.fixture
def journey_shot(request):
    """journey_shot(page, "step-name"): a numbered full-page screenshot into JOURNEY_SHOTS (emptied
    first); the folder is printed at the end of the run so a person can look through it."""
    JOURNEY_SHOTS.mkdir(parents=True, exist_ok=True)
    for old in JOURNEY_SHOTS.glob("*.png"):
        old.unlink()
    request.config.stash[_journey_key] = JOURNEY_SHOTS
    count = 0

    def take(page, name: str, **options) -> Path:
        nonlocal count
        count += 1
        path = JOURNEY_SHOTS / f"{count:02d}-{name}.png"
        page.wait_for_load_state(timeout=options.get("timeout"))
        page.screenshot(path=str(path), full_page=True, **options)
        return path

    return take


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    shots = config.stash.get(_shots_key, None)
    if shots is not None:
        terminalreporter.write_sep("-", "screenshots")
        terminalreporter.write_line(f"screenshots: {shots}")
    folder = config.stash.get(_journey_key, None)
    if folder is not None:
        terminalreporter.write_sep("-", "journey screenshots")
        terminalreporter.write_line(f"journey screenshots: {folder}")

"""A hostile comment in a real browser (headless Chromium) against a real daphne server."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings

from tests.factories import UserFactory
from voting import services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = [
    "<img src=x onerror=\"document.title='pwned'\">",
    "<script>document.title='pwned'</script>",
    "<a href=javascript:document.title='pwned'>点我</a>",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def daphne_url(transactional_db):
    """daphne serving the project against the test database, with the Redis channel layer."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    port = _free_port()
    log = tempfile.TemporaryFile()  # a pipe nobody reads would fill up and block the server
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudbench.webserver",
            "-v",
            "0",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                raise RuntimeError(log.read().decode()[-2000:]) from None
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own database calls
    # stay synchronous, so Django's async-context guard does not apply to them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


def _post_elsewhere(**kwargs) -> None:
    """Post from another thread: the broadcast after commit must not run inside Playwright's loop."""
    from django.db import connection

    def post() -> None:
        try:
            services.comment_post(**kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(post).result()


def test_hostile_comments_are_shown_as_text_live_and_on_load(live_case, room, daphne_url, browser):
    author = UserFactory(display_name="<b>坏人</b>")
    _post_elsewhere(room=room, author=author, client_id="e2e-0000001", text=PAYLOADS[0])
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{daphne_url}/live/{live_case['hearing'].public_id}/")
    title = page.title()
    page.wait_for_function("() => document.querySelector('.live-status')?.textContent.length > 0")
    page.wait_for_timeout(500)  # the socket is open and subscribed
    for i, payload in enumerate(PAYLOADS[1:], start=2):
        _post_elsewhere(room=room, author=author, client_id=f"e2e-000000{i}", text=payload)
    page.wait_for_function(
        "() => document.querySelectorAll('.comments li').length >= 3", timeout=15000
    )
    texts = page.eval_on_selector_all(".comments li .text", "els => els.map(e => e.textContent)")
    assert texts == PAYLOADS
    nicks = page.eval_on_selector_all(".comments li .nick", "els => els.map(e => e.textContent)")
    assert nicks == ["<b>坏人</b>"] * 3
    assert (
        page.eval_on_selector_all(
            ".comments img, .comments script, .comments a, .comments b", "els => els.length"
        )
        == 0
    )
    assert page.title() == title and "pwned" not in page.title()
    assert dialogs == []

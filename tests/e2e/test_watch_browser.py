"""Headless Chromium plays a public session on the watch page: WebRTC, then HLS without WebRTC."""

import functools
import time

import pytest
from django.db import connections

from tests.factories import UserFactory, advance, make_case

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def _application():
    from channels.routing import get_default_application
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    return ASGIStaticFilesHandler(get_default_application())


@pytest.fixture
def live_server_url(settings, tmp_path):
    from daphne.testing import DaphneProcess

    settings.MEDIA_NODE_INPROCESS = True
    settings.BROADCAST_HLS_ROOT = tmp_path / "hls"
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    # The server is a fork of this process: it must not share our database connections.
    connections.close_all()
    server = DaphneProcess("localhost", functools.partial(_application))
    server.start()
    assert server.ready.wait(timeout=30), "daphne did not start"
    yield f"http://localhost:{server.port.value}"
    server.terminate()
    server.join(10)


def played_seconds(page, *, mode: str) -> tuple[float, float]:
    """currentTime once the video plays in ``mode``, and again a little later."""
    page.wait_for_function(
        "m => document.getElementById('watch').dataset.mode === m", arg=mode, timeout=20_000
    )
    page.wait_for_function(
        "() => document.getElementById('player').currentTime > 0.2", timeout=30_000
    )
    first = page.evaluate("document.getElementById('player').currentTime")
    # let it play; this waits for playback, it asserts no duration
    time.sleep(2.0)
    second = page.evaluate("document.getElementById('player').currentTime")
    return first, second


def test_watch_page_plays_over_webrtc_and_falls_back_to_hls_without_it(live_server_url):
    from playwright.sync_api import sync_playwright

    case = make_case(respondent=UserFactory())
    hearing = advance(case, "in_session")
    url = f"{live_server_url}/watch/{hearing.public_id}/"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page()
            page.goto(url)
            webrtc = played_seconds(page, mode="webrtc")
            state = page.evaluate("document.getElementById('watch').dataset.state")
            page.close()

            context = browser.new_context()
            # A browser without WebRTC: the page must use the HLS stream.
            context.add_init_script("delete window.RTCPeerConnection;")
            page = context.new_page()
            page.goto(url)
            hls = played_seconds(page, mode="hls")
            context.close()
        finally:
            browser.close()

    assert state == "live"
    assert webrtc[1] > webrtc[0]
    assert hls[1] > hls[0]

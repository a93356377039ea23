"""Headless Chromium plays a public session on the watch page: WebRTC, then HLS without WebRTC."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.factories import UserFactory, advance, make_case

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def media_in_tmp(settings, tmp_path):
    # Read by the live server fixture: the broadcast's HLS files land under tmp_path.
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def live_public_hearing():
    """Made in a thread of its own: the services publish to the channel layer after commit with
    async_to_sync, which refuses to run beside the event loop Playwright keeps in this thread."""

    def make():
        try:
            return advance(make_case(respondent=UserFactory()), "in_session")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(make).result()


def played_seconds(page, *, mode: str) -> tuple[float, float]:
    """currentTime once the video plays in ``mode``, and again a little later."""
    page.wait_for_function(
        "m => document.getElementById('watch').dataset.mode === m", arg=mode, timeout=30_000
    )
    page.wait_for_function(
        "() => document.getElementById('player').currentTime > 0.2", timeout=30_000
    )
    first = page.evaluate("document.getElementById('player').currentTime")
    # let it play; this waits for playback, it asserts no duration
    time.sleep(2.0)
    second = page.evaluate("document.getElementById('player').currentTime")
    return first, second


def test_watch_page_plays_over_webrtc_and_falls_back_to_hls_without_it(
    media_in_tmp, live_server_url, browser
):
    hearing = live_public_hearing()
    url = f"{live_server_url}/watch/{hearing.public_id}/"

    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    webrtc = played_seconds(page, mode="webrtc")
    state = page.evaluate("document.getElementById('watch').dataset.state")
    context.close()

    context = browser.new_context()
    # A browser without WebRTC: the page must use the HLS stream.
    context.add_init_script("delete window.RTCPeerConnection;")
    page = context.new_page()
    page.goto(url)
    hls = played_seconds(page, mode="hls")
    context.close()

    assert state == "live"
    assert webrtc[1] > webrtc[0]
    assert hls[1] > hls[0]
    assert (media_in_tmp / "hls" / hearing.public_id / "live.m3u8").exists()

"""The watch page on a weak link, in a real browser: Chromium runs in a network namespace the test
makes (``ip netns exec``), joined to the server's by a veth pair whose server side is limited
with ``tc tbf`` (packets beyond the rate wait, then are dropped, as on a congested mobile link).
The ladder moves that viewer to sound only, with the page saying why, and once the limit is
lifted back up one layer at a time: the half-size picture, then the full one. Screenshots of
each, at phone size.

The members' browser stays on 127.0.0.1 (a secure origin, so it may use the fake camera); the
server also listens on its end of the veth pair, and the media node gathers there as well and
accepts the namespace's address as a peer (``ICE_HOST_ADDRESSES``, ``ICE_PEER_ADDRESSES``), so
no packet goes to the machine's external interface address."""

from __future__ import annotations

import subprocess

import pytest
from django.db import connection

from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.e2e.test_phone_browser import PHONE, WAIT, room_with_two
from tests.netns import run

pytestmark = [pytest.mark.e2e, pytest.mark.media]

PLAYING = "() => document.getElementById('player').currentTime > 1"
PICTURE = "h => document.getElementById('player').videoHeight === h"
LAYER = "name => document.getElementById('watch').dataset.layer === name"
# on the layer, with its picture showing and no sound-only notice
SHOWING = """([name, height]) => document.getElementById('watch').dataset.layer === name
    && document.getElementById('player').videoHeight === height
    && !document.getElementById('watch').dataset.soundOnly"""
SOUND_ONLY = "() => document.getElementById('watch').dataset.soundOnly"
# The ladder at the broadcast's 640×360: 360p, 180p at half the frame rate, sound only (measured
# in this browser: about 265, under 100 and about 50 kbit/s with sound). A link of 60 kbit/s
# carries the sound only.
SOUND_ONLY_LINK = ("rate", "60kbit", "burst", "4kb", "latency", "100ms")
# A step down is confirmed within seconds; a step up waits for clean reports, longer after each
# try that failed (up to 32 s).
STEP = 60_000


def limit(device: str, options: tuple[str, ...]) -> None:
    subprocess.run(("tc", "qdisc", "del", "dev", device, "root"), capture_output=True)
    run("tc", "qdisc", "add", "dev", device, "root", "tbf", *options)


def test_a_viewer_on_a_weak_link_gets_sound_only_then_steps_back_up_through_half_size(
    namespace, hls_in_tmp, transactional_db, browser, shot, tmp_path
):
    name, device, server_address, viewer_address = namespace
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LiveServer(
        {
            "ICE_HOST_ADDRESSES": f"127.0.0.1,{server_address}",
            "ICE_PEER_ADDRESSES": viewer_address,
        },
        also_on=server_address,
    )
    wrapper = tmp_path / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {name} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    try:
        public_id, _members = room_with_two(server.url, browser)
        inside = browser.browser_type.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS)
        try:
            viewer = inside.new_context(viewport=PHONE, locale="zh-CN").new_page()
            viewer.goto(f"http://{server_address}:{server.port}/watch/{public_id}/")
            viewer.wait_for_function(PLAYING, timeout=2 * WAIT)
            assert viewer.evaluate("() => document.getElementById('watch').dataset.mode") in (
                "webrtc",
                None,
            )
            viewer.wait_for_function(PICTURE, arg=360, timeout=2 * WAIT)

            limit(device, SOUND_ONLY_LINK)
            viewer.wait_for_function(LAYER, arg="audio", timeout=STEP)
            # (on a link this weak the ladder tries the picture again now and then, and comes
            # back: the notice shows while the page is on the audio layer)
            notice = viewer.locator("#sound-only")
            notice.wait_for(state="visible", timeout=WAIT)
            assert viewer.evaluate(SOUND_ONLY) == "weakLink"
            assert "仅有声音" in notice.inner_text()
            assert "网络较弱" in notice.inner_text()
            shot(viewer, "watch-weak-link-phone")

            # The link recovers: one layer up at a time, the half-size picture first (held for
            # a few clean seconds), then the full picture.
            run("tc", "qdisc", "del", "dev", device, "root")
            viewer.wait_for_function(SHOWING, arg=["180p", 180], timeout=2 * STEP)
            shot(viewer, "watch-low-layer-phone")
            viewer.wait_for_function(SHOWING, arg=["360p", 360], timeout=STEP)
            shot(viewer, "watch-top-layer-again-phone")
        finally:
            inside.close()
    finally:
        server.stop()
        connection.close()

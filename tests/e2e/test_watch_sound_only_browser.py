"""The watch page says when the livestream is sound only, instead of a still or black picture:
every camera in the room is off (the server's ``pictures: 0``). (The other case, this viewer's
own stream without a picture because the ladder put its weak link on the audio-only layer, is
tested with a real throttled link in test_watch_ladder_browser.py.)"""

from __future__ import annotations

import pytest

from tests.e2e.test_phone_browser import (
    LAPTOP,
    PHONE,
    WAIT,
    room_with_two,
)

pytestmark = [pytest.mark.e2e]

SOUND_ONLY = "() => document.getElementById('watch').dataset.soundOnly"
PLAYING = "() => document.getElementById('player').currentTime > 1"


def test_every_camera_off_the_watch_page_says_sound_only(
    hls_in_tmp, live_server_url, browser, shot
):
    url = live_server_url
    public_id, members = room_with_two(url, browser)
    viewers = {}
    for size, viewport in (("phone", PHONE), ("laptop", LAPTOP)):
        viewer = browser.new_context(viewport=viewport, locale="zh-CN").new_page()
        viewer.goto(f"{url}/watch/{public_id}/")
        viewer.wait_for_function(PLAYING, timeout=2 * WAIT)
        viewers[size] = viewer
    # cameras on: pictures (a viewer the busy machine's ladder moved to sound only would be told
    # its connection is weak, which is not what this test is about)
    assert all(v.evaluate(SOUND_ONLY) != "noCameras" for v in viewers.values())

    for page in members.values():
        page.click("#cam")
    for size, viewer in viewers.items():
        viewer.wait_for_function(f"{SOUND_ONLY} === 'noCameras'", timeout=WAIT)
        notice = viewer.locator("#sound-only")
        assert notice.is_visible()
        assert "仅有声音" in notice.inner_text()
        assert "没有人开摄像头" in notice.inner_text()
        # over the player, inside the page's width
        box, player = notice.bounding_box(), viewer.locator("#player").bounding_box()
        assert box["width"] <= viewer.viewport_size["width"]
        assert abs(box["y"] - player["y"]) < 2 and abs(box["height"] - player["height"]) < 2
        shot(viewer, f"watch-sound-only-{size}")

    # a camera back on: a picture again
    members["party"].click("#cam")
    for viewer in viewers.values():
        viewer.wait_for_function(f"{SOUND_ONLY} !== 'noCameras'", timeout=2 * WAIT)

"""Screen sharing from a laptop, with Chromium's fake display capture (a 1280×720 "screen"): it
reaches the other members large, and the livestream shows it only after the mediator's switch,
and not during a caucus."""

from __future__ import annotations

import pytest

from tests.e2e.test_phone_browser import (
    LAPTOP,
    PHONE,
    REMOTE_PLAYING,
    WAIT,
    _cookie,
    admit_all,
    in_thread,
    page_for,
)
from tests.factories import UserFactory, advance, make_case, make_expert

# alone: Chromium's screen capture needs the machine to reach a full-size picture
pytestmark = [pytest.mark.e2e, pytest.mark.alone]

MEDIA_WAIT = 90_000
# the large tile shows the shared screen: the fake capture is 1280 wide, the fake camera 640
SCREEN_SHOWN = """() => {
    const v = document.querySelector('.tile.main.screen video.remote');
    return !!v && v.videoWidth > 640 && v.currentTime > 0.2;
}"""
TILES = """() => [...document.querySelectorAll('.tile[data-member]')].map(t => {
    const v = t.querySelector('video');
    return [t.className, v.videoWidth, v.currentTime, !!v.srcObject];
})"""
# the room page keeps its peer connection to itself: read the stats through a hook of the test's
VIDEO_STATS = """async (type) => {
    const pc = window.__roomPeer;
    if (!pc) return 'no peer';
    const out = [];
    (await pc.getStats()).forEach(s => {
        if (s.type === type && s.kind === 'video') out.push([s.mid, s.frameWidth, s.framesDecoded,
            s.framesEncoded, s.framesReceived, s.keyFramesDecoded, s.keyFramesEncoded, s.packetsLost]);
    });
    return out;
}"""
SCREEN_STATE = """() => {
    const v = document.querySelector('.tile.main.screen video.remote');
    return v ? [v.videoWidth, v.videoHeight, v.currentTime] : null;
}"""


def test_a_shared_screen_reaches_the_room_and_is_on_air_only_when_the_mediator_says(
    hls_in_tmp, live_server_url, browser, shot
):
    url = live_server_url

    def make():
        applicant, respondent, expert = UserFactory(), UserFactory(), make_expert()
        case = make_case(
            applicant=applicant,
            respondent=respondent,
            respondent_consents={"video": True, "livestream": True, "recording": False},
        )
        hearing = advance(case, "in_session", expert=expert)
        return hearing.public_id, {
            "expert": _cookie(expert, url),
            "applicant": _cookie(applicant, url),
            "respondent": _cookie(respondent, url),
        }

    public_id, cookies = in_thread(make)
    expert = page_for(browser, cookies["expert"], LAPTOP)
    applicant = page_for(browser, cookies["applicant"], LAPTOP)
    respondent = page_for(browser, cookies["respondent"], PHONE)
    for page in (expert, applicant, respondent):
        # keep the page's peer connection where a failure's message can read its statistics
        page.add_init_script(
            """(() => { const P = window.RTCPeerConnection;
                window.RTCPeerConnection = function (...a) {
                    const pc = new P(...a); window.__roomPeer = pc; return pc; };
                window.RTCPeerConnection.prototype = P.prototype; })();"""
        )
    for page in (expert, applicant, respondent):
        page.goto(f"{url}/room/{public_id}/")
    # both parties in the lobby before the mediator lets them in
    expert.wait_for_function(
        "() => document.querySelectorAll('#lobby-list li').length === 2", timeout=MEDIA_WAIT
    )
    admit_all(expert)
    for page in (expert, applicant, respondent):
        page.wait_for_function(REMOTE_PLAYING, timeout=MEDIA_WAIT)
    watch = browser.new_context(viewport=LAPTOP, locale="zh-CN").new_page()
    watch.goto(f"{url}/watch/{public_id}/")
    watch.wait_for_function(
        "() => Number(document.getElementById('watch').dataset.members) >= 3", timeout=MEDIA_WAIT
    )
    assert respondent.locator("#share").is_hidden()  # a phone's screen: no share button

    applicant.click("#share")
    applicant.wait_for_function(
        "() => document.getElementById('room').dataset.sharing === '1'", timeout=WAIT
    )
    for page in (expert, respondent):
        page.locator(".tile.main.screen").wait_for(timeout=WAIT)
        try:
            page.wait_for_function(SCREEN_SHOWN, timeout=MEDIA_WAIT)
        except Exception as exc:
            raise AssertionError(
                f"the screen tile shows {page.evaluate(SCREEN_STATE)}; tiles "
                f"{page.evaluate(TILES)}; received {page.evaluate(VIDEO_STATS, 'inbound-rtp')}; "
                f"sent {applicant.evaluate(VIDEO_STATS, 'outbound-rtp')}"
            ) from exc
    assert applicant.get_attribute("#share", "aria-pressed") == "true"
    # in the room, not on air: the viewers' picture has no screen in it
    expert.locator("#share-air-box").wait_for(timeout=WAIT)
    assert watch.evaluate("() => document.getElementById('watch').dataset.screen") == "0"
    shot(expert, "share-room-expert-laptop")
    shot(respondent, "share-room-party-phone")

    expert.click("#share-air")
    watch.wait_for_function(
        "() => document.getElementById('watch').dataset.screen === '1'", timeout=WAIT
    )
    watch.wait_for_function(
        "() => document.getElementById('player').currentTime > 1", timeout=MEDIA_WAIT
    )
    watch.wait_for_timeout(5000)  # the screen's first decoded pictures reach the composite
    shot(watch, "share-on-air-watch-laptop")

    # a caucus: the livestream holds, the share goes off air and cannot be put back meanwhile
    expert.locator("#member-list li").filter(has_text="被申请人").locator("button").filter(
        has_text="单独沟通"
    ).click()
    watch.wait_for_function(
        "() => document.getElementById('watch').dataset.state === 'hold'", timeout=WAIT
    )
    assert watch.evaluate("() => document.getElementById('watch').dataset.screen") == "0"
    expert.wait_for_function("() => document.getElementById('share-air').disabled")
    expert.click("#end-caucus")
    watch.wait_for_function(
        "() => document.getElementById('watch').dataset.state === 'live'", timeout=WAIT
    )
    assert watch.evaluate("() => document.getElementById('watch').dataset.screen") == "0"
    assert expert.get_attribute("#share-air", "aria-pressed") == "false"

    # the applicant stops: everyone is back to cameras
    applicant.click("#share")
    expert.wait_for_function("() => !document.querySelector('.tile.screen')", timeout=WAIT)
    expert.locator("#share-air-box").wait_for(state="hidden", timeout=WAIT)

"""The room on a phone and on a laptop, as the people in it see it: the check page before joining,
the room fitting one screen with its control bar, joining with sound only when the browser refuses
the camera, and the large-text switch."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.factories import UserFactory, advance, make_case, make_expert

pytestmark = [pytest.mark.e2e]

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}
WAIT = 30_000
# three members' media through the node before a tile can move: slower late in a long run
MEDIA_WAIT = 60_000
REMOTE_PLAYING = """() => [...document.querySelectorAll('video.remote')]
    .some(v => v.videoWidth > 0 && v.currentTime > 0.2)"""
FITS = """() => ({
    scroll: document.documentElement.scrollHeight - window.innerHeight,
    bar: document.querySelector('.bar').getBoundingClientRect().bottom,
    height: window.innerHeight,
})"""


def in_thread(make):
    """Made in a thread of its own: the services publish after commit with async_to_sync, which
    refuses to run beside the event loop Playwright keeps in this thread."""

    def run():
        try:
            return make()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def _cookie(user, url: str) -> dict:
    client = Client()
    client.force_login(user)
    return {
        "name": django_settings.SESSION_COOKIE_NAME,
        "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
        "url": url,
    }


def scheduled_room(url: str) -> tuple[str, dict]:
    def make():
        applicant, expert = UserFactory(), make_expert()
        case = make_case(applicant=applicant, respondent=UserFactory())
        hearing = advance(case, "scheduled", expert=expert)
        return hearing.public_id, {
            "expert": _cookie(expert, url),
            "applicant": _cookie(applicant, url),
        }

    return in_thread(make)


def page_for(browser, cookie: dict, viewport: dict):
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    context.add_cookies([cookie])
    return context.new_page()


def admit_all(expert) -> None:
    waiting = expert.locator("#lobby-list li")
    waiting.first.wait_for(timeout=WAIT)
    for left in range(waiting.count() - 1, -1, -1):
        waiting.first.locator("button").click()
        expert.wait_for_function(
            "n => document.querySelectorAll('#lobby-list li').length === n", arg=left, timeout=WAIT
        )


@pytest.mark.parametrize("size", ["phone", "laptop"])
def test_check_page_then_a_room_that_fits_the_screen(live_server_url, browser, shot, size):
    viewport = PHONE if size == "phone" else LAPTOP
    public_id, cookies = scheduled_room(live_server_url)
    party = page_for(browser, cookies["applicant"], viewport)
    party.goto(f"{live_server_url}/room/{public_id}/check/")

    # the camera shows, the microphone moves the meter, the connection is rated from real pings
    party.wait_for_function("() => document.getElementById('preview').videoWidth > 0", timeout=WAIT)
    party.wait_for_function(
        "() => Number(document.getElementById('check').dataset.micLevel || 0) > 0", timeout=WAIT
    )
    party.wait_for_function("() => document.getElementById('check').dataset.net", timeout=WAIT)
    check = party.evaluate("() => ({...document.getElementById('check').dataset})")
    assert check["net"] == "good"  # loopback: no loss, a round trip of a few milliseconds
    assert float(check["loss"]) == 0.0
    assert party.locator("#camera-pick option").count() >= 1
    party.click("#test-sound")
    party.wait_for_function("() => document.getElementById('check').dataset.sound === 'played'")
    shot(party, f"check-{size}")

    party.click("#join-video")
    party.wait_for_url(f"**/room/{public_id}/", timeout=WAIT)
    party.locator("#lobby-wait").wait_for(timeout=WAIT)

    expert = page_for(browser, cookies["expert"], viewport)
    expert.goto(f"{live_server_url}/room/{public_id}/")
    if size == "phone":
        # the tools are behind a button, which says someone is waiting
        expert.locator("#panel-toggle .badge").filter(has_text="1").wait_for(timeout=WAIT)
        expert.click("#panel-toggle")
        shot(expert, f"room-expert-tools-{size}")
    admit_all(expert)
    if size == "phone":
        expert.click("#panel-close")
    for page in (party, expert):
        page.wait_for_function(REMOTE_PLAYING, timeout=WAIT)
        # the other member is shown large, oneself as a thumbnail
        page.locator(".tile.main video.remote").wait_for(timeout=WAIT)
        fit = page.evaluate(FITS)
        assert fit["scroll"] <= 0, f"the room scrolls by {fit['scroll']} px"
        assert fit["bar"] <= fit["height"]
        for control in ("#mic", "#cam", "#audio-only", "#leave"):
            assert page.locator(control).is_visible()
            box = page.locator(control).bounding_box()
            assert box["height"] >= 48 and box["y"] + box["height"] <= fit["height"]
    shot(party, f"room-party-{size}")
    shot(expert, f"room-expert-{size}")
    if size == "laptop":
        # beside the room, not under it
        panel = expert.locator("#panel").bounding_box()
        stage = expert.locator(".stage").bounding_box()
        assert panel["x"] >= stage["x"] + stage["width"] - 1
        assert expert.locator("#member-list li").count() == 1

    # the party turns to sound only: the expert sees the party's role where the picture was
    party.click("#audio-only")
    expert.locator(".tile.no-video .placeholder").filter(has_text="申请人").wait_for(timeout=WAIT)


def test_camera_refused_explains_and_joins_with_sound_only(live_server_url, browser, shot):
    public_id, cookies = scheduled_room(live_server_url)
    # The shared browser says yes to every camera request; this resident's browser asks, and
    # the resident allowed the microphone but blocked the camera.
    asking = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"],
    )
    context = asking.new_context(viewport=PHONE, locale="zh-CN")
    context.add_cookies([cookies["applicant"]])
    context.grant_permissions(["microphone"], origin=live_server_url)
    party = context.new_page()
    party.goto(f"{live_server_url}/room/{public_id}/check/")
    party.locator("#denied").wait_for(timeout=WAIT)
    help_text = party.inner_text("#denied")
    assert "摄像头" in help_text
    for browser_name in ("安卓", "微信", "iPhone"):
        assert browser_name in help_text
    assert party.locator("#join-video").is_hidden()
    # the microphone still works
    party.wait_for_function(
        "() => Number(document.getElementById('check').dataset.micLevel || 0) > 0", timeout=WAIT
    )
    shot(party, "check-camera-refused-phone")

    party.click("#join-audio")
    party.wait_for_url(f"**/room/{public_id}/", timeout=WAIT)
    expert = page_for(browser, cookies["expert"], LAPTOP)
    expert.goto(f"{live_server_url}/room/{public_id}/")
    admit_all(expert)
    party.wait_for_function(REMOTE_PLAYING, timeout=WAIT)
    # no picture is sent: the expert's tile of the party is the role, never a black box
    placeholder = expert.locator(".tile.no-video .placeholder").filter(has_text="申请人")
    placeholder.wait_for(timeout=WAIT)
    assert party.locator(".tile.self.no-video").count() == 1
    # and the party is heard: their audio reaches the expert
    expert.wait_for_function(
        """() => [...document.querySelectorAll('.tile[data-member] audio')]
            .some(a => a.srcObject && a.srcObject.getAudioTracks().length)""",
        timeout=WAIT,
    )
    shot(party, "room-party-sound-only-phone")
    shot(expert, "room-expert-sees-sound-only-laptop")
    asking.close()


def test_large_text_switch_is_remembered_before_first_paint(live_server_url, browser, shot):
    context = browser.new_context(viewport=PHONE, locale="zh-CN")
    page = context.new_page()
    page.goto(live_server_url + "/")
    before = page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)")
    page.click("[data-easy-read]")
    assert page.get_attribute("[data-easy-read]", "aria-pressed") == "true"
    # a new page of the same device: the class is there before any deferred script has run
    page.goto(live_server_url + "/lookup/", wait_until="commit")
    page.wait_for_selector("body")
    assert page.evaluate("() => document.documentElement.classList.contains('easy-read')")
    page.wait_for_load_state()
    after = page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)")
    assert after > before
    shot(page, "large-text-phone")
    context.close()


def finished_public_hearing_with_replay(hls_root):
    """An agreed case whose hearing has a real replay on disk (the synthetic publisher's picture)
    and two comments, at 1 s and 4 s into it."""
    from datetime import timedelta

    from streaming.node.replay_sample import sample_replay_write
    from voting.models import Comment
    from voting.services.rooms import room_for_hearing

    def make():
        hearing = advance(make_case(respondent=UserFactory()), "agreed")
        started = sample_replay_write(hls_root / hearing.public_id, seconds=6)
        room = room_for_hearing(hearing)
        viewer = UserFactory()
        for seconds, text in ((1, "第一条：早就该调解了"), (4, "第二条：双方都让一步吧")):
            comment = Comment.objects.create(
                room=room, author=viewer, client_id=text, nickname="居民", text=text
            )
            Comment.objects.filter(pk=comment.pk).update(
                created_at=started + timedelta(seconds=seconds)
            )
        return hearing.public_id

    return in_thread(make)


@pytest.mark.parametrize("size", ["phone", "laptop"])
def test_replay_shows_a_comment_at_its_time_when_seeked(
    hls_in_tmp, live_server_url, browser, shot, size
):
    public_id = finished_public_hearing_with_replay(hls_in_tmp)
    context = browser.new_context(viewport=PHONE if size == "phone" else LAPTOP, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{live_server_url}/watch/{public_id}/replay/")
    page.wait_for_function("() => document.getElementById('replay').dataset.ready", timeout=WAIT)
    now = page.locator("#now")
    assert "第一条" not in now.inner_text()
    # seek to 2 s by the player: the first comment is there, the second not yet
    page.evaluate("() => { document.getElementById('player').currentTime = 2.0; }")
    now.filter(has_text="第一条").wait_for(timeout=WAIT)
    assert "第二条" not in now.inner_text()
    # the second comment's own time button takes the player there
    page.locator("#all li", has_text="第二条").locator("button.seek").click()
    now.filter(has_text="第二条").wait_for(timeout=WAIT)
    assert page.evaluate("() => document.getElementById('player').currentTime") >= 4.0
    shot(page, f"replay-{size}")
    context.close()


@pytest.mark.parametrize("size", ["phone", "laptop"])
def test_watch_page_waits_with_a_picture_until_members_come(
    hls_in_tmp, live_server_url, browser, shot, size
):
    def make():
        return advance(make_case(respondent=UserFactory()), "in_session").public_id

    public_id = in_thread(make)
    context = browser.new_context(viewport=PHONE if size == "phone" else LAPTOP, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{live_server_url}/watch/{public_id}/")
    page.wait_for_function("() => document.getElementById('watch').dataset.members === '0'")
    waiting = page.locator("#waiting")
    assert waiting.is_visible()
    assert "调解即将开始" in waiting.inner_text() and "劳资纠纷" in waiting.inner_text()
    shot(page, f"watch-waiting-{size}")
    context.close()


def room_with_two(url: str, browser) -> tuple[str, dict]:
    """A live public hearing with the mediator (laptop) and the applicant (phone) in the room."""

    def make():
        applicant, expert = UserFactory(), make_expert()
        case = make_case(applicant=applicant, respondent=UserFactory())
        hearing = advance(case, "in_session", expert=expert)
        return hearing.public_id, {
            "expert": _cookie(expert, url),
            "applicant": _cookie(applicant, url),
        }

    public_id, cookies = in_thread(make)
    party = page_for(browser, cookies["applicant"], PHONE)
    party.goto(f"{url}/room/{public_id}/")
    expert = page_for(browser, cookies["expert"], LAPTOP)
    expert.goto(f"{url}/room/{public_id}/")
    admit_all(expert)
    # the broadcast encodes beside the room here: on a busy machine the first picture takes longer
    party.wait_for_function(REMOTE_PLAYING, timeout=2 * WAIT)
    return public_id, {"party": party, "expert": expert}


def test_watch_page_plays_the_room_once_members_are_in(hls_in_tmp, live_server_url, browser, shot):
    url = live_server_url
    public_id, _pages = room_with_two(url, browser)
    for size, viewport in (("phone", PHONE), ("laptop", LAPTOP)):
        context = browser.new_context(viewport=viewport, locale="zh-CN")
        viewer = context.new_page()
        viewer.goto(f"{url}/watch/{public_id}/")
        viewer.wait_for_function(
            "() => Number(document.getElementById('watch').dataset.members) > 0",
            timeout=2 * WAIT,
        )
        viewer.wait_for_function(
            "() => document.getElementById('player').currentTime > 1", timeout=2 * WAIT
        )
        assert viewer.locator("#waiting").is_hidden()
        shot(viewer, f"watch-live-{size}")
        context.close()


def test_the_member_speaking_is_shown_large(live_server_url, browser, shot):
    """Chromium's fake microphone beeps; the mediator and the respondent mute theirs, so only the
    applicant is heard and becomes the large tile on the respondent's phone."""
    url = live_server_url

    def make():
        applicant, respondent, expert = UserFactory(), UserFactory(), make_expert()
        hearing = advance(
            make_case(applicant=applicant, respondent=respondent), "scheduled", expert=expert
        )
        return hearing.public_id, {
            "expert": _cookie(expert, url),
            "applicant": _cookie(applicant, url),
            "respondent": _cookie(respondent, url),
        }

    public_id, cookies = in_thread(make)
    pages = {who: page_for(browser, cookie, PHONE) for who, cookie in cookies.items()}
    # the node's speaker frames the respondent's page receives
    named = []
    pages["respondent"].on(
        "websocket",
        lambda ws: ws.on(
            "framereceived",
            lambda payload: (
                named.append(json.loads(payload).get("member"))
                if '"speaker"' in str(payload) and json.loads(payload).get("type") == "speaker"
                else None
            ),
        ),
    )
    for page in pages.values():
        page.goto(f"{url}/room/{public_id}/")
    pages["expert"].click("#panel-toggle")
    # both parties in the lobby first: one arriving while the other is let in would be missed
    pages["expert"].wait_for_function(
        "() => document.querySelectorAll('#lobby-list li').length === 2", timeout=MEDIA_WAIT
    )
    admit_all(pages["expert"])
    pages["expert"].click("#panel-close")
    for who in ("expert", "respondent"):
        pages[who].click("#mic")
    watcher = pages["respondent"]
    watcher.wait_for_function(
        "() => document.querySelectorAll('.tile[data-member] video.remote').length === 2",
        timeout=MEDIA_WAIT,
    )
    applicant_id = watcher.evaluate(
        """() => [...document.querySelectorAll('.tile[data-member]')]
            .find(t => t.querySelector('figcaption').textContent.includes('申请人')).dataset.member"""
    )
    watcher.wait_for_function(
        "id => document.getElementById('room').dataset.main === id",
        arg=applicant_id,
        timeout=MEDIA_WAIT,
    )
    assert watcher.locator(f'.tile.main[data-member="{applicant_id}"]').count() == 1
    # the media node named the applicant from the levels in their audio packets, and the page
    # follows the node rather than its own measurement
    watcher.wait_for_function(
        "() => document.getElementById('room').dataset.speakerFrom === 'node'", timeout=WAIT
    )
    assert applicant_id in named
    assert watcher.evaluate("() => document.getElementById('room').dataset.main") == applicant_id
    shot(watcher, "room-speaker-large-phone")

"""The web server (daphne) is killed mid-session and started again on the same port: the
viewers' watch pages (video over /ws/watch/, comments over /ws/live/) and the members' room
pages (/ws/room/) reconnect by themselves, no comment posted around the restart is lost or shown
twice, and the media comes back (the node ran inside the killed process: it is re-established).
"""

import time

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.factories import UserFactory, advance, make_case, make_expert
from tests.faults.browser import (
    COMMENT_TEXTS,
    LIVE_PANEL_UP,
    PLAYER_TIME,
    REMOTE_PLAYING,
    REMOTE_TIME,
    advancing,
    post_comment,
)
from tests.faults.conftest import session_cookie
from voting.models import Comment

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

BEFORE = ["重启之前一", "重启之前二"]
WHILE_DOWN = ["服务器停着的时候"]
AFTER = ["重启之后"]


def test_pages_reconnect_and_no_comment_is_lost_or_doubled_when_daphne_restarts(server_factory):
    applicant, expert, resident = UserFactory(), make_expert(), UserFactory()
    case = make_case(applicant=applicant, respondent=UserFactory())
    hearing = advance(case, "in_session", expert=expert)
    server = server_factory()
    base = server.url
    cookies = {
        "expert": session_cookie(expert, base),
        "applicant": session_cookie(applicant, base),
        "resident": session_cookie(resident, base),
    }
    room_url = f"{base}/room/{hearing.public_id}/"
    watch_url = f"{base}/watch/{hearing.public_id}/"
    timings = {}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = {}
            for name in ("expert", "applicant", "resident", "anonymous"):
                context = browser.new_context(locale="zh-CN")
                if name in cookies:
                    context.add_cookies([cookies[name]])
                pages[name] = context.new_page()
            room = {n: pages[n] for n in ("expert", "applicant")}
            viewers = {n: pages[n] for n in ("resident", "anonymous")}
            for page in room.values():
                page.goto(room_url)
            room["applicant"].wait_for_selector("#lobby-wait:not([hidden])", timeout=20_000)
            room["expert"].click("#lobby-list button", timeout=20_000)
            for page in room.values():
                page.wait_for_function(REMOTE_PLAYING, timeout=30_000)
            for page in viewers.values():
                page.goto(watch_url)
                page.wait_for_function(
                    "() => document.getElementById('watch').dataset.mode === 'webrtc'"
                )
                page.wait_for_function(f"() => ({PLAYER_TIME})() > 0.2", timeout=30_000)
                page.wait_for_function(LIVE_PANEL_UP, timeout=10_000)
            for text in BEFORE:
                post_comment(viewers["resident"], text)
            for page in viewers.values():
                page.wait_for_function(
                    f"() => ({COMMENT_TEXTS})().length >= {len(BEFORE)}", timeout=10_000
                )

            server.halt(kill=True)
            down_at = time.monotonic()
            for text in WHILE_DOWN:
                post_comment(viewers["resident"], text)  # kept in the page's outbox
            for page in room.values():
                page.wait_for_function(
                    "() => document.getElementById('room').dataset.state === 'reconnecting'",
                    timeout=15_000,
                )
            server.start()
            up_at = time.monotonic()
            for text in AFTER:
                post_comment(viewers["resident"], text)

            everything = BEFORE + WHILE_DOWN + AFTER
            for name, page in viewers.items():
                page.wait_for_function(LIVE_PANEL_UP, timeout=30_000)
                page.wait_for_function(
                    f"() => ({COMMENT_TEXTS})().length >= {len(everything)}", timeout=30_000
                )
                page.wait_for_function(
                    "() => document.getElementById('watch').dataset.socket === 'open'",
                    timeout=30_000,
                )
                timings[name] = time.monotonic() - up_at
            for name, page in room.items():
                page.wait_for_function(
                    "() => document.getElementById('room').dataset.state === 'in-room'",
                    timeout=30_000,
                )
                page.wait_for_function(REMOTE_PLAYING, timeout=30_000)
                timings[name] = time.monotonic() - up_at
            shown = {name: page.evaluate(COMMENT_TEXTS) for name, page in viewers.items()}
            video_moves = {name: advancing(page, PLAYER_TIME) for name, page in viewers.items()}
            room_moves = {name: advancing(page, REMOTE_TIME) for name, page in room.items()}
            modes = {
                name: page.evaluate("document.getElementById('watch').dataset.mode")
                for name, page in viewers.items()
            }
        finally:
            browser.close()

    print(f"down {up_at - down_at:.1f} s; back after the restart (s):", timings)
    for texts in shown.values():
        assert sorted(texts) == sorted(everything)
    assert sorted(Comment.objects.filter(room__hearing=hearing).values_list("text", flat=True)) == (
        sorted(everything)
    )
    assert modes == {"resident": "webrtc", "anonymous": "webrtc"}
    assert all(video_moves.values()), video_moves
    assert all(room_moves.values()), room_moves

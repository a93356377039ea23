"""A party's network drops for 20 seconds: the party comes back into the room by themselves,
without the mediator admitting them again.

The party's browser reaches the server through a line the test cuts (tests.faults.netcut:
nothing passes, nothing is closed) and is switched offline, so it can open nothing new either.
The media's UDP packets do not go through the line; the page has to notice the drop from its
silent socket."""

import time

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.factories import UserFactory, advance, make_case, make_expert
from tests.faults.browser import REMOTE_PLAYING, REMOTE_TIME, advancing
from tests.faults.conftest import session_cookie
from tests.faults.netcut import CuttableLine

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

OFFLINE = 20.0
STATE = "() => document.getElementById('room').dataset.state"


def test_a_party_whose_network_drops_for_20_seconds_rejoins_without_the_mediator(
    server_factory,
):
    applicant, expert = UserFactory(), make_expert()
    hearing = advance(
        make_case(applicant=applicant, respondent=UserFactory()), "scheduled", expert=expert
    )
    server = server_factory()
    cookies = {
        "expert": session_cookie(expert, server.url),
        "applicant": session_cookie(applicant, server.url),
    }
    line = CuttableLine(server.port)
    urls = {
        "expert": f"{server.url}/room/{hearing.public_id}/",
        "applicant": f"{line.url}/room/{hearing.public_id}/",
    }

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages, contexts = {}, {}
            for name, cookie in cookies.items():
                contexts[name] = browser.new_context(locale="zh-CN")
                contexts[name].add_cookies([cookie])
                pages[name] = contexts[name].new_page()
                pages[name].goto(urls[name])
            pages["applicant"].wait_for_selector("#lobby-wait:not([hidden])", timeout=20_000)
            pages["expert"].click("#lobby-list button", timeout=20_000)
            for page in pages.values():
                page.wait_for_function(REMOTE_PLAYING, timeout=30_000)

            line.cut()
            contexts["applicant"].set_offline(True)
            states = set()
            give_up = time.monotonic() + OFFLINE
            while time.monotonic() < give_up:
                states.add(pages["applicant"].evaluate(STATE))
                time.sleep(0.25)
            contexts["applicant"].set_offline(False)
            line.restore()
            back_at = time.monotonic()
            # the mediator does nothing from here on
            pages["applicant"].wait_for_function(f"() => ({STATE})() === 'in-room'", timeout=60_000)
            for page in pages.values():
                page.wait_for_function(REMOTE_PLAYING, timeout=60_000)
            back_after = time.monotonic() - back_at
            moving = {name: advancing(page, REMOTE_TIME) for name, page in pages.items()}
        finally:
            browser.close()
            line.close()

    print(f"states while offline: {states}; back in the room {back_after:.1f} s after")
    assert "reconnecting" in states  # the page did notice the drop
    assert all(moving.values()), moving

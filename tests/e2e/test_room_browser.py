"""Two headless Chromium pages join a mediation room and each plays the other's video."""

import functools
import time
import uuid

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.factories import UserFactory, advance, make_case, make_expert

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REMOTE_PLAYING = """() => [...document.querySelectorAll('video.remote')]
    .some(v => v.videoWidth > 0 && v.currentTime > 0.2)"""
REMOTE_TIME = """() => Math.max(0, ...[...document.querySelectorAll('video.remote')]
    .filter(v => v.videoWidth > 0).map(v => v.currentTime))"""


def _application():
    # static files under their hashed names, collected before the tests were imported
    # (tests/conftest.py), served by WhiteNoise
    from channels.routing import get_default_application

    return get_default_application()


@pytest.fixture
def live_server_url(settings, tmp_path):
    from daphne.testing import DaphneProcess

    settings.MEDIA_NODE_INPROCESS = True
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ICE_SERVERS = []
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    if settings.REDIS_URL:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"e2e-{uuid.uuid4().hex[:8]}"},
            }
        }
    # the server is a fork of this process: it must not share our database connections
    connections.close_all()
    # 127.0.0.1, not "localhost": the browser must reach this server, not one that another
    # process has on the same port of ::1
    server = DaphneProcess("127.0.0.1", functools.partial(_application))
    server.start()
    assert server.ready.wait(timeout=30), "daphne did not start"
    yield f"http://127.0.0.1:{server.port.value}"
    server.terminate()
    server.join(10)


def session_cookie(user, url):
    client = Client()
    client.force_login(user)
    return {
        "name": django_settings.SESSION_COOKIE_NAME,
        "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
        "url": url,
    }


def test_two_members_see_each_others_video_playing(live_server_url):
    from playwright.sync_api import sync_playwright

    applicant, expert = UserFactory(), make_expert()
    case = make_case(applicant=applicant, respondent=UserFactory())
    hearing = advance(case, "scheduled", expert=expert)
    room_url = f"{live_server_url}/room/{hearing.public_id}/"
    # before Playwright runs its event loop in this thread, where the ORM may not be used
    cookies = {
        "expert": session_cookie(expert, live_server_url),
        "applicant": session_cookie(applicant, live_server_url),
    }

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = {}
            for name, cookie in cookies.items():
                context = browser.new_context()
                context.add_cookies([cookie])
                page = context.new_page()
                page.goto(room_url)
                pages[name] = page
            pages["applicant"].wait_for_selector("#lobby-wait:not([hidden])", timeout=20_000)
            pages["expert"].click("#lobby-list button", timeout=20_000)
            times = {}
            for name, page in pages.items():
                page.wait_for_function(REMOTE_PLAYING, timeout=30_000)
                times[name] = [page.evaluate(REMOTE_TIME)]
            # let the videos play on; this waits, it asserts no duration
            time.sleep(1.5)
            for name, page in pages.items():
                times[name].append(page.evaluate(REMOTE_TIME))
            labels = pages["applicant"].inner_text("#grid")
            width = pages["expert"].evaluate(
                "() => Math.max(...[...document.querySelectorAll('video.remote')].map(v => v.videoWidth))"
            )
        finally:
            browser.close()

    for before, after in times.values():
        assert after > before > 0
    assert width > 0
    assert "调解员" in labels

"""make demo, as a newcomer sees it in the browser: the showcase hearing's watch page plays its
members (``DEMO_SHOWCASE``, ``streaming.node.showcase``)."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command

from mediation_room.models import Hearing
from tests.e2e.conftest import LiveServer
from tests.e2e.test_phone_browser import LAPTOP, PHONE, in_thread

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_showcase_hearing_plays_its_members_while_the_other_live_hearings_stay_free(
    settings, tmp_path, browser, shot
):
    """make demo (DEMO_SHOWCASE): the live hearing the printout names has synthetic members in
    its room, and its watch page shows their moving pictures; another live hearing is empty."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BROADCAST_HLS_ROOT = settings.MEDIA_ROOT / "hls"

    def load():
        printed = StringIO()
        call_command("demo_data", stdout=printed)
        others = list(
            Hearing.objects.filter(state=Hearing.State.LIVE).values_list("public_id", flat=True)
        )
        return printed.getvalue(), others

    printed, live = in_thread(load)
    showcase = re.search(r"live hearing with members in the room: /watch/([\w-]+)/", printed)
    assert showcase, printed
    showcase = showcase.group(1)
    others = [p for p in live if p != showcase]
    assert others  # the newcomer has live hearings of their own to join

    server = LiveServer({"DEMO_SHOWCASE": "1"})
    try:
        context = browser.new_context(viewport=LAPTOP, locale="zh-CN")
        page = context.new_page()
        page.goto(f"{server.url}/watch/{showcase}/")
        page.wait_for_function(
            "() => Number(document.getElementById('watch').dataset.members) >= 3", timeout=120_000
        )
        page.wait_for_function(
            "() => document.getElementById('player').currentTime > 1", timeout=120_000
        )
        grab = """() => {
            const v = document.getElementById('player');
            const c = document.createElement('canvas');
            c.width = 160; c.height = 90;
            const g = c.getContext('2d');
            g.drawImage(v, 0, 0, 160, 90);
            return Array.from(g.getImageData(0, 0, 160, 90).data.filter((_, i) => i % 4 !== 3));
        }"""
        first = page.evaluate(grab)
        page.wait_for_timeout(1500)
        second = page.evaluate(grab)
        assert sum(first) / len(first) > 20  # a picture, not black
        changed = sum(abs(a - b) for a, b in zip(first, second, strict=True)) / len(first)
        assert changed > 1.0, changed  # the members' pictures move
        assert page.locator("#waiting").is_hidden()
        shot(page, "demo-showcase-laptop")
        phone = browser.new_context(viewport=PHONE, locale="zh-CN").new_page()
        phone.goto(f"{server.url}/watch/{showcase}/")
        phone.wait_for_function(
            "() => document.getElementById('player').currentTime > 1", timeout=120_000
        )
        shot(phone, "demo-showcase-phone")

        # another live hearing: nobody in its room, the waiting picture
        other = context.new_page()
        other.goto(f"{server.url}/watch/{others[0]}/")
        other.wait_for_function(
            "() => document.getElementById('watch').dataset.members === '0'", timeout=60_000
        )
    finally:
        server.stop()

"""A hostile comment in a real browser (headless Chromium) against a real server process."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.factories import UserFactory
from voting.services import comments

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAYLOADS = [
    "<img src=x onerror=\"document.title='pwned'\">",
    "<script>document.title='pwned'</script>",
    "<a href=javascript:document.title='pwned'>点我</a>",
]


def _post_elsewhere(**kwargs) -> None:
    """Post from another thread: the broadcast after commit must not run inside Playwright's loop."""
    from django.db import connection

    def post() -> None:
        try:
            comments.comment_post(**kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(post).result()


def test_hostile_comments_are_shown_as_text_live_and_on_load(
    live_case, room, live_server_url, browser
):
    author = UserFactory(display_name="<b>坏人</b>")
    _post_elsewhere(room=room, author=author, client_id="e2e-0000001", text=PAYLOADS[0])
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{live_server_url}/live/{live_case['hearing'].public_id}/")
    title = page.title()
    page.wait_for_function("() => document.querySelector('.live-status')?.textContent.length > 0")
    page.wait_for_timeout(500)  # the socket is open and subscribed
    for i, payload in enumerate(PAYLOADS[1:], start=2):
        _post_elsewhere(room=room, author=author, client_id=f"e2e-000000{i}", text=payload)
    page.wait_for_function(
        "() => document.querySelectorAll('.comments li').length >= 3", timeout=15000
    )
    texts = page.eval_on_selector_all(".comments li .text", "els => els.map(e => e.textContent)")
    assert texts == PAYLOADS
    nicks = page.eval_on_selector_all(".comments li .nick", "els => els.map(e => e.textContent)")
    assert nicks == ["<b>坏人</b>"] * 3
    assert (
        page.eval_on_selector_all(
            ".comments img, .comments script, .comments a, .comments b", "els => els.length"
        )
        == 0
    )
    assert page.title() == title and "pwned" not in page.title()
    assert dialogs == []

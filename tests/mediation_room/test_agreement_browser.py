"""The agreement pages in headless Chromium against a real daphne process: the party's page follows
the mediator's edits live (channel layer on Redis), and a signature drawn on the canvas is stored."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from mediation_room.agreements import services
from mediation_room.agreements.models import AgreementSignature
from tests.mediation_room.agreement_fixtures import *  # noqa: F403 (fixtures)
from tests.mediation_room.agreement_fixtures import last_code

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(not settings.REDIS_URL, reason="daphne and the tests share Redis"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(transactional_db, media_root):
    """daphne serving the test database (the tests commit, so it sees their rows)."""
    db = connection.settings_dict
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_EAGER": "1",
        "MEDIA_ROOT": str(media_root),
        "DJANGO_DEBUG": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{base}/verify/", timeout=1)  # noqa: S310 - local server
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("daphne did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _in_thread(fn):
    """Use the database outside Playwright's event loop: inside it Django refuses sync ORM calls
    (and would open a connection per async context), and the after-commit broadcast's
    async_to_sync refuses to run in a running loop."""

    def call():
        try:
            return fn()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def _session_cookie(user, base):
    client = Client()
    client.force_login(user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}


def test_live_draft_and_drawn_signature_in_a_browser(tsetup, server):
    from playwright.sync_api import expect, sync_playwright

    agreement = tsetup.draft()
    v2 = agreement.versions.get(number=2)
    url = f"{server}/cases/{tsetup.case.tracking_number}/agreement/"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            party = browser.new_context(locale="zh-CN")
            party.add_cookies([_in_thread(lambda: _session_cookie(tsetup.respondent, server))])
            page = party.new_page()
            page.goto(url)
            page.wait_for_selector("#live-note:not([hidden])", timeout=10_000)
            assert "¥12,000.00" in page.inner_text("#term-t1")

            terms = [dict(t) for t in v2.content["terms"]]
            terms[0]["amount"] = "9500"
            _in_thread(
                lambda: services.agreement_save_draft(
                    agreement=agreement,
                    actor=tsetup.expert,
                    facts=v2.content["facts"],
                    terms=terms,
                    performance_check=v2.content["performance_check"],
                )
            )
            expect(page.locator("#term-t1 .term-text")).to_contain_text("9,500.00", timeout=10_000)

            _in_thread(lambda: services.agreement_submit(agreement=agreement, actor=tsetup.expert))
            signer = browser.new_context(locale="zh-CN", viewport={"width": 900, "height": 900})
            signer.add_cookies([_in_thread(lambda: _session_cookie(tsetup.applicant, server))])
            sign = signer.new_page()
            sign.goto(url + "sign/")
            sign.click("form:has(input[name=action]) button")
            sign.wait_for_load_state()
            sign.fill("input[name=code]", _in_thread(lambda: last_code(tsetup.applicant)))
            canvas = sign.locator("#signature-canvas")
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            sign.mouse.move(box["x"] + 20, box["y"] + box["height"] / 2)
            sign.mouse.down()
            for i in range(25):
                sign.mouse.move(
                    box["x"] + 20 + i * 15, box["y"] + box["height"] / 2 + (20 if i % 2 else -20)
                )
            sign.mouse.up()
            sign.click("#sign-form button[type=submit]")
            sign.wait_for_selector(".messages", timeout=10_000)
            # The party's page shows the new signature without a reload.
            expect(page.locator("#signatures")).to_contain_text(
                re.compile(r"\d{4}-\d{2}-\d{2}"), timeout=10_000
            )
        finally:
            browser.close()

    signature = AgreementSignature.objects.get(signer=tsetup.applicant)
    assert signature.method == "drawn"
    assert bytes(signature.image).startswith(b"\x89PNG")
    assert "Chrome" in signature.user_agent

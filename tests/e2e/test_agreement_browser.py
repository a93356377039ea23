"""The agreement pages in headless Chromium against a real daphne process: the party's page follows
the mediator's edits live (channel layer on Redis), and a signature drawn on the canvas is stored."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from mediation_room.agreements import services
from mediation_room.agreements.models import AgreementSignature
from tests.mediation_room.agreement_fixtures import Setup, last_code

pytestmark = pytest.mark.e2e


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


def test_live_draft_and_drawn_signature_in_a_browser(live_server_url, browser, shot):
    from playwright.sync_api import expect

    setup = _in_thread(Setup)
    agreement = _in_thread(setup.draft)
    v2 = _in_thread(lambda: agreement.versions.get(number=2))
    url = f"{live_server_url}/cases/{setup.case.tracking_number}/agreement/"

    party = browser.new_context(locale="zh-CN", viewport={"width": 900, "height": 900})
    party.add_cookies([_in_thread(lambda: _session_cookie(setup.respondent, live_server_url))])
    page = party.new_page()
    page.goto(url)
    page.wait_for_selector("#live-note:not([hidden])", timeout=10_000)
    assert "¥12,000.00" in page.inner_text("#term-t1")

    terms = [dict(t) for t in v2.content["terms"]]
    terms[0]["amount"] = "9500"
    _in_thread(
        lambda: services.agreement_save_draft(
            agreement=agreement,
            actor=setup.expert,
            facts=v2.content["facts"],
            terms=terms,
            performance_check=v2.content["performance_check"],
        )
    )
    # The party's page follows without a reload.
    expect(page.locator("#term-t1 .term-text")).to_contain_text("9,500.00", timeout=10_000)
    shot(page, "1-party-sees-the-edit")

    _in_thread(lambda: services.agreement_submit(agreement=agreement, actor=setup.expert))
    signer = browser.new_context(locale="zh-CN", viewport={"width": 900, "height": 900})
    signer.add_cookies([_in_thread(lambda: _session_cookie(setup.applicant, live_server_url))])
    sign = signer.new_page()
    sign.goto(url + "sign/")
    sign.click("form:has(input[name=action]) button")
    sign.wait_for_load_state()
    sign.fill("input[name=code]", _in_thread(lambda: last_code(setup.applicant)))
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
    shot(sign, "2-drawn-signature")
    sign.click("#sign-form button[type=submit]")
    sign.wait_for_selector(".messages", timeout=10_000)
    # The party's page shows the new signature's time without a reload.
    expect(page.locator("#signatures")).to_contain_text(
        re.compile(r"\d{4}-\d{2}-\d{2}"), timeout=10_000
    )
    party.close()
    signer.close()

    signature = _in_thread(lambda: AgreementSignature.objects.get(signer=setup.applicant))
    assert signature.method == "drawn"
    assert bytes(signature.image).startswith(b"\x89PNG")
    assert "Chrome" in signature.user_agent

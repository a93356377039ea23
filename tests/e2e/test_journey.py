"""The whole journey of one case, every step through the pages in headless Chromium, one browser
context per person: filing, consent, acceptance, the expert, the hearing, the video room, the
livestream with comments and the bench panel, a caucus, the agreement and its signatures, the
QR code on the PDF, the follow-up, closing, and the statistics.

A screenshot of every step lands in the folder the test run prints at its end (JOURNEY_SHOTS, or
var/journey-shots/)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import time, timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts.models import SmsOutboxMessage
from experts.models import AvailabilitySlot
from mediation_room.agreements.services import follow_ups_process_due
from mediation_room.models import Case
from tests.experts.factories import make_profile
from tests.factories import CommunityFactory, MembershipFactory, UserFactory, make_coordinator
from voting.models import PanelVolunteer

pytestmark = pytest.mark.e2e

PASSWORD = "journey-staff-pw-1"
WAIT = 60_000  # a loaded two-core machine: generous timeouts, never a sleep
CODE = re.compile(r"(?<![-\d])(\d{6})(?!\d)")

REMOTE_PLAYING = """n => [...document.querySelectorAll('video.remote')]
    .filter(v => v.videoWidth > 0 && v.clientWidth > 0 && v.currentTime > 0.2).length >= n"""
PLAYER_PLAYING = """() => { const v = document.getElementById('player');
    return v.videoWidth > 0 && v.clientWidth > 0 && v.currentTime > 0.5; }"""


def in_thread(fn):
    """ORM calls run outside Playwright's event loop (see test_agreement_browser.py)."""

    def call():
        try:
            return fn()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def last_sms(phone: str) -> str:
    def read():
        message = SmsOutboxMessage.objects.filter(phone=phone).order_by("-pk").first()
        assert message is not None, f"no text message to {phone}"
        return message.body

    return in_thread(read)


def last_code(phone: str) -> str:
    return CODE.findall(last_sms(phone))[-1]


class World:
    """Who exists before the story starts: the community, its staff and the expert pool (as the
    office and the import would set them up), and the residents' accounts."""

    def __init__(self) -> None:
        self.community = CommunityFactory(name="高地社区", street__name="临平街道")
        self.coordinator = make_coordinator(self.community)
        self.applicant = UserFactory(phone="+8613800000101", display_name="刘志强")
        self.respondent = UserFactory(phone="+8613900000202", display_name="周建国")
        self.watcher = UserFactory(phone="+8613700000303", display_name="王阿姨")
        MembershipFactory(user=self.watcher, community=self.community, household="3-2-501")
        for _ in range(6):  # the rest of the community's bench volunteers
            neighbour = MembershipFactory(community=self.community).user
            PanelVolunteer.objects.create(user=neighbour, community=self.community)
        everyday = [(d, time(0, 0), time(23, 59)) for d in range(7)]
        self.best = make_profile(
            kind="lawyer",
            public_name="陈律师",
            specialties=["unpaid_wages"],
            serves=[self.community],
            slots=everyday,
        )
        make_profile(kind="counsellor", public_name="赵老师", specialties=["family"])
        self.expert = self.best.user
        self.expert.display_name = "陈明"
        self.expert.save(update_fields=["display_name"])
        for staff in (self.coordinator, self.expert):
            staff.set_password(PASSWORD)
            staff.save(update_fields=["password"])
        assert AvailabilitySlot.objects.filter(profile=self.best).count() == 7


def test_the_whole_journey(live_server_url, browser, journey_shot):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT)
    try:
        journey(live_server_url, browser, journey_shot)
    except Exception:
        # what every person's pages showed when it went wrong
        for i, context in enumerate(browser.contexts):
            for j, page in enumerate(context.pages):
                try:
                    journey_shot(page, f"FAILED-context{i}-page{j}", timeout=10_000)
                except Exception as exc:  # noqa: BLE001 - the first failure is the one to report
                    print(f"no screenshot of context {i} page {j}: {exc}")
        raise
    finally:
        expect.set_options(timeout=5_000)


def journey(live_server_url, browser, journey_shot) -> None:
    from playwright.sync_api import expect

    world = in_thread(World)
    base = live_server_url

    def person(*, phone: bool) -> object:
        size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
        context = browser.new_context(viewport=size, locale="zh-CN")
        context.set_default_timeout(WAIT)
        return context.new_page()

    def code_sign_in(page, user, local_number: str) -> None:
        page.fill("#id_phone", local_number)
        page.click("form[action$='/login/code/'] button[type=submit]")
        page.wait_for_url("**/login/code/confirm/**")
        page.fill("input[name=code]", last_code(user.phone))
        page.click("form button[type=submit]")

    def staff_sign_in(page, user) -> None:
        page.goto(base + "/accounts/login/")
        page.click("details summary")
        page.fill("#id_login", user.email)
        page.fill("#id_password", PASSWORD)
        page.click("form[action$='/accounts/login/'] button[type=submit]")
        page.wait_for_url("**/cases/")

    def flash(page):
        return expect(page.locator(".messages"))

    # 1. The resident signs in with a code and files an unpaid-wages case, consenting to all.
    applicant = person(phone=True)
    applicant.goto(base + "/accounts/login/")
    journey_shot(applicant, "resident-sign-in")
    code_sign_in(applicant, world.applicant, "13800000101")
    applicant.wait_for_url("**/cases/")
    applicant.goto(base + "/cases/new/")
    applicant.select_option("#id_category", "unpaid_wages")
    applicant.select_option("#id_community", str(world.community.pk))
    applicant.fill("#id_description", "在装修队干了三个月，老板周建国欠我两个月工资一万二千元。")
    applicant.fill("#id_applicant_name", "刘志强")
    applicant.fill("#id_respondent_name", "周建国")
    applicant.fill("#id_respondent_phone", "139 0000 0202")
    applicant.fill("#id_preferred_times", "随时都可以")
    for kind in ("video", "livestream", "recording"):
        applicant.check(f"#id_consent_{kind}")
    journey_shot(applicant, "resident-files-the-case")
    applicant.click("form.stack button[type=submit]")
    applicant.wait_for_url(re.compile(r".*/cases/LP-\d{4}-\d{6}/$"))
    case_url = applicant.url
    tracking_number = case_url.rstrip("/").rsplit("/", 1)[-1]
    expect(applicant.locator(".status").first).to_have_text("已登记")
    journey_shot(applicant, "case-registered")

    # 2. The other party follows the link in their text message, signs in and consents.
    link = re.search(r"https?://\S+/c/\S+/", last_sms(world.respondent.phone)).group(0)
    respondent = person(phone=True)
    respondent.goto(link)
    respondent.wait_for_url("**/accounts/login/**")
    code_sign_in(respondent, world.respondent, "13900000202")
    respondent.wait_for_url(case_url)
    for kind in ("video", "livestream", "recording"):
        respondent.check(f"#id_{kind}")
    respondent.click("form[action$='/consent/'] button[type=submit]")
    flash(respondent).to_contain_text("已保存")
    expect(respondent.locator(".parties .chip.no")).to_have_count(0)
    journey_shot(respondent, "other-party-consents")

    # 3. A coordinator of the street accepts the case and invites the best expert.
    coordinator = person(phone=False)
    staff_sign_in(coordinator, world.coordinator)
    coordinator.goto(case_url)
    coordinator.click("form[action$='/accept/'] button")
    expect(coordinator.locator(".status").first).to_have_text("已受理")
    journey_shot(coordinator, "coordinator-accepts")
    coordinator.click(f"a[href='/cases/{tracking_number}/experts/']")
    expect(coordinator.locator(".expert-list li").first).to_contain_text("陈律师")
    journey_shot(coordinator, "candidates-ranked")
    coordinator.click("form[action$='/experts/invite/'] input[value=top] + button")
    flash(coordinator).to_contain_text("陈律师")
    journey_shot(coordinator, "best-expert-invited")

    # 4. The expert accepts; the first hearing is set at a time that suits everyone.
    expert = person(phone=False)
    staff_sign_in(expert, world.expert)
    expert.goto(base + "/experts/me/")
    journey_shot(expert, "expert-invitation")
    expert.click("form[action*='/accept/'] button")
    flash(expert).to_be_visible(timeout=WAIT)
    journey_shot(expert, "expert-accepted")
    expert.goto(case_url)
    expect(expert.locator(".status").first).to_have_text("已排期")
    room_link = expert.locator("a[href^='/room/']").first.get_attribute("href")
    # the room link leads to the check page before the room
    public_id = room_link.strip("/").split("/")[1]
    journey_shot(expert, "hearing-scheduled")
    assert room_link in last_sms(world.respondent.phone)

    # 5. The community's volunteers: the watcher signs up; the coordinator draws the bench panel.
    watcher = person(phone=True)
    watcher.goto(base + "/accounts/login/")
    code_sign_in(watcher, world.watcher, "13700000303")
    watcher.wait_for_url("**/cases/")
    watcher.goto(base + "/panel/volunteer/")
    watcher.click("form input[name=active][value='1'] + button")
    flash(watcher).to_be_visible()
    journey_shot(watcher, "resident-volunteers")
    coordinator.goto(f"{base}/cases/{tracking_number}/panel/")
    coordinator.fill("#id_size", "7")
    coordinator.click("form input[name=step][value=commit] ~ button")
    coordinator.click("form input[name=step][value=draw] + button")
    flash(coordinator).to_be_visible()
    journey_shot(coordinator, "bench-panel-drawn")

    # 6. Both parties and the expert join the room with camera and microphone and see each other.
    room_url = f"{base}/room/{public_id}/"
    party_rooms = []
    for page in (applicant, respondent):
        room = page.context.new_page()
        room.goto(room_url)
        expect(room.locator("#lobby-wait")).to_be_visible(timeout=WAIT)
        party_rooms.append(room)
    host = expert.context.new_page()
    host.goto(room_url)
    waiting = host.locator("#lobby-list li")
    expect(waiting).to_have_count(2, timeout=WAIT)
    for left in (1, 0):
        waiting.first.locator("button").click()
        expect(waiting).to_have_count(left, timeout=WAIT)
    for room in (host, *party_rooms):
        room.wait_for_function(REMOTE_PLAYING, arg=2, timeout=WAIT)
    journey_shot(host, "room-expert")
    journey_shot(party_rooms[0], "room-applicant")
    journey_shot(party_rooms[1], "room-respondent")
    assert "调解员" in party_rooms[0].inner_text("#grid")

    # 7. The expert starts the session: the case is in session and the hearing live.
    expert.goto(case_url)
    expert.click("#start-session")
    expect(expert.locator(".status").first).to_have_text("调解中")
    journey_shot(expert, "session-live")

    # 8. The resident watches, comments; the drawn panelist evaluates.
    watcher.goto(f"{base}/notifications/")
    journey_shot(watcher, "panelist-notified")
    watch_url = f"{base}/watch/{public_id}/"
    # Until the first frame is drawn the page is still loading: wait for the player, not "load".
    watcher.goto(watch_url, wait_until="domcontentloaded")
    watcher.wait_for_function(PLAYER_PLAYING, timeout=WAIT)
    expect(watcher.locator("#watch-state")).to_have_text("直播中", timeout=WAIT)
    watcher.fill("#comment-text", "老板应该按时发工资，支持调解！")
    watcher.click(".comment-form button[type=submit]")
    expect(watcher.locator(".comments")).to_contain_text("支持调解", timeout=WAIT)
    journey_shot(watcher, "resident-watches-and-comments")
    panelist = watcher.context.new_page()
    panelist.goto(f"{base}/notifications/")
    panelist.click("a[href*='/evaluate/']")
    panelist.check("input[name=verdict][value=fair]")
    panelist.fill("textarea[name=reason]", "双方都能接受，工资按时付清就好。")
    panelist.click("form button[type=submit]")
    flash(panelist).to_be_visible()
    journey_shot(panelist, "panelist-evaluates")
    panelist.close()

    # 9. A private caucus with one party: viewers see the slate, not the room.
    host.locator("#member-list button", has_text="单独").first.click(timeout=WAIT)
    expect(watcher.locator("#slate-note")).to_be_visible(timeout=WAIT)
    expect(watcher.locator("#slate-note")).to_contain_text("本环节不公开")
    expect(party_rooms[1].locator("#hold")).to_be_visible(timeout=WAIT)
    journey_shot(watcher, "viewers-see-the-slate")
    journey_shot(host, "caucus")
    host.click("#end-caucus")
    expect(watcher.locator("#slate-note")).to_be_hidden(timeout=WAIT)
    # The hearing is over: everyone leaves the room and the livestream, and what follows happens
    # on the case's pages.
    for page in (host, *party_rooms, watcher):
        page.close()

    # 10. The expert drafts the agreement and sends it for signature.
    agreement_url = f"{base}/cases/{tracking_number}/agreement/"
    expert.goto(agreement_url)
    expert.click("form[action$='/agreement/start/'] button")
    expert.wait_for_url("**/agreement/edit/")
    expert.fill(
        "textarea[name=facts]",
        "申请人刘志强在被申请人周建国的装修队务工三个月，被申请人尚欠工资一万二千元。",
    )
    expert.select_option("select[name=terms-0-obligor]", "respondent")
    expert.fill("input[name=terms-0-action]", "向申请人支付拖欠工资")
    expert.fill("input[name=terms-0-amount]", "12000")
    expert.fill("input[name=terms-0-due_date]", timezone.localdate().isoformat())
    journey_shot(expert, "agreement-draft")
    expert.click("button[name=submit]")
    expert.wait_for_url(agreement_url)
    journey_shot(expert, "agreement-submitted")

    # 11. Both parties and the expert sign, each with a code from a text message.
    for page, user in (
        (applicant, world.applicant),
        (respondent, world.respondent),
        (expert, world.expert),
    ):
        page.goto(agreement_url + "sign/")
        page.click("form:has(input[name=action]) button")
        flash(page).to_be_visible()
        page.fill("input[name=code]", last_code(user.phone))
        page.fill("input[name=typed_name]", user.display_name)
        journey_shot(page, f"signs-{user.display_name}")
        page.click("#sign-form button[type=submit]")
        page.wait_for_url(agreement_url)
    journey_shot(expert, "agreement-signed")

    # 12. The PDF's QR code leads to the verify page, which says the agreement is genuine.
    pdf = applicant.context.request.get(agreement_url + "pdf/")
    assert pdf.ok and pdf.body().startswith(b"%PDF")
    verify_url = decode_qr(pdf.body())
    assert verify_url.startswith(base + "/verify/")
    checker = person(phone=True)
    checker.goto(verify_url)
    expect(checker.locator("#verify-result")).to_contain_text("真实", timeout=WAIT)
    journey_shot(checker, "qr-verify-genuine")

    # 13. When the wages fall due, the follow-up asks both parties; both say they were paid, and
    # the case is followed up and closed.
    in_thread(lambda: ask_when_due(site_url=base))
    for page, user in ((applicant, world.applicant), (respondent, world.respondent)):
        ask = last_sms(user.phone)
        assert "工资" in ask
        page.goto(re.search(r"https?://\S+/follow-up/\d+/", ask).group(0))
        journey_shot(page, f"follow-up-{user.display_name}")
        page.check("input[name=fulfilled][value=yes]")
        page.click("form button[type=submit]")
        page.wait_for_url(agreement_url)
    applicant.goto(case_url)
    expect(applicant.locator(".status").first).to_have_text("已办结")
    journey_shot(applicant, "case-closed")

    # 14. The statistics count it.
    coordinator.goto(base + "/stats/")
    figures = coordinator.locator(".headline .figure strong")
    expect(figures.nth(0)).to_have_text("1")  # cases registered
    expect(figures.nth(1)).to_have_text("100.0%")  # agreement rate
    expect(figures.nth(2)).to_have_text("1")  # concluded
    closed_row = coordinator.locator(".chart-block tr", has_text="已办结")
    expect(closed_row.locator("td").nth(1)).to_have_text("1")
    journey_shot(coordinator, "statistics")
    closed = in_thread(lambda: Case.objects.get(tracking_number=tracking_number))
    assert closed.status == "closed"


def ask_when_due(*, site_url: str) -> None:
    """The periodic follow-up job, run as the scheduler would the day after the term fell due
    (the worker sees the same SITE_URL as the web server)."""
    with override_settings(SITE_URL=site_url):
        follow_ups_process_due(now=timezone.now() + timedelta(days=1, hours=1))


def decode_qr(pdf_bytes: bytes) -> str:
    """Render the PDF's page as a printer would and read its QR code as a phone camera would."""
    import pypdfium2
    import zxingcpp

    document = pypdfium2.PdfDocument(pdf_bytes)
    try:
        for index in range(len(document)):
            image = document[index].render(scale=3).to_pil()
            found = [r.text for r in zxingcpp.read_barcodes(image) if r.text]
            if found:
                return found[0]
    finally:
        document.close()
    raise AssertionError("no QR code found in the PDF")

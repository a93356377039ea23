"""A resident on a phone: sign in with a code, file a dispute, look it up, as a browser does it."""

import re

import pytest

from accounts.models import SmsOutboxMessage
from mediation_room.models import Case
from tests.factories import CommunityFactory, UserFactory

pytestmark = pytest.mark.e2e


def _code_for(phone: str) -> str:
    message = SmsOutboxMessage.objects.filter(phone=phone).order_by("-pk").first()
    return re.search(r"(?<!\d)(\d{6})(?!\d)", message.body).group(1)


def test_resident_signs_in_with_a_code_and_files_a_case(live_server_url, phone_page, shot):
    community = CommunityFactory(name="高地社区")
    UserFactory(phone="+8613800000001", display_name="刘志强")
    page = phone_page

    page.goto(live_server_url + "/accounts/login/")
    shot(page, "1-sign-in")
    page.fill("#id_phone", "13800000001")
    page.click("form[action$='/login/code/'] button[type=submit]")
    page.wait_for_url("**/login/code/confirm/")
    page.fill("input[name=code]", _code_for("+8613800000001"))
    page.click("button[type=submit]")
    page.wait_for_url("**/cases/")
    shot(page, "2-my-cases")

    page.goto(live_server_url + "/cases/new/")
    page.select_option("#id_category", "unpaid_wages")
    page.select_option("#id_community", str(community.pk))
    page.fill("#id_description", "在装修队干了三个月，老板欠两个月工资一万二千元。")
    page.fill("#id_applicant_name", "刘志强")
    page.fill("#id_respondent_name", "周老板")
    page.fill("#id_respondent_phone", "139 1234 5678")
    page.check("#id_consent_livestream")
    shot(page, "3-form")
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r".*/cases/LP-\d{4}-\d{6}/$"))
    shot(page, "4-case")

    case = Case.objects.get()
    assert case.tracking_number in page.inner_text("h1")
    assert page.locator(".status").first.inner_text() == "已登记"
    # The page fits a 360-px phone: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    page.goto(live_server_url + "/lookup/")
    page.fill("#id_tracking_number", case.tracking_number)
    page.fill("#id_last_four", "0001")
    page.click("form.stack button[type=submit]")
    page.wait_for_selector(".timeline")
    shot(page, "5-lookup")
    text = page.inner_text("main")
    assert "周老板" not in text and "5678" not in text


def test_forms_work_without_javascript(browser, live_server_url):
    UserFactory(phone="+8613800000002")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server_url + "/accounts/login/")
    page.fill("#id_phone", "13800000002")
    page.click("form[action$='/login/code/'] button[type=submit]")
    page.fill("input[name=code]", _code_for("+8613800000002"))
    page.click("button[type=submit]")
    page.wait_for_url("**/cases/")
    context.close()

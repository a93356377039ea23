import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mediation_room.agreements import services
from mediation_room.agreements.models import Agreement, AgreementSignature, FollowUp
from mediation_room.models import CaseEvent
from tests.factories import UserFactory
from tests.mediation_room.agreement_fixtures import *  # noqa: F403 (fixtures)
from tests.mediation_room.agreement_fixtures import last_code

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style|\sstyle=", re.I)


def _url(setup, suffix=""):
    return f"/cases/{setup.case.tracking_number}/agreement/{suffix}"


def _no_inline(response):
    html = response.content.decode()
    assert not INLINE_SCRIPT.search(html) and not INLINE_STYLE.search(html)


def test_strangers_cannot_read_the_draft_or_the_pdf(
    setup, client, django_capture_on_commit_callbacks
):
    agreement = setup.locked(django_capture_on_commit_callbacks)
    client.force_login(UserFactory())
    for suffix in ("", "edit/", "sign/", "pdf/", "versions/1/", "judicial-confirmation.zip"):
        assert client.get(_url(setup, suffix)).status_code == 404, suffix
    client.force_login(setup.respondent)
    response = client.get(_url(setup, "pdf/"))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert client.get(_url(setup, "judicial-confirmation.zip")).status_code == 404
    client.force_login(setup.coordinator)
    assert client.get(_url(setup, "pdf/")).status_code == 200
    bundle = client.get(_url(setup, "judicial-confirmation.zip"))
    assert bundle.status_code == 200 and bundle["Content-Type"] == "application/zip"
    assert agreement.is_locked


def test_the_expert_edits_with_the_plain_form_and_parties_comment(setup, client):
    client.force_login(setup.expert)
    assert client.post(_url(setup, "start/")).status_code == 302
    page = client.get(_url(setup, "edit/"))
    assert page.status_code == 200
    _no_inline(page)
    data = {
        "facts": "拖欠工资一万二千元。",
        "performance_check": "转账",
        "note": "",
        "terms-TOTAL_FORMS": "3",
        "terms-INITIAL_FORMS": "0",
        "terms-MIN_NUM_FORMS": "0",
        "terms-MAX_NUM_FORMS": "30",
        "terms-0-key": "t1",
        "terms-0-obligor": "respondent",
        "terms-0-action": "向申请人支付工资",
        "terms-0-amount": "12000",
        "terms-0-due_date": "2030-01-31",
        "terms-1-key": "",
        "terms-1-obligor": "",
        "terms-1-action": "",
        "terms-2-key": "",
        "terms-2-obligor": "applicant",
        "terms-2-action": "出具收条",
    }
    response = client.post(_url(setup, "edit/"), data)
    assert response.status_code == 302
    agreement = Agreement.objects.get(case=setup.case)
    version = agreement.versions.order_by("-number").first()
    assert version.number == 2
    assert [t["key"] for t in version.content["terms"]] == ["t1", "t2"]
    assert version.content["terms"][0]["amount"] == "12000.00"
    assert version.content["terms"][0]["due_date"] == "2030-01-31"

    diff = client.get(_url(setup, "versions/2/"))
    assert diff.status_code == 200 and "diff-added" in diff.content.decode()

    client.force_login(setup.respondent)
    assert client.get(_url(setup, "edit/")).status_code == 404
    assert client.post(_url(setup, "edit/"), data).status_code == 404
    response = client.post(
        _url(setup, "comment/"), {"term_key": "t1", "kind": "change", "body": "请分两期支付"}
    )
    assert response.status_code == 302
    page = client.get(_url(setup))
    html = page.content.decode()
    assert "请分两期支付" in html and "向申请人支付工资" in html
    assert f'data-ws-path="/ws/case/{setup.case.tracking_number}/agreement/"' in html
    _no_inline(page)


def test_signing_page_flow_with_sms_code_and_typed_name(
    setup, client, django_capture_on_commit_callbacks
):
    agreement = setup.submitted()
    client.force_login(setup.applicant)
    page = client.get(_url(setup, "sign/"))
    assert page.status_code == 200 and 'id="signature-canvas"' in page.content.decode()
    _no_inline(page)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(_url(setup, "sign/"), {"action": "code"}).status_code == 302
    code = last_code(setup.applicant)
    version = agreement.final_version.number
    bad = client.post(
        _url(setup, "sign/"),
        {
            "version": version,
            "code": "999999" if code != "999999" else "111111",
            "typed_name": "张三",
        },
    )
    assert bad.status_code == 400
    ok = client.post(
        _url(setup, "sign/"),
        {"version": version, "code": code, "typed_name": "张三"},
        HTTP_USER_AGENT="Mozilla/5.0 test",
        REMOTE_ADDR="192.0.2.10",
    )
    assert ok.status_code == 302
    sig = AgreementSignature.objects.get(agreement=agreement, signer=setup.applicant)
    assert sig.method == "typed" and sig.typed_name == "张三"
    assert sig.user_agent == "Mozilla/5.0 test" and sig.address.ip == "192.0.2.10"

    client.force_login(UserFactory())
    assert client.post(_url(setup, "sign/"), {"action": "code"}).status_code == 404


def test_refusal_page(setup, client):
    setup.submitted()
    client.force_login(setup.respondent)
    response = client.post(
        _url(setup, "refuse/"),
        {"reason": "不同意金额", "referral": "arbitration", "referral_note": "劳动仲裁委员会"},
    )
    assert response.status_code == 302
    assert CaseEvent.objects.filter(case=setup.case, kind="referred").exists()


def test_verify_page_is_public_and_shows_initials_only(
    setup, client, django_capture_on_commit_callbacks
):
    agreement = setup.locked(django_capture_on_commit_callbacks)
    response = client.get(f"/verify/{agreement.code}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="verify-result"' in html and "highlight" in html
    assert agreement.hash in html and "张某" in html and "李某" in html
    assert "张三" not in html and "李四" not in html
    assert setup.applicant.phone[-4:] not in html
    _no_inline(response)
    # The typed form, with a lower-case, dashed code.
    code = agreement.code.lower()
    typed = client.get("/verify/", {"code": f"{code[:4]}-{code[4:8]}-{code[8:]}"})
    assert typed.status_code == 200 and agreement.hash in typed.content.decode()
    assert client.get("/verify/ZZZZZZZZZZZZ/").status_code == 404

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE mediation_room_agreementsignature SET name = '王五' WHERE agreement_id = %s AND role = 'respondent'",
            [agreement.pk],
        )
        cursor.execute("SET LOCAL session_replication_role = origin")
    altered = client.get(f"/verify/{agreement.code}/").content.decode()
    assert "✘" in altered


def test_follow_up_answer_page(setup, client, django_capture_on_commit_callbacks):
    agreement = setup.locked(django_capture_on_commit_callbacks)
    follow_up = FollowUp.objects.get(agreement=agreement)
    url = _url(setup, f"follow-up/{follow_up.pk}/")
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    client.force_login(setup.coordinator)
    assert client.get(url).status_code == 404  # parties answer, staff read the result
    client.force_login(setup.applicant)
    assert client.get(url).status_code == 200
    assert client.post(url, {"fulfilled": "yes"}).status_code == 302
    client.force_login(setup.respondent)
    assert client.post(url, {"fulfilled": "yes", "note": "已付清"}).status_code == 302
    follow_up.refresh_from_db()
    assert follow_up.state == FollowUp.State.FULFILLED
    setup.case.refresh_from_db()
    assert setup.case.status == "closed"


@pytest.mark.parametrize("suffix", ["", "edit/", "sign/"])
def test_pages_need_sign_in(setup, client, suffix):
    services.agreement_start(case=setup.case, actor=setup.expert)
    response = client.get(_url(setup, suffix))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_agreement_page_queries_do_not_grow_with_comments(
    setup, client, django_assert_max_num_queries
):
    agreement = setup.draft()
    client.force_login(setup.respondent)
    services.agreement_comment(agreement=agreement, actor=setup.applicant, body="一", term_key="t1")
    client.get(_url(setup))  # warm caches (session, content types)
    with CaptureQueriesContext(connection) as one:
        assert client.get(_url(setup)).status_code == 200
    for n in range(12):
        services.agreement_comment(
            agreement=agreement, actor=setup.applicant, body=f"意见{n}", term_key="t2"
        )
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert client.get(_url(setup)).status_code == 200

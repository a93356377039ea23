from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Notification
from mediation_room.errors import CaseError, NotPermitted
from mediation_room.models import CaseEvent, SupervisionNotice
from mediation_room.supervision.services import (
    supervision_notice_answer,
    supervision_notice_issue,
)
from mediation_room.supervision_hooks import open_supervision
from tests.factories import UserFactory, advance, make_case, make_coordinator


@pytest.fixture
def matched_case(community, coordinator, expert):
    case = make_case(community=community)
    advance(case, "matched", coordinator=coordinator, expert=expert)
    return case


def test_coordinator_issues_a_notice_the_mediator_answers(matched_case, coordinator, expert):
    due = timezone.now() + timedelta(days=2)

    notice = supervision_notice_issue(
        case=matched_case, issued_by=coordinator, to_user=expert, text="请尽快安排调解时间", due=due
    )

    sms = Notification.objects.get(kind="supervision_notice", user=expert, channel="sms")
    assert f"/supervision/notices/{notice.pk}/" in sms.body
    assert CaseEvent.objects.filter(case=matched_case, kind="supervision_notice").count() == 1

    supervision_notice_answer(notice=notice, actor=expert, answer="已约定周五下午调解")

    notice.refresh_from_db()
    assert notice.answered_at is not None and notice.answer == "已约定周五下午调解"
    assert Notification.objects.filter(kind="supervision_answered", user=coordinator).exists()
    with pytest.raises(CaseError):
        supervision_notice_answer(notice=notice, actor=expert, answer="再次回复")


def test_only_coordinators_issue_and_only_the_addressee_answers(matched_case, coordinator, expert):
    stranger = UserFactory()
    due = timezone.now() + timedelta(days=1)
    with pytest.raises(NotPermitted):
        supervision_notice_issue(
            case=matched_case, issued_by=expert, to_user=coordinator, text="x", due=due
        )
    with pytest.raises(CaseError):
        supervision_notice_issue(
            case=matched_case, issued_by=coordinator, to_user=stranger, text="x", due=due
        )
    with pytest.raises(ValidationError):
        supervision_notice_issue(
            case=matched_case,
            issued_by=coordinator,
            to_user=expert,
            text="x",
            due=timezone.now() - timedelta(hours=1),
        )
    notice = supervision_notice_issue(
        case=matched_case, issued_by=coordinator, to_user=expert, text="x", due=due
    )
    with pytest.raises(NotPermitted):
        supervision_notice_answer(notice=notice, actor=coordinator, answer="代答")
    assert SupervisionNotice.objects.count() == 1


def test_open_supervision_hook_is_idempotent_per_reason(community):
    case = make_case(community=community)
    local = make_coordinator(community, street_level=False)

    first = open_supervision(case, "协议第2条未按期履行")
    again = open_supervision(case, "协议第2条未按期履行")
    other = open_supervision(case, "协议第3条未按期履行")

    assert first.pk == again.pk != other.pk
    assert first.to_user == local and first.issued_by is None
    assert Notification.objects.filter(kind="supervision_notice", channel="sms").count() == 2


def test_open_supervision_without_any_coordinator_returns_none(community):
    assert open_supervision(make_case(community=community), "未履行") is None


def test_unanswered_notice_stays_visible_and_can_be_answered_from_its_page(
    client, matched_case, coordinator, expert
):
    notice = supervision_notice_issue(
        case=matched_case,
        issued_by=coordinator,
        to_user=expert,
        text="请说明延误原因",
        due=timezone.now() + timedelta(days=1),
    )
    client.force_login(coordinator)
    assert "请说明延误原因" in client.get("/supervision/").content.decode()

    client.force_login(expert)
    assert "请说明延误原因" in client.get("/supervision/notices/").content.decode()
    response = client.post(f"/supervision/notices/{notice.pk}/", {"answer": ""})
    assert response.status_code == 400
    response = client.post(f"/supervision/notices/{notice.pk}/", {"answer": "已处理"})
    assert response.status_code == 302

    client.force_login(coordinator)
    assert "请说明延误原因" not in client.get("/supervision/").content.decode()
    assert "已处理" in client.get(f"/supervision/notices/{notice.pk}/").content.decode()


def test_notice_page_is_hidden_from_strangers(client, matched_case, coordinator, expert):
    notice = supervision_notice_issue(
        case=matched_case,
        issued_by=coordinator,
        to_user=expert,
        text="x",
        due=timezone.now() + timedelta(days=1),
    )
    client.force_login(UserFactory())
    assert client.get(f"/supervision/notices/{notice.pk}/").status_code == 404
    assert client.post(f"/supervision/notices/{notice.pk}/", {"answer": "y"}).status_code == 404
    assert client.get("/supervision/").status_code == 404


def test_issue_notice_page(client, matched_case, coordinator, expert):
    client.force_login(coordinator)
    url = f"/supervision/cases/{matched_case.tracking_number}/notice/"
    assert url in client.get(f"/cases/{matched_case.tracking_number}/").content.decode()
    assert client.get(url).status_code == 200
    due = (timezone.localtime() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")

    response = client.post(url, {"to_user": expert.pk, "text": "请推进", "due": due})

    assert response.status_code == 302
    assert SupervisionNotice.objects.get().to_user == expert
    forged = client.post(url, {"to_user": 999999, "text": "请推进", "due": due})
    assert forged.status_code == 400


def test_parties_cannot_issue_notices(client, matched_case):
    applicant = matched_case.parties.get(role="applicant").user
    client.force_login(applicant)
    url = f"/supervision/cases/{matched_case.tracking_number}/notice/"
    assert url not in client.get(f"/cases/{matched_case.tracking_number}/").content.decode()
    assert client.get(url).status_code == 404

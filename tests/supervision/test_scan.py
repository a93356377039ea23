from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine

from accounts.models import CoordinatorPost, Notification
from mediation_room import services
from mediation_room.models import CaseEvent, StageDeadlineRule, SupervisionAlert
from mediation_room.supervision import selectors
from mediation_room.supervision.services import supervision_scan
from tests.factories import CommunityFactory, make_case, make_coordinator, make_expert

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)


def _setup(community):
    community_coordinator = make_coordinator(community, street_level=False)
    street_coordinator = make_coordinator(community, street_level=True)
    with time_machine.travel(MONDAY_9, tick=False):
        case = make_case(community=community)
    return case, community_coordinator, street_coordinator


def test_overdue_case_is_announced_once_then_escalated_once(community):
    case, local, street = _setup(community)

    # Registered must be accepted within 1 working day: overdue from Tuesday 09:00.
    with time_machine.travel(MONDAY_9 + timedelta(days=1, minutes=5), tick=False):
        first = supervision_scan()
        again = supervision_scan()
    assert first.overdue == [case.pk] and first.escalated == []
    assert again.overdue == [] and again.escalated == []
    assert CaseEvent.objects.filter(case=case, kind="supervision_overdue").count() == 1
    assert Notification.objects.filter(kind="supervision_overdue", user=local).count() == 2
    assert not Notification.objects.filter(user=street).exists()

    # Escalation two working days past the deadline: Thursday 09:00.
    with time_machine.travel(MONDAY_9 + timedelta(days=2, hours=23), tick=False):
        assert supervision_scan().escalated == []
    with time_machine.travel(MONDAY_9 + timedelta(days=3, minutes=1), tick=False):
        escalated = supervision_scan()
        later = supervision_scan()
    assert escalated.escalated == [case.pk]
    assert later.escalated == []
    event = CaseEvent.objects.get(case=case, kind="supervision_escalated")
    assert event.data["to_user_ids"] == [street.pk]
    sms = Notification.objects.filter(kind="supervision_escalated", user=street, channel="sms")
    assert sms.count() == 1
    assert f"/cases/{case.tracking_number}/" in sms.get().body
    assert SupervisionAlert.objects.filter(case=case).count() == 2


def test_escalation_period_comes_from_the_rule(community):
    StageDeadlineRule.objects.create(status="registered", working_days=1, escalate_after_days=0)
    case, _local, street = _setup(community)

    with time_machine.travel(MONDAY_9 + timedelta(days=1, minutes=5), tick=False):
        result = supervision_scan()

    assert result.overdue == [case.pk] and result.escalated == [case.pk]
    assert Notification.objects.filter(kind="supervision_escalated", user=street).exists()


def test_a_new_stage_is_supervised_afresh(community, expert):
    case, local, _street = _setup(community)
    with time_machine.travel(MONDAY_9 + timedelta(days=1, minutes=5), tick=False):
        supervision_scan()
        services.case_accept(case=case, actor=local)
    # Accepted must be matched within 3 working days: overdue from Friday 09:05.
    with time_machine.travel(MONDAY_9 + timedelta(days=4, minutes=10), tick=False):
        result = supervision_scan()
    assert result.overdue == [case.pk]
    assert list(
        SupervisionAlert.objects.filter(case=case).values_list("stage", flat=True).order_by("pk")
    ) == ["registered", "accepted"]


def test_stage_owner_is_the_mediator_once_matched(community):
    case, local, _street = _setup(community)
    expert = make_expert()
    with time_machine.travel(MONDAY_9 + timedelta(hours=1), tick=False):
        services.case_accept(case=case, actor=local)
        services.case_match(case=case, expert=expert, actor=local)
    case.refresh_from_db()

    assert selectors.stage_owners(case) == [expert]
    with time_machine.travel(MONDAY_9 + timedelta(days=9), tick=False):
        supervision_scan()
    assert Notification.objects.filter(kind="supervision_overdue", user=expert).exists()


def test_terminal_and_on_time_cases_are_left_alone(community):
    case, local, _street = _setup(community)
    with time_machine.travel(MONDAY_9 + timedelta(hours=1), tick=False):
        services.case_decline(case=case, actor=local, reason="不属于调解范围")
    with time_machine.travel(MONDAY_9 + timedelta(days=30), tick=False):
        result = supervision_scan()
    assert result.overdue == [] and not SupervisionAlert.objects.exists()


def test_supervision_list_shows_how_late_and_only_own_communities(client, community):
    case, local, _street = _setup(community)
    other_street = CommunityFactory()
    with time_machine.travel(MONDAY_9, tick=False):
        foreign = make_case(community=other_street)
    make_coordinator(other_street)

    with time_machine.travel(MONDAY_9 + timedelta(days=3, hours=2), tick=False):
        supervision_scan()
        client.force_login(local)
        response = client.get("/supervision/")

    assert response.status_code == 200
    page = response.content.decode().replace("\xa0", " ")
    assert case.tracking_number in page
    assert foreign.tracking_number not in page
    assert "2 日，2 小时" in page  # how late, in Chinese by default
    rows = list(selectors.overdue_cases(local, now=MONDAY_9 + timedelta(days=3, hours=2)))
    assert [r.pk for r in rows] == [case.pk]
    assert rows[0].escalated is True


def test_street_coordinators_are_street_level_posts_only(community):
    _case, local, street = _setup(community)
    case = _case
    assert selectors.street_coordinators(case) == [street]
    assert selectors.case_coordinators(case) == [local]
    CoordinatorPost.objects.filter(user=local).delete()
    assert selectors.case_coordinators(case) == [street]

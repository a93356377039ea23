from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine

from mediation_room import lifecycle, services
from mediation_room.models import CaseEvent, StageDeadlineRule
from tests.factories import make_case

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)


def test_stage_deadline_falls_back_to_settings(db, settings):
    settings.STAGE_DEADLINE_DAYS = {**settings.STAGE_DEADLINE_DAYS, "accepted": 3}

    deadline = lifecycle.stage_deadline("accepted", MONDAY_9, "family")

    assert deadline == datetime(2026, 3, 5, 9, 0, tzinfo=SHANGHAI)


def test_rule_for_every_category_overrides_settings(db):
    StageDeadlineRule.objects.create(category="", status="accepted", working_days=4)

    assert lifecycle.stage_deadline("accepted", MONDAY_9, "family") == datetime(
        2026, 3, 6, 9, 0, tzinfo=SHANGHAI
    )


def test_category_rule_wins_over_general_rule_and_skips_weekends(db):
    StageDeadlineRule.objects.create(category="", status="accepted", working_days=4)
    StageDeadlineRule.objects.create(
        category="unpaid_wages", status="accepted", working_days=5, escalate_after_days=1
    )

    # Monday + 5 working days = next Monday; the weekend does not count.
    assert lifecycle.stage_deadline("accepted", MONDAY_9, "unpaid_wages") == datetime(
        2026, 3, 9, 9, 0, tzinfo=SHANGHAI
    )
    assert lifecycle.stage_rule("accepted", "unpaid_wages") == (5, 1)
    assert lifecycle.stage_rule("accepted", "family") == (4, 2)


def test_stage_without_deadline(db):
    assert lifecycle.stage_deadline("closed", MONDAY_9) is None


def test_transition_records_the_deadline_of_the_stage_left(db, coordinator, community):
    with time_machine.travel(MONDAY_9, tick=False):
        case = make_case(community=community)
    with time_machine.travel(datetime(2026, 3, 4, 9, 0, tzinfo=SHANGHAI), tick=False):
        services.case_accept(case=case, actor=coordinator)

    event = CaseEvent.objects.get(case=case, to_status="accepted")
    assert event.data["on_time"] is False
    assert datetime.fromisoformat(event.data["stage_deadline"]) == datetime(
        2026, 3, 3, 9, 0, tzinfo=SHANGHAI
    )


def test_rules_are_editable_in_the_admin(admin_client):
    response = admin_client.post(
        "/admin/mediation_room/stagedeadlinerule/add/",
        {"category": "family", "status": "accepted", "working_days": 2, "escalate_after_days": 1},
    )
    assert response.status_code == 302
    assert lifecycle.stage_rule("accepted", "family") == (2, 1)
    assert admin_client.get("/admin/mediation_room/stagedeadlinerule/").status_code == 200
    assert admin_client.get("/admin/django_celery_beat/periodictask/").status_code == 200

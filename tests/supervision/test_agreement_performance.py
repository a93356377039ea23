"""Agreement performance on the dashboard from the agreements' own follow-ups, and the
supervision notice an unfulfilled term opens."""

from datetime import datetime, time, timedelta

import time_machine
from django.utils import timezone

from mediation_room.agreements import services
from mediation_room.agreements.models import FollowUp
from mediation_room.models import CaseEvent, SupervisionNotice
from mediation_room.supervision import statistics
from tests.mediation_room.agreement_fixtures import *  # noqa: F403 (fixtures)

TODAY = timezone.localdate()


def _day(n: int) -> datetime:
    return datetime.combine(
        TODAY + timedelta(days=n), time(10, 0), tzinfo=timezone.get_current_timezone()
    )


def _terms():
    return [
        {
            "key": "t1",
            "obligor": "respondent",
            "action": "支付第一期工资",
            "amount": "6000",
            "due_date": (TODAY + timedelta(days=10)).isoformat(),
        },
        {
            "key": "t2",
            "obligor": "respondent",
            "action": "支付第二期工资",
            "amount": "6000",
            "due_date": (TODAY + timedelta(days=20)).isoformat(),
        },
    ]


def test_unfulfilled_term_counts_against_performance_and_opens_a_notice(
    setup, django_capture_on_commit_callbacks
):
    agreement = setup.locked(django_capture_on_commit_callbacks, terms=_terms())
    services.follow_ups_process_due(now=_day(11))
    first = FollowUp.objects.get(agreement=agreement, term_key="t1")
    services.follow_up_answer(
        follow_up=first, actor=setup.applicant, fulfilled=False, note="只收到三千元"
    )

    with time_machine.travel(_day(12), tick=False):
        board = statistics.dashboard(statistics.coordinator_scope(setup.coordinator))

    # t1 came due and was not fulfilled; t2 is not due yet.
    performance = board["performance"]
    assert (performance["due"], performance["on_time"], performance["rate"]) == (1, 0, 0.0)
    notice = SupervisionNotice.objects.get(case=setup.case)
    assert notice.to_user == setup.coordinator and notice.answered_at is None
    assert "支付第一期工资" in notice.text
    assert CaseEvent.objects.filter(case=setup.case, kind="supervision_opened").count() == 1


def test_a_term_confirmed_paid_before_its_due_date_counts_as_fulfilled_on_time(
    setup, django_capture_on_commit_callbacks
):
    agreement = setup.locked(django_capture_on_commit_callbacks, terms=_terms())
    # Both parties confirm t1 (due on day 10); the dashboard is read on day 5, before it is due.
    services.follow_ups_process_due(now=_day(11))
    first = FollowUp.objects.get(agreement=agreement, term_key="t1")
    for party in (setup.applicant, setup.respondent):
        services.follow_up_answer(follow_up=first, actor=party, fulfilled=True, note="")
    first.refresh_from_db()
    assert first.state == FollowUp.State.FULFILLED

    with time_machine.travel(_day(5), tick=False):
        board = statistics.dashboard(statistics.coordinator_scope(setup.coordinator))

    performance = board["performance"]
    assert (performance["due"], performance["on_time"], performance["rate"]) == (1, 1, 100.0)

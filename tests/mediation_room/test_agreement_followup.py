import time
from datetime import datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Notification, SmsOutboxMessage
from mediation_room.agreements import services
from mediation_room.agreements.models import FollowUp
from mediation_room.agreements.tasks import follow_ups_due
from mediation_room.errors import CaseError, NotPermitted
from mediation_room.models import CaseEvent, Status
from tests.factories import UserFactory
from tests.mediation_room.agreement_fixtures import *  # noqa: F403 (fixtures)
from tests.waits import wait_for

TODAY = timezone.localdate()


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
        {"key": "t3", "obligor": "applicant", "action": "出具收条", "amount": "", "due_date": ""},
    ]


def _day(days: int) -> datetime:
    """Local noon `days` after today."""
    return timezone.make_aware(
        datetime.combine(TODAY + timedelta(days=days), datetime.min.time()) + timedelta(hours=12)
    )


@pytest.fixture
def locked_agreement(tsetup):
    """Locked before the worker starts (eagerly), so that signing codes are read at once."""
    return tsetup.locked(terms=_terms())


def _asks(follow_up) -> int:
    return SmsOutboxMessage.objects.filter(body__contains=f"/follow-up/{follow_up.pk}/").count()


@pytest.mark.worker
def test_follow_ups_run_through_a_real_worker_at_their_deadlines(
    tsetup, locked_agreement, celery_worker_real
):
    first = FollowUp.objects.get(agreement=locked_agreement, term_key="t1")
    second = FollowUp.objects.get(agreement=locked_agreement, term_key="t2")
    assert FollowUp.objects.filter(agreement=locked_agreement).count() == 2  # t3 has no deadline

    # Before the first deadline nothing is asked.
    follow_ups_due.delay()
    follow_ups_due.delay()
    with time_machine.travel(_day(11), tick=True):
        # Two runs of the periodic task (beat firing twice, or two beats): asked once.
        follow_ups_due.delay()
        follow_ups_due.delay()
        wait_for(lambda: _asks(first) >= 2, "the parties to be asked about term 1", 30)
        time.sleep(1)  # let a duplicate, if there were one, arrive
        first.refresh_from_db()
        second.refresh_from_db()
        assert first.state == FollowUp.State.ASKED
        assert second.state == FollowUp.State.PENDING
        assert _asks(first) == 2
        assert _asks(second) == 0

        services.follow_up_answer(follow_up=first, actor=tsetup.applicant, fulfilled=True)
        services.follow_up_answer(follow_up=first, actor=tsetup.respondent, fulfilled=True)
        first.refresh_from_db()
        assert first.state == FollowUp.State.FULFILLED
        tsetup.case.refresh_from_db()
        assert tsetup.case.status == Status.AGREED  # term 2 still open

    with time_machine.travel(_day(21), tick=True):
        follow_ups_due.delay()
        follow_ups_due.delay()
        wait_for(lambda: _asks(second) >= 2, "the parties to be asked about term 2", 30)
        time.sleep(1)
        assert _asks(first) == 2 and _asks(second) == 2
        services.follow_up_answer(follow_up=second, actor=tsetup.respondent, fulfilled=True)
        services.follow_up_answer(follow_up=second, actor=tsetup.applicant, fulfilled=True)

    tsetup.case.refresh_from_db()
    assert tsetup.case.status == Status.CLOSED
    kinds = list(CaseEvent.objects.filter(case=tsetup.case).values_list("to_status", flat=True))
    assert kinds.count("followed_up") == 1 and kinds.count("closed") == 1
    assert CaseEvent.objects.filter(case=tsetup.case, kind="follow_up_asked").count() == 2


def test_an_unfulfilled_term_alerts_the_coordinator_and_opens_supervision(
    setup, django_capture_on_commit_callbacks
):
    agreement = setup.locked(django_capture_on_commit_callbacks, terms=_terms())
    result = services.follow_ups_process_due(now=_day(11))
    assert result == {"asked": 1, "escalated": 0}
    assert services.follow_ups_process_due(now=_day(11)) == {"asked": 0, "escalated": 0}
    first = FollowUp.objects.get(agreement=agreement, term_key="t1")

    with pytest.raises(NotPermitted):
        services.follow_up_answer(follow_up=first, actor=UserFactory(), fulfilled=True)
    services.follow_up_answer(
        follow_up=first, actor=setup.applicant, fulfilled=False, note="只收到三千元"
    )
    first.refresh_from_db()
    assert first.state == FollowUp.State.UNFULFILLED
    assert CaseEvent.objects.filter(case=setup.case, kind="supervision_opened").count() == 1
    alerts = Notification.objects.filter(user=setup.coordinator, kind="follow_up_unfulfilled")
    assert alerts.filter(channel="in_app").count() == 1
    with pytest.raises(CaseError):
        services.follow_up_answer(follow_up=first, actor=setup.respondent, fulfilled=True)


def test_a_term_nobody_answers_is_escalated_once(setup, django_capture_on_commit_callbacks):
    agreement = setup.locked(django_capture_on_commit_callbacks, terms=_terms())
    services.follow_ups_process_due(now=_day(11))
    assert services.follow_ups_process_due(now=_day(13)) == {"asked": 0, "escalated": 0}
    assert services.follow_ups_process_due(now=_day(15)) == {"asked": 0, "escalated": 1}
    assert services.follow_ups_process_due(now=_day(16)) == {"asked": 0, "escalated": 0}
    first = FollowUp.objects.get(agreement=agreement, term_key="t1")
    assert first.state == FollowUp.State.UNANSWERED
    assert CaseEvent.objects.filter(case=setup.case, kind="supervision_opened").count() == 1

"""Reminders and escalations as production runs them: the beat schedules created by
`setup_schedules`, django-celery-beat's DatabaseScheduler deciding what is due (the loop of
`celery beat`), and a real Celery worker on Redis executing the tasks, with shifted time."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from accounts.models import Notification, SmsOutboxMessage
from cloudbench.celery import app
from mediation_room import services
from mediation_room.models import CaseEvent, SupervisionAlert
from mediation_room.supervision import periodic
from mediation_room.tasks import supervision_scan
from tests.factories import UserFactory, make_case, make_coordinator, make_expert
from tests.waits import wait_for

pytestmark = pytest.mark.worker

SHANGHAI = ZoneInfo("Asia/Shanghai")
BASE = datetime(2027, 1, 4, 9, 0, tzinfo=SHANGHAI)  # a Monday
JOBS = ("hearing_reminders", "supervision_scan")


def _beat_round(*, extra: int = 0) -> None:
    """One pass of celery beat's loop with django-celery-beat's DatabaseScheduler: read the
    schedule from the database, send every entry that is due (reserving it, which records its
    last run), write the entries back; then wait until the worker has run the tasks and the
    notifications they queued have been delivered. `extra` = tasks sent by hand meanwhile."""
    before = {name: periodic.runs_finished(name) for name in JOBS}
    scheduler = DatabaseScheduler(app=app)
    try:
        sent = []
        for entry in list(scheduler.schedule.values()):
            if entry.task.startswith("mediation_room.tasks.") and entry.is_due().is_due:
                scheduler.apply_entry(scheduler.reserve(entry), producer=scheduler.producer)
                sent.append(entry.task.rsplit(".", 1)[1])
    finally:
        scheduler.close()
    assert sorted(sent) == sorted(JOBS)
    wait_for(
        lambda: (
            all(periodic.runs_finished(n) >= before[n] + 1 for n in JOBS)
            and periodic.runs_finished("supervision_scan") >= before["supervision_scan"] + 1 + extra
        ),
        "the beat tasks",
    )
    wait_for(
        lambda: not Notification.objects.filter(status="queued").exists(),
        "notification delivery",
    )


def _at(moment: datetime):
    # Ticking: the worker's threads and Redis timeouts need time to move on.
    return time_machine.travel(moment, tick=True)


def _scheduled_hearing(community, starts_at):
    coordinator = make_coordinator(community)
    case = make_case(community=community, respondent=UserFactory())
    services.case_accept(case=case, actor=coordinator)
    services.case_match(case=case, expert=make_expert(), actor=coordinator)
    hearing = services.hearing_schedule(
        case=case, actor=coordinator, starts_at=starts_at, ends_at=starts_at + timedelta(hours=2)
    )
    return hearing, coordinator


def _sms(kind: str) -> int:
    return Notification.objects.filter(kind=kind, channel="sms", status="sent").count()


def test_hearing_reminders_sent_once_each_and_none_for_cancelled(celery_worker_real, community):
    start = BASE + timedelta(hours=30)
    with _at(BASE):
        call_command("setup_schedules")
        call_command("setup_schedules")  # idempotent
        assert PeriodicTask.objects.filter(task__startswith="mediation_room.tasks.").count() == 2
        hearing, _ = _scheduled_hearing(community, start)
        cancelled, coordinator = _scheduled_hearing(community, start)
        services.hearing_cancel(hearing=cancelled, actor=coordinator, reason="改期待定")

    with _at(start - timedelta(hours=23)):
        _beat_round()
    assert _sms("hearing_reminder_day") == 3
    assert _sms("hearing_reminder_hour") == 0

    with _at(start - timedelta(hours=22)):
        _beat_round()
    assert _sms("hearing_reminder_day") == 3

    with _at(start - timedelta(minutes=55)):
        _beat_round()
    with _at(start - timedelta(minutes=35)):
        _beat_round()
    assert _sms("hearing_reminder_hour") == 3
    assert _sms("hearing_reminder_day") == 3

    reminded = Notification.objects.filter(kind__startswith="hearing_reminder", channel="sms")
    assert {n.case_ref for n in reminded} == {hearing.case.tracking_number}
    assert all(f"/room/{hearing.public_id}/" in n.body for n in reminded)
    # The SMS really left through the backend (console outbox), once per message.
    assert (
        SmsOutboxMessage.objects.filter(body__contains="/room/")
        .filter(body__contains=hearing.public_id)
        .count()
        == 3 + 6
    )  # scheduled notice + two reminders, to three people


def test_overdue_case_escalates_once_through_beat(celery_worker_real, community):
    with _at(BASE):
        call_command("setup_schedules")
        local = make_coordinator(community, street_level=False)
        street = make_coordinator(community, street_level=True)
        case = make_case(community=community)

    # Past the one working day to accept: announced to the community's coordinator.
    with _at(BASE + timedelta(days=1, hours=1)):
        supervision_scan.delay()  # a second run racing the scheduled one changes nothing
        _beat_round(extra=1)
    with _at(BASE + timedelta(days=1, hours=2)):
        _beat_round()
    assert CaseEvent.objects.filter(case=case, kind="supervision_overdue").count() == 1
    assert (
        Notification.objects.filter(kind="supervision_overdue", user=local, channel="sms").count()
        == 1
    )
    assert not Notification.objects.filter(user=street).exists()

    # Two more working days: escalated to the street-level coordinator, once.
    with _at(BASE + timedelta(days=3, hours=1)):
        _beat_round()
    with _at(BASE + timedelta(days=3, hours=2)):
        supervision_scan.delay()
        _beat_round(extra=1)
    assert CaseEvent.objects.filter(case=case, kind="supervision_escalated").count() == 1
    assert _sms("supervision_escalated") == 1
    assert Notification.objects.get(kind="supervision_escalated", channel="sms").user == street
    assert SupervisionAlert.objects.filter(case=case).count() == 2


def test_every_periodic_task_has_a_beat_schedule(db):
    """A task meant to run on a schedule that nobody scheduled never runs: every task named by
    the project's periodic jobs exists, and setup_schedules installs each of them once."""
    from mediation_room.management.commands.setup_schedules import SCHEDULES

    app.loader.import_default_modules()
    names = {task for task, _minutes in SCHEDULES.values()}
    assert names <= set(app.tasks)
    assert {
        "mediation_room.agreements.tasks.follow_ups_due",
        "experts.tasks.lapse_due_invitations",
        "voting.tasks.publish_due_consultations",
    } <= names
    call_command("setup_schedules")
    call_command("setup_schedules")
    assert PeriodicTask.objects.filter(task__in=names, enabled=True).count() == len(SCHEDULES)

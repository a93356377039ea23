from datetime import timedelta

import time_machine
from django.utils import timezone

from accounts.models import Notification
from mediation_room import services
from mediation_room.models import Hearing
from mediation_room.supervision.reminders import hearing_reminders_send, reminder_kind
from tests.factories import UserFactory, make_case, make_coordinator, make_expert


def _scheduled(community, *, hours_ahead: float):
    coordinator = make_coordinator(community)
    case = make_case(community=community, respondent=UserFactory())
    services.case_accept(case=case, actor=coordinator)
    services.case_match(case=case, expert=make_expert(), actor=coordinator)
    start = timezone.now() + timedelta(hours=hours_ahead)
    hearing = services.hearing_schedule(
        case=case, actor=coordinator, starts_at=start, ends_at=start + timedelta(hours=1)
    )
    return hearing, coordinator


def test_reminder_windows():
    start = timezone.now() + timedelta(hours=30)
    assert reminder_kind(start, start - timedelta(hours=25)) is None
    assert reminder_kind(start, start - timedelta(hours=24)) == "day"
    assert reminder_kind(start, start - timedelta(hours=2)) == "day"
    assert reminder_kind(start, start - timedelta(minutes=60)) == "hour"
    assert reminder_kind(start, start) is None


def test_each_reminder_goes_to_parties_and_mediator_once_with_the_link(community):
    hearing, _coordinator = _scheduled(community, hours_ahead=30)
    start = hearing.starts_at

    with time_machine.travel(start - timedelta(hours=23), tick=False):
        assert hearing_reminders_send() == 3
        hearing_reminders_send()
    with time_machine.travel(start - timedelta(minutes=50), tick=False):
        hearing_reminders_send()
        hearing_reminders_send()

    day = Notification.objects.filter(kind="hearing_reminder_day", channel="sms")
    hour = Notification.objects.filter(kind="hearing_reminder_hour", channel="sms")
    assert day.count() == 3 and hour.count() == 3
    assert all(f"/room/{hearing.public_id}/" in n.body for n in [*day, *hour])
    # In-app too, for everyone who has an account (both parties and the mediator here).
    assert Notification.objects.filter(kind="hearing_reminder_hour", channel="in_app").count() == 3


def test_no_reminder_for_a_cancelled_hearing(community):
    hearing, coordinator = _scheduled(community, hours_ahead=30)
    services.hearing_cancel(hearing=hearing, actor=coordinator, reason="专家临时有事")

    with time_machine.travel(hearing.starts_at - timedelta(minutes=30), tick=False):
        assert hearing_reminders_send() == 0
    assert not Notification.objects.filter(kind__startswith="hearing_reminder").exists()
    assert Notification.objects.filter(kind="hearing_cancelled", channel="sms").count() == 3


def test_withdrawing_cancels_the_hearing_and_tells_everyone(community):
    hearing, _coordinator = _scheduled(community, hours_ahead=30)
    applicant = hearing.case.parties.get(role="applicant").user

    services.case_withdraw(case=hearing.case, actor=applicant, reason="已自行和解")

    hearing.refresh_from_db()
    assert hearing.state == Hearing.State.CANCELLED
    assert Notification.objects.filter(kind="hearing_cancelled", channel="sms").count() == 3
    with time_machine.travel(hearing.starts_at - timedelta(minutes=30), tick=False):
        assert hearing_reminders_send() == 0


def test_moving_a_hearing_tells_everyone_and_reminds_for_the_new_time(community):
    hearing, coordinator = _scheduled(community, hours_ahead=30)
    old_start = hearing.starts_at
    with time_machine.travel(old_start - timedelta(hours=23), tick=False):
        hearing_reminders_send()

        new_start = old_start + timedelta(days=2)
        services.hearing_reschedule(
            hearing=hearing,
            actor=coordinator,
            starts_at=new_start,
            ends_at=new_start + timedelta(hours=1),
            reason="当事人出差",
        )
    moved = Notification.objects.filter(kind="hearing_rescheduled", channel="sms")
    assert moved.count() == 3
    assert all(f"/room/{hearing.public_id}/" in n.body for n in moved)

    # The old time passes quietly; the new time gets its own reminders.
    with time_machine.travel(old_start - timedelta(minutes=30), tick=False):
        assert hearing_reminders_send() == 0
    with time_machine.travel(new_start - timedelta(minutes=30), tick=False):
        hearing_reminders_send()
    assert Notification.objects.filter(kind="hearing_reminder_day", channel="sms").count() == 3
    assert Notification.objects.filter(kind="hearing_reminder_hour", channel="sms").count() == 3


def test_only_mediator_or_coordinator_may_move_a_hearing(client, community):
    hearing, coordinator = _scheduled(community, hours_ahead=30)
    applicant = hearing.case.parties.get(role="applicant").user
    url = f"/hearings/{hearing.public_id}/reschedule/"
    new_start = timezone.localtime(hearing.starts_at + timedelta(days=1))
    form = {
        "starts_at": new_start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (new_start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "reason": "改期",
    }

    client.force_login(applicant)
    assert client.post(url, form).status_code == 404

    client.force_login(coordinator)
    assert client.get(url).status_code == 200
    assert client.post(url, form).status_code == 302
    hearing.refresh_from_db()
    assert timezone.localtime(hearing.starts_at).strftime("%Y-%m-%dT%H:%M") == form["starts_at"]
    bad = {**form, "ends_at": form["starts_at"]}
    assert client.post(url, bad).status_code == 400

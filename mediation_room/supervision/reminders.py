"""Hearing reminders: every party and the mediator are texted (and told in-app) the day before
and an hour before a hearing, with the room link. Celery beat runs `hearing_reminders_send`
every few minutes; each reminder goes out once."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.services import notify_person

from ..models import Hearing, Status
from .selectors import hearing_recipients

DAY_BEFORE = timedelta(hours=24)
HOUR_BEFORE = timedelta(hours=1)


def reminder_kind(starts_at: datetime, now: datetime) -> str | None:
    """Which reminder is due at `now`: "hour" within the last hour, "day" within the last day,
    None otherwise. A run that misses a window (beat was down) sends the nearer reminder only."""
    lead = starts_at - now
    if lead <= timedelta(0):
        return None
    if lead <= HOUR_BEFORE:
        return "hour"
    if lead <= DAY_BEFORE:
        return "day"
    return None


def hearing_reminders_send(*, now: datetime | None = None) -> int:
    """Send the reminders due now; returns how many people were reminded (new or not).

    Idempotent: the dedupe key names the hearing, its start time and the reminder, so running
    twice sends nothing new and a moved hearing gets fresh reminders. Cancelled hearings and
    hearings of cases no longer scheduled are skipped; the hearing row is locked while its
    reminders are queued, so a cancellation cannot slip in between."""
    now = now or timezone.now()
    due = (
        Hearing.objects.filter(
            state=Hearing.State.SCHEDULED,
            starts_at__gt=now,
            starts_at__lte=now + DAY_BEFORE,
            case__status=Status.SCHEDULED,
        )
        .order_by("starts_at")
        .values_list("pk", flat=True)
    )
    reminded = 0
    for hearing_id in list(due):
        reminded += _remind(hearing_id, now)
    return reminded


@transaction.atomic
def _remind(hearing_id: int, now: datetime) -> int:
    hearing = (
        Hearing.objects.select_for_update(of=("self",))
        .select_related("case__expert")
        .filter(pk=hearing_id, state=Hearing.State.SCHEDULED, case__status=Status.SCHEDULED)
        .first()
    )
    if hearing is None:
        return 0
    kind = reminder_kind(hearing.starts_at, now)
    if kind is None:
        return 0
    case = hearing.case
    when = timezone.localtime(hearing.starts_at).strftime("%Y-%m-%d %H:%M")
    if kind == "hour":
        body = _(
            "[Cloud Bench] Reminder: the mediation session of case %(number)s starts in "
            "about an hour, at %(when)s. Join here:"
        )
    else:
        body = _(
            "[Cloud Bench] Reminder: the mediation session of case %(number)s is tomorrow, "
            "%(when)s. Join here:"
        )
    link = f"{settings.SITE_URL}/room/{hearing.public_id}/check/"
    recipients = hearing_recipients(case)
    for user, phone, key in recipients:
        notify_person(
            kind=f"hearing_reminder_{kind}",
            body=body % {"number": case.tracking_number, "when": when},
            dedupe_key=(
                f"hearing-reminder:{kind}:{hearing.pk}:{int(hearing.starts_at.timestamp())}:{key}"
            ),
            user=user,
            phone=phone,
            link=link,
            case_ref=case.tracking_number,
        )
    return len(recipients)

"""Celery tasks of mediation_room. Each is a call of a service; the periodic ones are scheduled
by django-celery-beat (see the setup_schedules command) and are safe to run twice."""

from celery import shared_task

from .supervision import periodic, reminders, services


@shared_task(acks_late=True, ignore_result=True)
def hearing_reminders() -> dict:
    return periodic.run_exclusive(
        "hearing_reminders", lambda: {"reminded": reminders.hearing_reminders_send()}
    )


@shared_task(acks_late=True, ignore_result=True)
def supervision_scan() -> dict:
    return periodic.run_exclusive("supervision_scan", lambda: services.supervision_scan().as_dict())

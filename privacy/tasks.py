"""Celery tasks of personal data: the periodic retention run (scheduled by setup_schedules)."""

from dataclasses import asdict

from celery import shared_task

from mediation_room.supervision import periodic

from .retention import retention_run


@shared_task(acks_late=True, ignore_result=True)
def retention_apply() -> dict:
    return periodic.run_exclusive("retention_apply", lambda: asdict(retention_run()))

"""Celery tasks of the agreements: each one calls one service.

Periodic (scheduled with django-celery-beat by the supervision module's schedules):
    mediation_room.agreements.tasks.follow_ups_due   every 15 minutes is plenty; idempotent.
"""

from celery import shared_task

from . import services


@shared_task(
    name="mediation_room.agreements.tasks.agreement_render_pdf",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def agreement_render_pdf(agreement_id: int) -> str:
    return services.agreement_pdf_render(agreement_id=agreement_id)


@shared_task(name="mediation_room.agreements.tasks.follow_ups_due", acks_late=True)
def follow_ups_due() -> dict[str, int]:
    return services.follow_ups_process_due()

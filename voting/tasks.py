from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def publish_poll_tally(poll_id: int) -> None:
    services.poll_tally_publish(poll_id)


@shared_task(acks_late=True, ignore_result=True)
def publish_due_consultations() -> int:
    return services.consultations_publish_due()

from celery import shared_task

from .services import consultations, polling


@shared_task(acks_late=True, ignore_result=True)
def publish_poll_tally(poll_id: int) -> None:
    polling.poll_tally_publish(poll_id)


@shared_task(acks_late=True, ignore_result=True)
def publish_due_consultations() -> int:
    return consultations.consultations_publish_due()

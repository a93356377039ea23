from celery import shared_task
from django.db import OperationalError

from . import services


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def lapse_invitation(invitation_id: int) -> str:
    return services.invitation_lapse(invitation_id=invitation_id)


@shared_task(acks_late=True)
def lapse_due_invitations() -> int:
    return services.invitations_lapse_due()

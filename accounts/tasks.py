from celery import shared_task

from . import services
from .sms import SmsError


@shared_task(
    acks_late=True,
    autoretry_for=(SmsError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def deliver_notification(notification_id: int) -> str:
    return services.notification_deliver(notification_id=notification_id)

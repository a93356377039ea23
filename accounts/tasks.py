from datetime import timedelta

from celery import shared_task
from django.conf import settings

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


@shared_task(acks_late=True, ignore_result=True)
def resend_stale_notifications() -> int:
    return services.notifications_resend_stale(
        older_than=timedelta(seconds=settings.NOTIFICATION_RESEND_AFTER_SECONDS)
    )

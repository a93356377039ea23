"""Notifications go out through Celery after commit, once per message."""

import time

import pytest

from accounts.models import Notification, SmsOutboxMessage
from accounts.services import notification_deliver, notification_send, notify_person
from accounts.tasks import deliver_notification
from tests.factories import UserFactory
from tests.waits import wait_for


@pytest.mark.worker
def test_real_worker_delivers_once_when_enqueued_twice(celery_worker_real):
    user = UserFactory()
    notification = notification_send(
        channel="sms", kind="test", body="调解通知", dedupe_key="once-only", user=user
    )
    # The on-commit enqueue has happened (transactional test); enqueue it again, twice more.
    deliver_notification.delay(notification.pk)
    deliver_notification.delay(notification.pk)

    wait_for(lambda: Notification.objects.get(pk=notification.pk).status == "sent", "delivery", 15)
    time.sleep(1.0)  # let the duplicates run to completion too

    assert SmsOutboxMessage.objects.filter(phone=user.phone).count() == 1
    assert Notification.objects.get(pk=notification.pk).attempts == 1


@pytest.mark.django_db
def test_same_dedupe_key_is_one_message(django_capture_on_commit_callbacks):
    user = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        notify_person(kind="k", body="hello", dedupe_key="same", user=user)
        notify_person(kind="k", body="hello", dedupe_key="same", user=user)
    assert Notification.objects.filter(channel="sms").count() == 1
    assert Notification.objects.filter(channel="in_app").count() == 1
    assert SmsOutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_nothing_is_sent_when_the_transaction_rolls_back(django_capture_on_commit_callbacks):
    user = UserFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notification_send(channel="sms", kind="k", body="x", dedupe_key="rolled", user=user)
    # The delivery is scheduled for after commit only; a rollback drops the callback.
    assert len(callbacks) == 1
    assert SmsOutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_sign_in_codes_are_wiped_from_the_delivery_log():
    notification = notification_send(
        channel="sms",
        kind="login_code",
        body="code 123456",
        dedupe_key="c1",
        phone="+8613800138000",
    )
    assert notification_deliver(notification_id=notification.pk) == "sent"
    notification.refresh_from_db()
    assert "123456" not in notification.body


@pytest.mark.django_db
def test_gateway_failure_is_logged_and_retried(settings):
    settings.SMS_BACKEND = "accounts.sms.HttpGatewayBackend"
    settings.SMS_GATEWAY_URL = "http://127.0.0.1:9/unreachable"
    settings.SMS_GATEWAY_RETRIES = 1
    notification = notification_send(
        channel="sms", kind="k", body="x", dedupe_key="fail", phone="+8613800138000"
    )
    from accounts.sms import SmsError

    with pytest.raises(SmsError):
        notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()
    assert notification.status == "failed"
    assert notification.attempts == 1
    assert "unreachable" in notification.last_error

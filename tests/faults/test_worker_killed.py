"""A Celery worker is killed (SIGKILL) in the middle of a task: the broker hands the task to
another worker (late acknowledgement; the visibility timeout is set short here) and its effect,
a text message, happens once."""

import pytest

from accounts import services
from accounts.models import Channel, Notification
from tests.faults.celery_broker import celery_broker
from tests.faults.conftest import worker_env
from tests.faults.gateway import Gateway
from tests.waits import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.worker]


def test_a_task_killed_midway_runs_again_on_another_worker_and_sends_once(
    private_redis, worker_factory
):
    gateway = Gateway()
    gateway.hold_first.set()
    env = worker_env(
        private_redis.url(),
        CELERY_VISIBILITY_TIMEOUT="3",
        SMS_BACKEND="accounts.sms.HttpGatewayBackend",
        SMS_GATEWAY_URL=gateway.url,
        SMS_GATEWAY_TIMEOUT="60",
        SMS_GATEWAY_RETRIES="1",
    )
    try:
        first = worker_factory("first", env)
        wait_for(first.ready, "the first worker")
        with celery_broker(private_redis.url()):
            notification = services.notification_send(
                channel=Channel.SMS,
                kind="hearing_reminder",
                body="明天上午九点调解",
                dedupe_key="faults:reminder:1",
                phone="13800000001",
            )
        # the first worker is handing the message to the gateway, which holds the answer
        wait_for(lambda: len(gateway.requests) == 1, "the first hand-over")
        second = worker_factory("second", env)
        wait_for(second.ready, "the second worker")
        first.kill()
        wait_for(
            lambda: Notification.objects.get(pk=notification.pk).status == "sent",
            "the message to be sent by the second worker",
        )
    finally:
        gateway.close()

    notification.refresh_from_db()
    second_log = second.output()
    # the task ran again, on the other worker, with the same key: one message went out
    assert len(gateway.requests) == 2
    assert {r["key"] for r in gateway.requests} == {notification.dedupe_key}
    assert len(gateway.sent) == 1
    assert "accounts.tasks.deliver_notification" in second_log and "succeeded" in second_log
    assert notification.attempts == 1

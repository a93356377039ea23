"""Redis stops for 5 seconds and comes back: the channel layer and Celery recover without a
restart of the web server or the worker; messages queued meanwhile are delivered once.

The Redis here is this test's own redis-server (the shared one on 6379 is never stopped)."""

import asyncio
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

from accounts import services as accounts_services
from accounts.models import Channel, Notification, SmsOutboxMessage
from tests.factories import UserFactory, advance, make_case
from tests.faults.celery_broker import celery_broker
from tests.faults.conftest import cookie_for, worker_env
from tests.faults.live_client import LiveClient
from tests.waits import wait_for
from voting.models import Comment

pytestmark = [pytest.mark.faults, pytest.mark.worker]

VIEWERS = 5


@contextmanager
def closing_connection():
    try:
        yield
    finally:
        connection.close()


OUTAGE = 5.0


def queue_messages(redis_url: str, phones: list[str]) -> list[int]:
    """Runs in a thread of its own while Redis is down: the messages are stored, their tasks
    cannot be queued."""
    with celery_broker(redis_url), closing_connection():
        return [
            accounts_services.notification_send(
                channel=Channel.SMS,
                kind="hearing_reminder",
                body=f"提醒 {phone}",
                dedupe_key=f"faults:redis:{phone}",
                phone=phone,
            ).pk
            for phone in phones
        ]


async def outage_scenario(server_url, room, poster_cookie, private_redis, during) -> dict:
    viewers = [LiveClient(server_url, room) for _ in range(VIEWERS)]
    poster = LiveClient(server_url, room, cookie=poster_cookie)
    clients = [*viewers, poster]
    tasks = [asyncio.ensure_future(c.run()) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 30)
    loop = asyncio.get_running_loop()

    await poster.post("faults-before-1", "在停之前")
    await asyncio.sleep(1.0)
    await loop.run_in_executor(None, private_redis.stop)
    queued = await loop.run_in_executor(None, during)
    await asyncio.sleep(OUTAGE)
    await loop.run_in_executor(None, private_redis.start)
    # after Redis is back, over the same sockets where they stayed up
    for n in range(1, 4):
        await poster.post(f"faults-after-{n}", f"恢复之后 {n}")
        await asyncio.sleep(0.3)

    def everyone_saw_everything() -> bool:
        return not poster.outbox and all(
            all(c.shown[t] >= 1 for t in ("在停之前", "恢复之后 1", "恢复之后 2", "恢复之后 3"))
            for c in clients
        )

    give_up = time.monotonic() + 30
    while not everyone_saw_everything() and time.monotonic() < give_up:
        await asyncio.sleep(0.2)
        if poster.outbox and poster.connected.is_set():
            await poster.resend_unacked()
    for c in clients:
        await c.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"clients": clients, "queued": queued}


def test_channel_layer_and_celery_come_back_after_redis_stops_for_five_seconds(
    private_redis, server_factory, worker_factory
):
    hearing = advance(make_case(respondent=UserFactory()), "in_session")
    poster_cookie = cookie_for(UserFactory())
    redis_url = private_redis.url()
    server = server_factory(REDIS_URL=redis_url, CELERY_EAGER="0")
    worker = worker_factory(
        "worker",
        worker_env(redis_url, NOTIFICATION_RESEND_AFTER_SECONDS="2"),
        "--beat",
    )
    wait_for(worker.ready, "the worker")
    phones = [f"1770000000{n}" for n in range(3)]

    result = asyncio.run(
        outage_scenario(
            server.url,
            hearing.public_id,
            poster_cookie,
            private_redis,
            lambda: queue_messages(redis_url, phones),
        )
    )
    wait_for(
        lambda: all(
            n.status == Notification.Status.SENT
            for n in Notification.objects.filter(pk__in=result["queued"])
        ),
        "the messages queued while Redis was down",
    )
    time.sleep(3)  # a second sweep and any repeat would have run by now

    texts = ["在停之前", "恢复之后 1", "恢复之后 2", "恢复之后 3"]
    for client in result["clients"]:
        assert [client.shown[t] for t in texts] == [1, 1, 1, 1]
    # one row per comment despite resends, and the sockets stayed up
    assert Comment.objects.filter(room__hearing=hearing).count() == 4
    assert all(c.drops == 0 for c in result["clients"][:-1])
    assert server.process.poll() is None and worker.process.poll() is None
    sent = SmsOutboxMessage.objects.filter(phone__in=phones).values_list("phone", flat=True)
    assert sorted(sent) == phones
    # the outage is in the web server's log as a line, not as a traceback every second
    # (cloudbench.logs.OutageFilter): the pub/sub receive task retried Redis about five times
    log = Path(server.log.name).read_text()
    retries = [line for line in log.splitlines() if "Unexpected exception in receive task" in line]
    assert 1 <= len(retries) <= 2, retries
    assert "Traceback" not in log, log[-3000:]

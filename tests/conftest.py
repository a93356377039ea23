import pytest
from django.core.cache import cache

from accounts.models import Community, User
from tests.factories import CommunityFactory, UserFactory, make_coordinator, make_expert


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Rate-limit counters live in the cache (Redis under test): start every test from zero.
    cache.clear()
    yield


@pytest.fixture
def community(db) -> Community:
    return CommunityFactory()


@pytest.fixture
def resident(db) -> User:
    return UserFactory()


@pytest.fixture
def other_resident(db) -> User:
    return UserFactory()


@pytest.fixture
def coordinator(community) -> User:
    return make_coordinator(community)


@pytest.fixture
def expert(db) -> User:
    return make_expert()


@pytest.fixture
def celery_worker_real(transactional_db):
    """A real Celery worker (threads) consuming from Redis, not eager execution."""
    from celery.contrib.testing.worker import start_worker

    from cloudbench.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    app.control.purge()
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10
    ) as worker:
        yield worker
    app.conf.task_always_eager = previous


def pytest_sessionfinish(session, exitstatus):
    """A test that failed half-way can leave an aiortc peer connection open, and with it its
    receivers' decoder threads, which are not daemons: the run would print its summary and then
    never exit. Each such thread waits on its queue for None (what RTCRtpReceiver.stop() sends);
    send it to the ones still waiting."""
    import threading

    for thread in threading.enumerate():
        if thread.name in ("audio-decoder", "video-decoder") and thread.is_alive():
            queue = getattr(thread, "_args", (None, None))[1]
            if queue is not None:
                queue.put(None)

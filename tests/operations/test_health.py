"""/healthz and /readyz: the JSON contract load balancers and compose health checks rely on."""

from __future__ import annotations

import asyncio
import json

import pytest

from streaming import heartbeat
from streaming.node import heartbeat as node_heartbeat


def test_healthz_says_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
def embedded(settings):
    settings.REDIS_URL = ""
    settings.MEDIA_NODE_INPROCESS = True
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.mark.django_db
def test_readyz_in_the_embedded_setup(client, embedded):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "media_node": "ok", "celery": "ok"},
    }


def _beat_once() -> None:
    """One real heartbeat from this process's node (the loop that the node worker runs)."""

    async def run():
        task = asyncio.get_running_loop().create_task(
            node_heartbeat.beat_forever("node-under-test")
        )
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(run())


@pytest.fixture
def node_records(settings):
    import redis

    settings.MEDIA_NODE_HEARTBEAT_TTL = 2.0
    conn = redis.from_url(settings.REDIS_URL)
    conn.delete(heartbeat.INDEX_KEY, heartbeat.RECORD_KEY.format("node-under-test"))
    yield conn
    conn.delete(heartbeat.INDEX_KEY, heartbeat.RECORD_KEY.format("node-under-test"))
    conn.close()


@pytest.mark.django_db
def test_readyz_follows_the_media_node_heartbeat(client, node_records, settings):
    settings.MEDIA_NODE_INPROCESS = False
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["media_node"].startswith("no media node heartbeat")
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"

    _beat_once()
    record = json.loads(node_records.get(heartbeat.RECORD_KEY.format("node-under-test")))
    assert record["node"] == "node-under-test"
    assert {"cpu_percent", "loop_lag_seconds", "rooms_open", "members_in_media"} <= set(record)
    assert record["webrtc_viewers"] == 0
    assert 0 < node_records.pttl(heartbeat.RECORD_KEY.format("node-under-test")) <= 2000
    assert client.get("/readyz").status_code == 200

    node_records.delete(heartbeat.RECORD_KEY.format("node-under-test"))  # as if it expired
    assert client.get("/readyz").json()["checks"]["media_node"] != "ok"


@pytest.mark.django_db
def test_readyz_names_what_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.MEDIA_NODE_INPROCESS = False
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["celery"] == "ok"  # tasks run inline under this test's settings
    for name in ("redis", "media_node"):
        assert checks[name].startswith("ConnectionError"), checks


@pytest.mark.django_db
@pytest.mark.worker
def test_readyz_pings_a_real_celery_worker(client, settings, celery_worker_real):
    from cloudbench.health import check_celery

    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert check_celery() == "ok"


@pytest.mark.django_db
def test_readyz_without_a_celery_worker(settings):
    from cloudbench.health import check_celery

    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert check_celery().startswith("no Celery worker answered")

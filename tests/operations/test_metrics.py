"""/metrics: Prometheus text, for the listed addresses only."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Notification
from cloudbench import metrics


def _samples(body: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def hls_clean(settings):
    import redis

    conn = redis.from_url(settings.REDIS_URL)
    conn.delete(metrics.HLS_KEY)
    yield
    conn.delete(metrics.HLS_KEY)
    conn.close()


@pytest.mark.django_db
def test_metrics_from_loopback(client, hls_clean, resident):
    Notification.objects.create(
        user=resident, channel="sms", kind="t", body="x", dedupe_key="a", status="failed"
    )
    metrics.observe_comment_delivery(
        [{"kind": "comment", "at": "2026-01-01T00:00:00+00:00"}, {"kind": "vote"}],
        now=1767225600.2,
    )
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = _samples(response.content)
    assert samples[("cloudbench_notifications", (("status", "failed"),))] == 1
    assert samples[("cloudbench_notifications", (("status", "queued"),))] == 0
    assert ("cloudbench_rooms_open", ()) in samples
    assert ("cloudbench_members_in_media", ()) in samples
    assert samples[("cloudbench_live_viewers", (("transport", "hls"),))] == 0
    assert ("cloudbench_live_viewers", (("transport", "webrtc"),)) in samples
    assert samples[("cloudbench_comment_delivery_seconds_bucket", (("le", "0.25"),))] >= 1


@pytest.mark.django_db
def test_metrics_refused_elsewhere(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    # a forged header does not help a client that is not the proxy
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 403
    settings.METRICS_ALLOWED_IPS = ["203.0.113.0/24"]
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert client.get("/metrics").status_code == 403


@pytest.mark.django_db
def test_hls_viewers_are_distinct_clients_in_the_window(client, hls_clean, settings):
    uri = "/media/hls/abc123/live.m3u8"
    for addr in ("198.51.100.1", "198.51.100.1", "198.51.100.2"):
        response = client.get("/ops/hls-seen", HTTP_X_ORIGINAL_URI=uri, REMOTE_ADDR=addr)
        assert response.status_code == 204
    client.get("/ops/hls-seen", HTTP_X_ORIGINAL_URI="/media/hls/other/live.m3u8")
    assert metrics.hls_viewers() == {"abc123": 2, "other": 1}
    later = time.time() + settings.HLS_VIEWER_WINDOW_SECONDS + 1
    assert metrics.hls_viewers(now=later) == {}
    assert client.get("/ops/hls-seen", HTTP_X_ORIGINAL_URI="/etc/passwd").status_code == 400
    samples = _samples(client.get("/metrics").content)
    assert samples[("cloudbench_live_viewers", (("transport", "hls"),))] == 3

"""Prometheus metrics (``/metrics``, text format).

Counted where they happen, in the process that sees them: the comment delivery latency (from the
comment's commit to its frame being written to the viewers' sockets, in the web process that
holds them). With several web processes on one host, ``PROMETHEUS_MULTIPROC_DIR`` (a directory
they share, emptied at start) lets one scrape add up every process's histogram.

Read at scrape time from what the installation already keeps: rooms, members in media, WebRTC
viewers, CPU and event-loop lag from the media nodes' heartbeats; HLS viewers from the playlist
fetches nginx mirrors to us; notifications queued and failed from the database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count
from prometheus_client import (
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

COMMENT_DELIVERY = Histogram(
    "cloudbench_comment_delivery_seconds",
    "Time from a comment's commit to its frame being written to the room's viewers",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def observe_comment_delivery(events: list[dict[str, Any]], *, now: float | None = None) -> None:
    """Called once per delivered batch with its events; comments carry their commit time."""
    now = now if now is not None else time.time()
    for event in events:
        if event.get("kind") != "comment" or not event.get("at"):
            continue
        try:
            at = datetime.fromisoformat(event["at"]).timestamp()
        except (TypeError, ValueError):
            continue
        COMMENT_DELIVERY.observe(max(0.0, now - at))


# -- HLS viewers: distinct clients that fetched a playlist within the window ---------------------

HLS_KEY = "cloudbench:hls-viewers"
_hls_local: dict[str, float] = {}


def hls_playlist_fetched(public_id: str, client: str, *, now: float | None = None) -> None:
    now = now if now is not None else time.time()
    member = f"{public_id}|{client}"
    if not settings.REDIS_URL:
        _hls_local[member] = now
        return
    import redis

    conn = redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        pipe = conn.pipeline(transaction=False)
        pipe.zadd(HLS_KEY, {member: now})
        pipe.zremrangebyscore(HLS_KEY, "-inf", now - settings.HLS_VIEWER_WINDOW_SECONDS)
        pipe.expire(HLS_KEY, settings.HLS_VIEWER_WINDOW_SECONDS * 2)
        pipe.execute()
    finally:
        conn.close()


def hls_viewers(*, now: float | None = None) -> dict[str, int]:
    """Viewers per stream (public id) over HLS in the sliding window."""
    now = now if now is not None else time.time()
    since = now - settings.HLS_VIEWER_WINDOW_SECONDS
    if not settings.REDIS_URL:
        members = [m for m, at in list(_hls_local.items()) if at >= since]
    else:
        import redis

        conn = redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            members = [m.decode() for m in conn.zrangebyscore(HLS_KEY, since, "+inf")]
        finally:
            conn.close()
    counts: dict[str, int] = {}
    for member in members:
        public_id = member.split("|", 1)[0]
        counts[public_id] = counts.get(public_id, 0) + 1
    return counts


# -- read at scrape time -------------------------------------------------------------------------


class InstallationCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from streaming.heartbeat import alive_nodes

        nodes = alive_nodes()
        yield _gauge(
            "cloudbench_media_nodes_alive", "Media nodes with a fresh heartbeat", len(nodes)
        )
        yield _gauge(
            "cloudbench_rooms_open",
            "Rooms open on the media nodes",
            sum(n.get("rooms_open", 0) for n in nodes),
        )
        yield _gauge(
            "cloudbench_members_in_media",
            "Room members connected to a media node",
            sum(n.get("members_in_media", 0) for n in nodes),
        )
        viewers = GaugeMetricFamily(
            "cloudbench_live_viewers", "Livestream viewers by transport", labels=["transport"]
        )
        viewers.add_metric(["webrtc"], sum(n.get("webrtc_viewers", 0) for n in nodes))
        viewers.add_metric(["hls"], sum(hls_viewers().values()))
        yield viewers
        cpu = GaugeMetricFamily(
            "cloudbench_media_node_cpu_percent", "CPU of a media node process", labels=["node"]
        )
        lag = GaugeMetricFamily(
            "cloudbench_media_node_loop_lag_seconds",
            "How late a media node's event loop woke from a timed sleep",
            labels=["node"],
        )
        for node in nodes:
            cpu.add_metric([node["node"]], node.get("cpu_percent", 0.0))
            lag.add_metric([node["node"]], node.get("loop_lag_seconds", 0.0))
        yield cpu
        yield lag
        yield _notifications()


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _notifications() -> GaugeMetricFamily:
    from accounts.models import Notification

    counts = dict(
        Notification.objects.filter(
            status__in=[Notification.Status.QUEUED, Notification.Status.FAILED]
        )
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    family = GaugeMetricFamily(
        "cloudbench_notifications", "Notifications by delivery status", labels=["status"]
    )
    for status in (Notification.Status.QUEUED, Notification.Status.FAILED):
        family.add_metric([str(status)], counts.get(status, 0))
    return family


def exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    registry.register(InstallationCollector())
    return generate_latest(registry)


class _ProcessMetrics(Collector):
    """This process's own metrics (the default registry), beside the installation's."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()

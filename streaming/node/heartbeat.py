"""The media node's heartbeat loop: every couple of seconds it writes what this process's node
carries (``streaming.heartbeat`` keeps the records and reads them for ``/readyz`` and
``/metrics``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from django.conf import settings

from streaming import heartbeat as records

from . import process

logger = logging.getLogger(__name__)


def sample(lag: float, *, cpu: float) -> dict[str, Any]:
    """What this process's node carries now."""
    node = process.get_media_node()
    rooms = node.rooms()
    station = process.current_station()
    viewers = 0
    if station is not None:
        viewers = station.viewer_count  # its own rooms' viewers and relayed rooms' viewers
    return {
        "cpu_percent": cpu,
        "loop_lag_seconds": round(lag, 4),
        "rooms_open": len(rooms),
        "members_in_media": sum(len(node.members(room)) for room in rooms),
        "webrtc_viewers": viewers,
    }


async def beat_forever(ident: str | None = None) -> None:
    """The node's heartbeat loop (runs beside the node's channel worker until cancelled)."""
    import psutil

    ident = ident or records.node_id()
    interval = settings.MEDIA_NODE_HEARTBEAT_SECONDS
    process = psutil.Process()
    process.cpu_percent(None)
    client = None
    if records.redis_url():
        import redis.asyncio as aioredis

        client = aioredis.from_url(records.redis_url(), socket_timeout=2, socket_connect_timeout=2)
    lag = 0.0
    try:
        while True:
            try:
                record = {
                    "node": ident,
                    "at": time.time(),
                    **sample(lag, cpu=process.cpu_percent(None)),
                }
                await records.write_record(client, ident, record)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: the next beat tries again
                logger.warning("media node heartbeat not written: %s", exc)
            # The loop's lag: how late the sleep ends beyond what was asked for.
            started = time.monotonic()
            await asyncio.sleep(interval)
            lag = max(0.0, time.monotonic() - started - interval)
    finally:
        records.forget_local(ident)
        if client is not None:
            await client.aclose()

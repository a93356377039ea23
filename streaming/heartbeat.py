"""The media node's heartbeat: every couple of seconds the node writes a small record of itself
(id, CPU, event-loop lag, rooms open, members in media, WebRTC viewers) that expires on its own,
so ``/readyz`` knows at least one node is alive and ``/metrics`` can show what the nodes carry.

With Redis (``REDIS_URL``) the records go to Redis: one key per node with a TTL, and a sorted set
of node ids by the time of their last beat. The embedded setup (no Redis, the node inside the web
process) keeps them in this process, which is where readiness is asked.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

INDEX_KEY = "cloudbench:medianodes"
RECORD_KEY = "cloudbench:medianode:{}"

_local: dict[str, tuple[float, dict[str, Any]]] = {}


def node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def redis_url() -> str:
    return settings.REDIS_URL


async def write_record(client: Any, ident: str, record: dict[str, Any]) -> None:
    ttl = settings.MEDIA_NODE_HEARTBEAT_TTL
    now = time.time()
    if client is None:
        _local[ident] = (now + ttl, record)
        return
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(RECORD_KEY.format(ident), json.dumps(record), px=int(ttl * 1000))
        pipe.zadd(INDEX_KEY, {ident: now})
        pipe.zremrangebyscore(INDEX_KEY, "-inf", now - ttl * 10)
        await pipe.execute()


def forget_local(ident: str) -> None:
    """Drop this process's own record (its node stopped beating)."""
    _local.pop(ident, None)


def alive_nodes() -> list[dict[str, Any]]:
    """The records of the nodes whose last beat has not expired (newest beat first). Raises
    when Redis cannot be asked."""
    now = time.time()
    if not redis_url():
        return [record for expires, record in list(_local.values()) if expires > now]
    import redis

    client = redis.from_url(redis_url(), socket_timeout=2, socket_connect_timeout=2)
    try:
        ttl = settings.MEDIA_NODE_HEARTBEAT_TTL
        ids = client.zrevrangebyscore(INDEX_KEY, "+inf", now - ttl)
        if not ids:
            return []
        values = client.mget([RECORD_KEY.format(i.decode()) for i in ids])
    finally:
        client.close()
    return [json.loads(value) for value in values if value]

"""Benchmarks send media over loopback only.

Call ``keep_media_on_loopback()`` first thing in every benchmark process that makes aiortc peers
(members, viewers, an embedded node): aioice then gathers, offers and answers ICE on 127.0.0.1
alone. Processes started afterwards inherit ``ICE_HOST_ADDRESSES``, which a media node process
(``manage.py medianode``) reads from its settings.
"""

from __future__ import annotations

import os

LOOPBACK = "127.0.0.1"


def keep_media_on_loopback() -> None:
    os.environ["ICE_HOST_ADDRESSES"] = LOOPBACK
    from streaming.node.internals.aioice_private import confine_host_addresses

    confine_host_addresses([LOOPBACK])

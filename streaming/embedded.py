"""The media node inside the web process (``MEDIA_NODE_INPROCESS``: ``make demo``, tests).

The web side reaches the node only through the channel layer; when the node is embedded, this
starts its worker as a task of the web process's event loop. ``streaming.node`` (aiortc, PyAV,
OpenCV) is imported here on first use, so a web process with a separate node never loads it.
"""

from __future__ import annotations

from typing import Any


async def ensure_inprocess_worker() -> None:
    """Consume the node's channel in this process, from the running event loop; returns once the
    node listens and is in the pool."""
    from streaming.node.worker import ensure_inprocess_worker as start

    await start()


async def media_node_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The node's channel consumer as an ASGI application (``runworker media-node``), imported
    when a message for it first arrives."""
    from streaming.node.worker import MediaNodeConsumer

    await MediaNodeConsumer.as_asgi()(scope, receive, send)

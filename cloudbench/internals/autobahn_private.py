"""autobahn's private per-message compression state, for ``cloudbench.webserver``'s prepared
frames: a frame prepared once is written to the socket as it is only when the connection did not
negotiate compression (else autobahn must compress it per connection)."""

from __future__ import annotations

from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol

from cloudbench.internals import assigned_in, require

WRITTEN_FOR = ">=26.11,<26.12"

require(
    "autobahn",
    WRITTEN_FOR,
    [
        f"WebSocketProtocol.{name}"
        for name in assigned_in(WebSocketProtocol._connectionMade, "_perMessageCompress")
    ],
)


def compresses(protocol: Any) -> bool:
    """The connection negotiated per-message compression."""
    return getattr(protocol, "_perMessageCompress", None) is not None

"""Twisted's private write buffer, for ``cloudbench.webserver``'s direct socket write.

A prepared WebSocket frame may go straight to the socket only when nothing of the connection's is
still waiting in Twisted's buffer (else the new bytes would overtake it). Twisted keeps that
buffer in two parts, a byte string (``dataBuffer`` from ``offset``) and a private list of
pieces not yet joined (``_tempDataBuffer``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor

from cloudbench.internals import assigned_in, lacking, require

WRITTEN_FOR = ">=26.10,<26.11"

require(
    "Twisted",
    WRITTEN_FOR,
    [f"FileDescriptor.{name}" for name in assigned_in(FileDescriptor.__init__, "_tempDataBuffer")]
    + lacking(FileDescriptor, "dataBuffer", "offset"),
)


def write_buffer_empty(transport: Any) -> bool:
    """Nothing of this connection's is waiting in Twisted's buffer."""
    return not transport._tempDataBuffer and len(transport.dataBuffer) == transport.offset

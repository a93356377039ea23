"""daphne, plus one way to send a frame prepared once to many WebSockets.

A live room sends the same batch of events to every viewer. Through the ASGI `send` callable
each copy goes through Channels' session wrapper, daphne's reply handler, autobahn's framing and
Twisted's write buffer, which registers the socket with epoll and writes on the next turn of the
loop: about 60 µs of Python per socket and frame. Here a WebSocket's scope carries the extension
`cloudbench.prepared_frames`: `prepare(text)` frames the text once (autobahn's
`PreparedMessage`), and `send(prepared)` writes those bytes to the connection's socket at once
when nothing is waiting in its buffer (otherwise behind what is waiting, through Twisted).

Applications that do not find the extension (plain `daphne`, the test client) use `send`.

    python -m cloudbench.webserver [daphne options] asgi:application
"""

from __future__ import annotations

import logging

from daphne.cli import CommandLineInterface
from daphne.server import Server

logger = logging.getLogger(__name__)

EXTENSION = "cloudbench.prepared_frames"


def prepare(text: str):
    from autobahn.websocket.protocol import PreparedMessage

    return PreparedMessage(text.encode(), False, applyMask=False, doNotCompress=False)


def _idle(transport) -> bool:
    """Nothing of this connection's is waiting in Twisted's buffer (so bytes written to the
    socket now cannot overtake any). False when unsure: then Twisted writes them."""
    try:
        return (
            not transport.TLS
            and not transport._tempDataBuffer
            and len(transport.dataBuffer) == transport.offset
        )
    except AttributeError:
        return False


def write_now(transport, data: bytes) -> int:
    """Write `data` to the connection: straight to the socket as far as it takes it, the rest
    through Twisted's buffer. Returns how many bytes went straight out."""
    sent = 0
    if transport.connected and not transport.disconnecting and _idle(transport):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # A broken connection: Twisted finds out on its next write and closes it.
            sent = 0
        if sent == len(data):
            return sent
    transport.write(data[sent:] if sent else data)
    return sent


class PreparedFrames:
    """The extension in one WebSocket's scope."""

    prepare = staticmethod(prepare)

    def __init__(self, protocol) -> None:
        self.protocol = protocol
        self.direct = 0  # frames written straight to the socket, for tests and the log

    def send(self, prepared) -> None:
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return  # closing or closed: like the ASGI send, nothing more goes out
        if getattr(protocol, "_perMessageCompress", None) is not None or protocol.send_queue:
            protocol.sendPreparedMessage(prepared)  # compression, or autobahn queued frames
            return
        data = prepared.payloadHybi
        if write_now(protocol.transport, data) == len(data):
            self.direct += 1


class WebServer(Server):
    def create_application(self, protocol, scope):
        if scope.get("type") == "websocket":
            scope.setdefault("extensions", {})[EXTENSION] = PreparedFrames(protocol)
        return super().create_application(protocol, scope)


class WebServerCommand(CommandLineInterface):
    server_class = WebServer


if __name__ == "__main__":
    WebServerCommand.entrypoint()

"""daphne, plus one way to send a frame prepared once to many WebSockets.

A live room sends the same batch of events to every viewer. Through the ASGI `send` callable
each copy goes through Channels' session wrapper, daphne's reply handler, autobahn's framing and
Twisted's write buffer, which registers the socket with epoll and writes on the next turn of the
loop: about 60 µs of Python per socket and frame. Here a WebSocket's scope carries the extension
`cloudbench.prepared_frames`: `prepare(text)` frames the text once (autobahn's
`PreparedMessage`), and `send(prepared)` writes those bytes to the connection's socket at once
when nothing is waiting in its buffer (otherwise behind what is waiting, through Twisted).

Applications that do not find the extension (plain `daphne`, the test client) use `send`.

Request bodies stay in memory: Twisted writes a body of 100 kB or more to a temporary file, which
for an evidence upload would put a personal file on disk in clear. A body over
``REQUEST_BODY_MAX_BYTES`` (what nginx lets through in front) is refused with 413 as soon as its
length says so, and the connection is closed, so memory stays bounded without nginx too.

Response bodies are flow-controlled: daphne writes each ``http.response.body`` into Twisted's
buffer and returns at once, so a streamed download (a recording) to a slow client would pile up
in this process's memory as fast as the application produces it. Here the application's `send`
of a body part that has more to follow waits while the connection's write buffer is full
(Twisted's producer interface: paused above its buffer size, resumed once it has drained).

Started by `cloudbench.serve`, the process also talks to its launcher over a Unix socket (the
descriptor named by ``CLOUDBENCH_CONTROL_FD``): it says ``ready`` once it accepts on the shared
listening socket. A standby (``CLOUDBENCH_STANDBY=1``) starts up the same but does not accept
until told ``serve``: it takes a crashed process's place in an instant, where a fresh start takes
seconds of CPU (longer on a busy machine). On ``drain`` (or when the launcher goes away) it stops
accepting, closes
its WebSockets with ``CLOSE_RESTART`` a few at a time, ``DRAIN_RATE`` a second (the pages
reconnect at once, to a process that still accepts), lets running requests finish, and exits.

    python -m cloudbench.webserver [daphne options] asgi:application
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import logging
import os
import socket
import sys
import time

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings
from twisted.internet import protocol as twisted_protocol
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from cloudbench.internals.autobahn_private import compresses
from cloudbench.internals.twisted_private import write_buffer_empty
from cloudbench.logs import dump_stacks_on_signal
from cloudbench.serve import CLOSE_RESTART, CONTROL_ENV, STANDBY_ENV

logger = logging.getLogger(__name__)

EXTENSION = "cloudbench.prepared_frames"
# The WebSockets are closed this many a second, not all in one instant: a viewer's time without
# a socket is the wait in the queue of reconnections at the processes that take them over, and
# a process on a busy machine opens about a hundred a second (bench/soak.py, rolling restart).
# Never over less than a second, nor more than DRAIN_SPREAD_MAX.
DRAIN_RATE = 60.0
DRAIN_SPREAD_MAX = 8.0
DRAIN_STEP = 0.05
# Requests still running after this long are cut off.
DRAIN_LIMIT = 12.0


# glibc's mallopt(M_MMAP_THRESHOLD, ...): a block of at least this size gets pages of its own,
# returned to the system when it is freed.
M_MMAP_THRESHOLD = -3
OWN_PAGES_FROM = 128 * 1024


def return_large_blocks_to_the_system() -> bool:
    """An evidence upload passes through the process as a few whole copies of its body (ours,
    Django's, the upload's: 10 MB each), freed when the request ends. glibc raises its mmap
    threshold to the largest block freed so far, so after the first upload such blocks come from
    the heaps of the threads that made them, which keep the pages: a web process grew by 40-150
    MB an upload, to 370 MB after thirty. A fixed threshold (which mallopt sets, and which turns
    the raising off) gives them back: 140-170 MB after the same thirty. False where the C library
    is not glibc, or when the operator set the threshold (``MALLOC_MMAP_THRESHOLD_``,
    ``GLIBC_TUNABLES``)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(M_MMAP_THRESHOLD, OWN_PAGES_FROM) == 1


def drain_spread(sockets: int) -> float:
    """Seconds over which a draining process closes this many WebSockets."""
    return min(DRAIN_SPREAD_MAX, max(1.0, sockets / DRAIN_RATE))


def prepare(text: str):
    from autobahn.websocket.protocol import PreparedMessage

    return PreparedMessage(text.encode(), False, applyMask=False, doNotCompress=False)


def _idle(transport) -> bool:
    """Nothing of this connection's is waiting in Twisted's buffer (so bytes written to the
    socket now cannot overtake any). False when unsure: then Twisted writes them."""
    try:
        return not transport.TLS and write_buffer_empty(transport)
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
        if compresses(protocol) or protocol.send_queue:
            protocol.sendPreparedMessage(prepared)  # compression, or autobahn queued frames
            return
        data = prepared.payloadHybi
        if write_now(protocol.transport, data) == len(data):
            self.direct += 1


class _Control(twisted_protocol.Protocol):
    """The launcher's end of the conversation: ``drain`` or a closed socket means go."""

    def __init__(self, server: WebServer) -> None:
        self.server = server

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if b"quiet" in data:
            self.server.quiet()
        if b"serve" in data:
            self.server.serve()
        if b"drain" in data:
            self.server.drain()

    def connectionLost(self, reason) -> None:  # noqa: N802 - Twisted's name
        self.server.drain()


BODY_FLOW = "cloudbench.body_flow"


class BodyFlow:
    """A streamed response body as a Twisted push producer (IPushProducer's three methods, which
    is all `registerProducer` asks of one): paused while its connection's write
    buffer is full, resumed once it has drained, stopped when the connection is lost (the
    application's later sends are then dropped by daphne)."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._open.clear()

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._open.set()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._open.set()

    async def writable(self) -> None:
        await self._open.wait()


class InMemoryBodyRequest(WebRequest):
    """daphne's request, its body held in memory and bounded (see the module's docstring)."""

    refused = False

    def __init__(self, *args, **kwargs) -> None:
        # daphne hands the application the body as it came; Twisted's own parse of a form
        # submission into `request.args`, which daphne never reads, would copy an upload three
        # more times (its body, then the email parser's payload and decoded part)
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)

    def process(self):
        processing = super().process()
        processing.addBoth(self._let_go_of_the_body)
        return processing

    def _let_go_of_the_body(self, result):
        # daphne has queued the body for the application, in pieces of its own, by the time its
        # `process` ends: holding it here as well would keep one more copy of an upload for as
        # long as the request lasts
        self.content = io.BytesIO()
        return result

    def gotLength(self, length) -> None:  # noqa: N802 - Twisted's name
        self.content = io.BytesIO()
        self.body_limit = settings.REQUEST_BODY_MAX_BYTES
        if length is not None and length > self.body_limit:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self.refused:
            return
        if self.content.tell() + len(data) > self.body_limit:  # a chunked body that grew too big
            self._refuse()
            return
        self.content.write(data)

    def _refuse(self) -> None:
        self.refused = True
        self.content = io.BytesIO()
        body = f"The request is larger than {self.body_limit // (1024 * 1024)} MB.\n".encode()
        transport = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        transport.loseConnection()


class InMemoryBodyHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):  # noqa: N802 - Twisted's name
        channel = super().buildProtocol(addr)
        channel.requestFactory = InMemoryBodyRequest
        return channel


class WebServer(Server):
    # daphne's run() makes its HTTP factory by assigning this attribute: ours is put in its place
    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, daphnes: HTTPFactory) -> None:
        self._http_factory = InMemoryBodyHTTPFactory(daphnes.server)

    def run(self):
        return_large_blocks_to_the_system()
        self.ports = []
        self.draining_since: float | None = None
        self.control = None
        self.standing_by: list[str] = []
        self.quiet_ports: list = []
        if CONTROL_ENV in os.environ:
            reactor.callWhenRunning(self._open_control, int(os.environ.pop(CONTROL_ENV)))
            if os.environ.pop(STANDBY_ENV, "") == "1":
                self.standing_by, self.endpoints = self.endpoints, []
        super().run()

    def listen_success(self, port):
        self.ports.append(port)
        return super().listen_success(port)

    async def handle_reply(self, protocol, message):
        if message.get("type") != "http.response.body":
            return await super().handle_reply(protocol, message)
        details = self.connections.get(protocol)
        if details is None or details.get("disconnected"):
            return None
        flow = details.get(BODY_FLOW)
        if not message.get("more_body", False):
            if flow is not None:
                protocol.unregisterProducer()
                del details[BODY_FLOW]
            return await super().handle_reply(protocol, message)
        if flow is None:
            flow = details[BODY_FLOW] = BodyFlow()
            protocol.registerProducer(flow, True)
        await super().handle_reply(protocol, message)
        await flow.writable()
        return None

    def create_application(self, protocol, scope):
        if scope.get("type") == "websocket":
            scope.setdefault("extensions", {})[EXTENSION] = PreparedFrames(protocol)
        return super().create_application(protocol, scope)

    # -- the launcher ------------------------------------------------------------------------

    def _open_control(self, fd: int) -> None:
        factory = twisted_protocol.Factory.forProtocol(lambda: _Control(self))
        self.control = reactor.adoptStreamConnection(fd, socket.AF_UNIX, factory)
        os.close(fd)  # the reactor holds its own copy
        asyncio.ensure_future(self._warm_up()).add_done_callback(self._ready)

    def _ready(self, _warm_up) -> None:
        # The reactor runs and the listening socket is registered with it: this process accepts
        # (a standby: it would at once).
        if self.control is not None and self.control.connected:
            self.control.write(b"ready\n")

    async def _warm_up(self) -> None:
        """One request through the application before saying ready, so that the first
        viewers do not wait for what Django does lazily (URL patterns, templates, the
        database connection of the thread that the process's sync work runs in)."""
        from django.conf import settings

        host = next(
            (h for h in settings.ALLOWED_HOSTS if h and "*" not in h and not h.startswith(".")),
            "localhost",
        )
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", host.encode())],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
        }
        said = []
        request = {"type": "http.request", "body": b"", "more_body": False}

        async def receive() -> dict:
            if not said:
                said.append(request)
                return request
            await asyncio.Event().wait()  # no disconnect: the response ends the call
            return {}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                said.append(message["status"])

        started = time.monotonic()
        try:
            await asyncio.wait_for(self.application(scope=scope, receive=receive, send=send), 20)
        except Exception:  # a page that fails must not keep the process from serving
            logger.exception("warm-up request failed")
        logger.info("warmed up in %.1f s (status %s)", time.monotonic() - started, said[1:])

    def quiet(self) -> None:
        """Accept no new connections for now (those already open are served on): in a rolling
        restart, viewers moving off a process must not land on one whose turn comes next."""
        for port in self.ports:
            port.stopReading()  # the socket stays open: ``serve`` takes it up again
        self.quiet_ports = list(self.ports)

    def serve(self) -> None:
        """A standby, or a quiet process, starts accepting."""
        for port in self.quiet_ports:
            port.startReading()
        self.quiet_ports = []
        endpoints, self.standing_by = self.standing_by, []
        for description in endpoints:
            listener = serverFromString(reactor, description).listen(self.http_factory)
            listener.addCallback(self.listen_success)
            listener.addErrback(self.listen_error)
        if endpoints:
            logger.info("standby: accepting")

    def drain(self) -> None:
        """Stop accepting, move the WebSockets away a few at a time, finish requests, exit."""
        if self.draining_since is not None:
            return
        self.draining_since = time.monotonic()
        for port in self.ports:
            port.stopListening()  # this process's copy only: the others go on accepting
        sockets = len(self._open_websockets())
        self.drain_spread = drain_spread(sockets)
        logger.info("draining: closing %d WebSockets over %.1f s", sockets, self.drain_spread)
        self._drain_step(sockets)

    def _open_websockets(self) -> list:
        return [
            p
            for p, details in self.connections.items()
            if isinstance(p, WebSocketProtocol)
            and "disconnected" not in details
            and p.state == p.STATE_OPEN
        ]

    def _drain_step(self, total: int) -> None:
        elapsed = time.monotonic() - self.draining_since
        open_now = self._open_websockets()
        # close the share of the first count that is due by now (and any opened since)
        due = total * min(1.0, (elapsed + DRAIN_STEP) / self.drain_spread)
        closing = len(open_now) - max(0, int(total - due))
        for p in open_now[: max(0, closing)]:
            p.sendClose(code=CLOSE_RESTART)
        # An entry stays until its connection closed and its application finished (the
        # consumers' disconnect handlers leave their groups).
        if self.connections and elapsed < DRAIN_LIMIT:
            reactor.callLater(DRAIN_STEP, self._drain_step, total)
            return
        logger.info("drained in %.1f s (%d connections cut off)", elapsed, len(self.connections))
        reactor.stop()


class WebServerCommand(CommandLineInterface):
    server_class = WebServer

    def run(self, args):
        # daphne's --proxy-headers believes X-Forwarded-For from anyone who connects; the
        # application believes it from TRUSTED_PROXIES only (cloudbench.client_address).
        if any(arg.startswith("--proxy-headers") for arg in args):
            raise SystemExit(
                "--proxy-headers would let any client choose its address: "
                "set TRUSTED_PROXIES to the proxy's address instead"
            )
        return super().run(args)


def main(argv: list[str]) -> None:
    dump_stacks_on_signal()
    command = WebServerCommand()
    command.run(argv)
    # The reactor has stopped: drained (every connection closed and every application finished)
    # or told to stop (SIGTERM, SIGINT: daphne has cancelled the applications still running).
    # What threads are left can never finish: an executor thread whose commit hook waits for the
    # event loop that stopped (async_to_sync), the in-process media node's decoder threads
    # waiting for packets. The interpreter's exit would wait for them for ever (their stacks,
    # written by `kill -USR2`, showed it), so the process goes now.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

"""A lean receive-mostly WebSocket client for benchmarks with thousands of viewers.

The benchmarks run their viewers on the same two cores as the server they measure. A general
client library spends tens of microseconds per received frame (a task per ``recv``, a frame
object, an assembler queue); at 2,000 viewers and ten frames a second each, that alone would eat
a core and show up as server latency. This client is an ``asyncio.Protocol`` that parses the
server's (unmasked) frames straight out of its buffer and hands each text message to a callback.

It speaks what the viewers need of RFC 6455: the opening handshake (with the accept key checked),
text messages (fragmented ones too), ping → pong, close; and sending masked text frames.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeError(ConnectionError):
    pass


class ViewerProtocol(asyncio.Protocol):
    def __init__(
        self,
        host: str,
        path: str,
        origin: str,
        on_text: Callable[[str], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.host, self.path, self.origin = host, path, origin
        self.on_text = on_text
        self.headers = headers or {}
        self.key = base64.b64encode(os.urandom(16))
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {self.origin}\r\n{extra}\r\n"
        )
        self.transport.write(request.encode("latin-1"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            self._check_handshake(head)
            if not self.upgraded:
                return
        while True:
            n = len(buf)
            if n < 2:
                return
            b0, b1 = buf[0], buf[1]
            length = b1 & 0x7F
            at = 2
            if length == 126:
                if n < 4:
                    return
                (length,) = struct.unpack_from("!H", buf, 2)
                at = 4
            elif length == 127:
                if n < 10:
                    return
                (length,) = struct.unpack_from("!Q", buf, 2)
                at = 10
            if n < at + length:
                return
            payload = bytes(buf[at : at + length])
            del buf[: at + length]
            self._frame(b0 & 0x0F, bool(b0 & 0x80), payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    # --- frames -------------------------------------------------------------------------------

    def _check_handshake(self, head: str) -> None:
        status, _, rest = head.partition("\r\n")
        expected = base64.b64encode(
            hashlib.sha1(self.key + GUID, usedforsecurity=False).digest()
        ).decode()
        fields = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in rest.split("\r\n"))
        }
        if " 101 " not in status + " " or fields.get("sec-websocket-accept") != expected:
            if not self.opened.done():
                self.opened.set_exception(HandshakeError(status))
            self.transport.close()
            return
        self.upgraded = True
        self.opened.set_result(None)

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == OP_TEXT or opcode == OP_CONT:
            if fin and not self.fragments:
                self.on_text(payload.decode("utf-8"))
                return
            self.fragments.append(payload)
            if fin:
                text = b"".join(self.fragments).decode("utf-8")
                self.fragments = []
                self.on_text(text)
        elif opcode == OP_PING:
            self._send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if not self.transport.is_closing():
                self._send(OP_CLOSE, payload[:2])
                self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        repeated = mask * (n // 4 + 1)
        key = int.from_bytes(repeated, "big") >> (8 * (len(repeated) - n))
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
        self.transport.write(head + mask + masked)

    # --- API ----------------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode("utf-8"))

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(OP_CLOSE, struct.pack("!H", 1000))
            try:
                await asyncio.wait_for(asyncio.shield(self.closed), 2)
            except TimeoutError:
                self.transport.close()


async def connect(
    host: str,
    port: int,
    path: str,
    origin: str,
    on_text: Callable[[str], None],
    headers: dict[str, str] | None = None,
) -> ViewerProtocol:
    loop = asyncio.get_running_loop()
    _transport, proto = await loop.create_connection(
        lambda: ViewerProtocol(f"{host}:{port}", path, origin, on_text, headers), host, port
    )
    await proto.opened
    return proto

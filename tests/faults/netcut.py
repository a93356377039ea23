"""A TCP proxy in front of the web server whose line can be cut, as a party's network drops:
while cut, nothing gets through in either direction and nothing is closed (a dead network closes
nothing: each end finds out by itself); when the line is back, the connections that were open
are reset, as their peers would have by then, and new ones go through."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class CuttableLine:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.loop = asyncio.new_event_loop()
        self.up = asyncio.Event()
        self.writers: set[asyncio.StreamWriter] = set()
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.up.set()
        server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _connection(self, reader, writer) -> None:
        await self.up.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self.writers.discard(w)
            w.close()

    async def _pump(self, reader, writer) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await self.up.wait()  # a cut line holds everything
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def cut(self) -> None:
        self.loop.call_soon_threadsafe(self.up.clear)

    def restore(self) -> None:
        def reset() -> None:
            for w in list(self.writers):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                        )
                w.close()
            self.writers.clear()
            self.up.set()

        self.loop.call_soon_threadsafe(reset)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

"""Driving the real consumers (through asgi.py's router and middleware) for the security tests."""

from __future__ import annotations

import asyncio
import json

from channels.testing import WebsocketCommunicator

ORIGIN = (b"origin", b"http://testserver")

# Frames a socket sends by itself (state, presence, snapshots): not the answer to a message.
BACKGROUND = {
    "hello",
    "lobby",
    "members",
    "caucus",
    "recording",
    "layout",
    "waiting",
    "admitted",
    "evidence",
    "welcome",
    "events",
    "watch.state",
    "draft",
    "agreement",
}
# What a socket says first: a background frame, or the agreement socket's "empty" (no draft yet),
# which stays an answer to "refresh" and so is not a background frame.
GREETINGS = BACKGROUND | {"empty"}


def endpoints(w) -> dict[str, str]:
    return {
        "room": f"/ws/room/{w.hearing.public_id}/",
        "watch": f"/ws/watch/{w.hearing.public_id}/",
        "live": f"/ws/live/{w.hearing.public_id}/",
        "agreement": f"/ws/case/{w.case.tracking_number}/agreement/",
    }


def application():
    from asgi import application as app

    return app


class Socket:
    """One client socket. `frames` collects everything the server sent, in order."""

    def __init__(self, path: str, user, *, headers=None, app=None) -> None:
        self.comm = WebsocketCommunicator(
            app or application(), path, headers=[ORIGIN] if headers is None else headers
        )
        # the session cookie is what AuthMiddlewareStack reads; tests set the user directly
        self.comm.scope["user"] = user
        self.frames: list[dict] = []
        self.closed: int | None = None
        self._reader: asyncio.Task | None = None
        self._new = asyncio.Event()

    async def connect(self) -> bool:
        connected, code = await self.comm.connect(timeout=10)
        if not connected:
            self.closed = code or 1000
            return False
        self._reader = asyncio.ensure_future(self._read())
        return True

    async def _read(self) -> None:
        while True:
            output = await self.comm.output_queue.get()
            if output["type"] == "websocket.close":
                self.closed = output.get("code", 1000)
                self._new.set()
                return
            if output["type"] == "websocket.send":
                text = output.get("text")
                try:
                    self.frames.append(json.loads(text) if text else {"type": "<binary>"})
                except ValueError:
                    self.frames.append({"type": "<not json>"})
                self._new.set()

    async def send(self, message: dict | str | bytes) -> None:
        if isinstance(message, bytes):
            await self.comm.send_to(bytes_data=message)
        else:
            text = message if isinstance(message, str) else json.dumps(message)
            await self.comm.send_to(text_data=text)

    async def wait_for(self, predicate, within: float = 10.0, *, start: int = 0):
        """The first frame from index `start` on that matches, as (index, frame); None if the
        socket closed or nothing came in time."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            for index in range(start, len(self.frames)):
                if predicate(self.frames[index]):
                    return index, self.frames[index]
            if self.closed is not None:
                return None
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except TimeoutError:
                return None

    async def settle(self) -> None:
        """Wait for the greeting of the socket (or its close)."""
        await self.wait_for(lambda f: f.get("type") in GREETINGS or f.get("type") == "error", 10)

    async def exchange(self, message: dict | str | bytes) -> list[dict] | None:
        """Send `message`, then a ping; the frames that came before the pong of that ping,
        background frames left out (a ping's own pong included). None when the socket closed."""
        start = len(self.frames)
        await self.send(message)
        await self.send({"type": "ping"})
        is_ping = isinstance(message, dict) and message.get("type") == "ping"
        index = start
        for _ in range(2 if is_ping else 1):
            found = await self.wait_for(lambda f: f.get("type") == "pong", 15, start=index)
            if found is None:
                return None
            index = found[0] + 1
        return [f for f in self.frames[start : index - 1] if f.get("type") not in BACKGROUND]

    async def close(self) -> None:
        if self.closed is None:
            await self.comm.disconnect(timeout=15)
        if self._reader is not None:
            self._reader.cancel()

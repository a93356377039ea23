"""Driving the real audience consumer through the real Redis channel layer."""

from __future__ import annotations

import json

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from voting.routing import websocket_urlpatterns

application = URLRouter(websocket_urlpatterns)


class Viewer:
    def __init__(self, public_id: str, user, after: int | None = None) -> None:
        path = f"/ws/live/{public_id}/"
        if after is not None:
            path += f"?after={after}"
        self.comm = WebsocketCommunicator(application, path)
        self.comm.scope["user"] = user
        self.welcome: dict | None = None
        # Room events that arrived while waiting for a reply (a poster may see its own comment
        # before the ack); events() hands them out first.
        self.stash: list[dict] = []

    async def connect(self) -> dict:
        connected, _ = await self.comm.connect(timeout=10)
        assert connected
        self.welcome = await self.recv()
        return self.welcome

    async def send(self, **message) -> None:
        await self.comm.send_to(text_data=json.dumps({"v": 1, **message}))

    async def send_raw(self, text: str) -> None:
        await self.comm.send_to(text_data=text)

    async def recv(self, wait: float = 5) -> dict:
        return json.loads(await self.comm.receive_from(timeout=wait))

    async def recv_type(self, kind: str, wait: float = 5) -> dict:
        """The next frame of `kind`, asserting that nothing but room events came first."""
        while True:
            frame = await self.recv(wait)
            if frame["type"] == "events" and kind != "events":
                self.stash.extend(frame["events"])
                continue
            assert frame["type"] == kind, frame
            return frame

    async def events(self, count: int, wait: float = 5) -> list[dict]:
        """Collect exactly `count` events from "events" frames (batches may hold several)."""
        got: list[dict] = self.stash[:count]
        del self.stash[:count]
        while len(got) < count:
            frame = await self.recv(wait)
            assert frame["type"] == "events", frame
            got.extend(frame["events"])
        assert len(got) == count, got
        return got

    async def nothing_more(self, wait: float = 0.4) -> bool:
        return not self.stash and await self.comm.receive_nothing(timeout=wait)

    async def close(self) -> None:
        await self.comm.disconnect()

"""A room member for tests: a signaling socket through the real consumer and an aiortc peer."""

from __future__ import annotations

import asyncio
import json

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from streaming.routing import websocket_urlpatterns
from tests.streaming.probe import ProbePeer, wait_until


class RoomClient:
    def __init__(
        self, user, public_id: str, *, colour: str = "red", tone: float = 440.0, query: str = ""
    ) -> None:
        self.user = user
        self.public_id = public_id
        self.colour = colour
        self.tone = tone
        self.frames: list[dict] = []
        self.layout: list[dict] = []
        self.peer: ProbePeer | None = None
        self.closed: int | None = None
        self._reader: asyncio.Task | None = None
        self.communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns),
            f"/ws/room/{public_id}/" + (f"?{query}" if query else ""),
        )
        self.communicator.scope["user"] = user

    async def connect(self) -> None:
        connected, _ = await self.communicator.connect()
        assert connected
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            output = await self.communicator.output_queue.get()
            if output["type"] == "websocket.close":
                self.closed = output.get("code", 1000)
                return
            frame = json.loads(output["text"])
            self.frames.append(frame)
            if frame["type"] in ("answer", "layout"):
                self.layout = frame.get("layout", frame.get("slots", []))

    async def send(self, frame: dict | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.communicator.send_to(text_data=text)

    async def expect(self, type_: str, within: float = 10.0, **match) -> dict:
        def found():
            for frame in self.frames:
                if frame["type"] == type_ and all(frame.get(k) == v for k, v in match.items()):
                    return frame
            return None

        frame = await wait_until(found, within=within)
        assert frame is not None, f"no {type_} frame {match} in {[f['type'] for f in self.frames]}"
        return frame

    def last(self, type_: str) -> dict | None:
        return next((f for f in reversed(self.frames) if f["type"] == type_), None)

    @property
    def member_id(self) -> str:
        hello = next((f for f in self.frames if f["type"] == "hello"), None)
        if hello is not None:
            self._member_id = hello["me"]["id"]
        return getattr(self, "_member_id", "")

    async def join(self) -> dict:
        self.peer = ProbePeer(colour=self.colour, tone=self.tone)
        await self.send({"type": "join", "offer": await self.peer.offer(), "ref": "j1"})
        answer = await self.expect("answer", within=20)
        await self.peer.accept(answer["sdp"])
        return answer

    def streams_of(self, member_id: str):
        """(audio, video) received streams showing ``member_id``, per the latest layout."""
        for entry in self.layout:
            if entry["member"] == member_id:
                return self.peer.stream(entry["audio_mid"]), self.peer.stream(entry["video_mid"])
        return None, None

    def sees(self, other: RoomClient) -> bool:
        audio, video = self.streams_of(other.member_id)
        return bool(
            video
            and video.colour == other.colour
            and len(set(video.counters)) >= 5
            and audio
            and audio.loudness() > 0.05
            and abs(audio.frequency() - other.tone) < 20
        )

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
        if self.closed is None:
            # on a loaded machine the consumer may take longer than the default second to finish
            await self.communicator.disconnect(timeout=15)
        if self._reader is not None:
            self._reader.cancel()

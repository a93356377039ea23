"""A live-panel client in Python that behaves as voting/static/voting/live.js does: it applies
events strictly in seq order, asks for a gap that does not fill within a second (over the socket,
`resume`), reopens a dropped socket with `?after=<last seq>`, and keeps unacknowledged comments
in an outbox that it sends again, with the same client id, after reconnecting.

What it records lets a test or the soak benchmark count comments lost, comments shown twice
(two different comments for one client id), reconnections, and the longest time it went without
a working socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

GAP_WAIT = 1.0
RETRY_FIRST, RETRY_MAX = 0.5, 2.0


class LiveClient:
    def __init__(self, base: str, room: str, *, after: int = 0, cookie: str = "") -> None:
        self.ws_url = base.replace("http://", "ws://") + f"/ws/live/{room}/"
        self.origin = base
        self.cookie = cookie
        self.last_seq = after
        self.pending: dict[int, dict] = {}
        self.shown: Counter[str] = Counter()  # comment text -> distinct comment ids applied
        self.comment_ids: dict[str, set[int]] = {}
        self.outbox: dict[str, str] = {}  # client id -> text, until acknowledged
        self.acked: dict[str, int] = {}  # client id -> comment id
        self.errors: list[dict] = []
        self.connects = 0
        self.drops = 0
        self.longest_gap = 0.0
        self.longest_silence = 0.0  # between two comments applied, once the first came
        self.last_comment_at: float | None = None
        self.down_since: float | None = time.monotonic()
        self.connected = asyncio.Event()
        self.ws = None
        self._stop = False
        self._gap_task: asyncio.Task | None = None

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        retry = RETRY_FIRST
        while not self._stop:
            try:
                async with connect(
                    f"{self.ws_url}?after={self.last_seq}",
                    origin=self.origin,
                    additional_headers={"Cookie": self.cookie} if self.cookie else None,
                    compression=None,
                    max_size=2**22,
                    ping_interval=5,
                    ping_timeout=10,
                    open_timeout=10,
                ) as ws:
                    self.ws = ws
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame["type"] == "welcome":
                            retry = RETRY_FIRST
                            self._up()
                            for client_id, text in list(self.outbox.items()):
                                await self._send_comment(client_id, text)
                        else:
                            self._on_frame(frame)
            except (OSError, TimeoutError, WebSocketException):
                pass
            except Exception as exc:  # noqa: BLE001 - a client never gives up; say what happened
                self.errors.append({"type": "client", "message": repr(exc)})
            self.ws = None
            if self._stop:
                break
            if self.connected.is_set():
                self.connected.clear()
                self.drops += 1
                self.down_since = time.monotonic()
            await asyncio.sleep(retry * (0.5 + random.random()))  # jitter, as live.js
            retry = min(retry * 2, RETRY_MAX)

    async def stop(self) -> None:
        self._stop = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    def _up(self) -> None:
        self.connects += 1
        if self.down_since is not None and self.connects > 1:
            self.longest_gap = max(self.longest_gap, time.monotonic() - self.down_since)
        self.down_since = None
        self.connected.set()

    def current_gap(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    # -- comments --------------------------------------------------------------------------

    async def post(self, client_id: str, text: str) -> None:
        self.outbox[client_id] = text
        await self._send_comment(client_id, text)

    async def _send_comment(self, client_id: str, text: str) -> None:
        if self.ws is None or not self.connected.is_set():
            return  # sent on reconnect
        with contextlib.suppress(WebSocketException, OSError):
            await self.ws.send(
                json.dumps({"v": 1, "type": "comment", "client_id": client_id, "text": text})
            )

    # -- events ----------------------------------------------------------------------------

    def _on_frame(self, frame: dict) -> None:
        if frame["type"] == "events":
            self._receive(frame["events"])
        elif frame["type"] == "comment.ack":
            self.outbox.pop(frame["client_id"], None)
            self.acked[frame["client_id"]] = frame["id"]
        elif frame["type"] == "error":
            # a refused comment (rate limit) stays in the outbox and is sent again later
            self.errors.append(frame)

    def _receive(self, events: list[dict]) -> None:
        for event in events:
            if event["seq"] > self.last_seq:
                self.pending[event["seq"]] = event
        while self.last_seq + 1 in self.pending:
            self.last_seq += 1
            self._apply(self.pending.pop(self.last_seq))
        if self.pending and (self._gap_task is None or self._gap_task.done()):
            self._gap_task = asyncio.ensure_future(self._fill_gap())

    async def _fill_gap(self) -> None:
        await asyncio.sleep(GAP_WAIT)
        if self.pending and self.ws is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await self.ws.send(json.dumps({"v": 1, "type": "resume", "after": self.last_seq}))

    def _apply(self, event: dict) -> None:
        if event.get("kind") != "comment":
            return
        now = time.monotonic()
        if self.last_comment_at is not None:
            self.longest_silence = max(self.longest_silence, now - self.last_comment_at)
        self.last_comment_at = now
        ids = self.comment_ids.setdefault(event["text"], set())
        if event["id"] not in ids:
            ids.add(event["id"])
            self.shown[event["text"]] += 1

    async def resend_unacked(self) -> None:
        for client_id, text in list(self.outbox.items()):
            await self._send_comment(client_id, text)

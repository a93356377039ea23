"""A live-panel client in Python that behaves as voting/static/voting/live.js does: it applies
events strictly in seq order, asks for a gap that does not fill within a second (over the socket,
`resume`), reopens a dropped socket with `?after=<last seq>` (at once when the server closed it
with the restart code, else with jittered back-off; an attempt not open within OPEN_TIMEOUT is
given up and made again), and keeps unacknowledged comments in an
outbox that it sends again, with the same client id, after reconnecting. `WatchClient` holds the
watch socket as watch.js does.

What they record lets a test or the soak benchmark count comments lost, comments shown twice
(two different comments for one client id), reconnections, and each time they went without a
working socket (`gaps`: from the moment the socket dropped to the moment the server greeted the
new one, on the machine's monotonic clock, which every process shares)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from cloudbench.serve import CLOSE_RESTART

GAP_WAIT = 1.0
RETRY_FIRST, RETRY_MAX = 0.5, 2.0
# A browser waits for a slow opening handshake (a server busy with a crowd reconnecting);
# giving up sooner would only add to that crowd.
OPEN_TIMEOUT = 10  # as the pages: an attempt that hangs is given up and made again
SEND_LIMIT = 5.0


def retry_pause(retry: float) -> float:
    """The pages' back-off: jittered so that viewers dropped together do not knock together."""
    return retry * (0.5 + random.random())


class PageSocket:
    """A socket held open as the pages hold theirs: reopened when it drops, at once after the
    restart code (another process serves), else after the pages' jittered back-off. Up once
    the server's greeting came (`greeted`); records each time it went without a working socket
    (`gaps`) and the codes the server closed it with (`close_codes`)."""

    def __init__(self, url: str, origin: str, **options) -> None:
        self.url = url
        self.origin = origin
        self.options = options
        self.connects = 0
        self.drops = 0
        self.gaps: list[tuple[float, float]] = []  # (dropped at, greeted again at)
        # where each gap's time went: (dropped at, attempts made, the last attempt's opening
        # handshake done at, greeted at)
        self.phases: list[tuple[float, int, float, float]] = []
        self.attempts = 0
        self.opened_at = 0.0
        self.close_codes: list[int] = []  # of the sockets the server closed
        self.longest_gap = 0.0
        self.errors: list[dict] = []
        self.down_since: float | None = time.monotonic()
        self.connected = asyncio.Event()
        self.ws = None
        self.stopping = False

    @property
    def up(self) -> bool:
        return self.connected.is_set()

    def address(self) -> str:
        return self.url

    def greeted(self, frame: dict) -> bool:
        raise NotImplementedError

    async def on_frame(self, frame: dict) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        retry = RETRY_FIRST
        while not self.stopping:
            code = None
            self.attempts += 1
            try:
                async with connect(
                    self.address(),
                    origin=self.origin,
                    ping_interval=5,
                    ping_timeout=10,
                    open_timeout=OPEN_TIMEOUT,
                    **self.options,
                ) as ws:
                    self.ws = ws
                    self.opened_at = time.monotonic()
                    if self.stopping:
                        # stop() came while this socket was opening: it closed the one before,
                        # or none, and nothing else would close this one
                        break
                    try:
                        async for raw in ws:
                            frame = json.loads(raw)
                            if not self.up and self.greeted(frame):
                                retry = RETRY_FIRST
                                self._up()
                            await self.on_frame(frame)
                    finally:
                        code = ws.close_code
                        if code is not None and not self.stopping:
                            self.close_codes.append(code)
            except (OSError, TimeoutError, WebSocketException):
                pass
            except Exception as exc:  # noqa: BLE001 - a page never gives up; say what happened
                self.errors.append({"type": "client", "message": repr(exc)})
            self.ws = None
            if self.stopping:
                break
            if self.up:
                self.connected.clear()
                self.drops += 1
                self.down_since = time.monotonic()
            if code == CLOSE_RESTART:
                retry = RETRY_FIRST
                continue  # another process serves: at once, as the pages
            await asyncio.sleep(retry_pause(retry))
            retry = min(retry * 2, RETRY_MAX)

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    def _up(self) -> None:
        self.connects += 1
        if self.down_since is not None and self.connects > 1:
            now = time.monotonic()
            self.gaps.append((self.down_since, now))
            self.phases.append((self.down_since, self.attempts, self.opened_at, now))
            self.longest_gap = max(self.longest_gap, now - self.down_since)
        self.down_since = None
        self.attempts = 0
        self.connected.set()

    def current_gap(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since


class LiveClient(PageSocket):
    """The live panel's socket (/ws/live/), as live.js."""

    def __init__(self, base: str, room: str, *, after: int = 0, cookie: str = "") -> None:
        super().__init__(
            base.replace("http://", "ws://") + f"/ws/live/{room}/",
            base,
            additional_headers={"Cookie": cookie} if cookie else None,
            compression=None,
            max_size=2**22,
        )
        self.last_seq = after
        self.pending: dict[int, dict] = {}
        self.shown: Counter[str] = Counter()  # comment text -> distinct comment ids applied
        self.comment_ids: dict[str, set[int]] = {}
        self.outbox: dict[str, str] = {}  # client id -> text, until acknowledged
        self.acked: dict[str, int] = {}  # client id -> comment id
        self.longest_silence = 0.0  # between two comments applied, once the first came
        self.last_comment_at: float | None = None
        self._gap_task: asyncio.Task | None = None

    def address(self) -> str:
        return f"{self.url}?after={self.last_seq}"

    def greeted(self, frame: dict) -> bool:
        return frame["type"] == "welcome"

    async def on_frame(self, frame: dict) -> None:
        if frame["type"] == "welcome":
            for client_id, text in list(self.outbox.items()):
                await self._send_comment(client_id, text)
        else:
            self._on_frame(frame)

    # -- comments --------------------------------------------------------------------------

    async def post(self, client_id: str, text: str) -> None:
        self.outbox[client_id] = text
        await self._send_comment(client_id, text)

    async def _send_comment(self, client_id: str, text: str) -> None:
        if self.ws is None or not self.connected.is_set():
            return  # sent on reconnect
        # A browser's send never waits; this one waits while the server reads nothing (a busy
        # or wedged process): not for ever. The comment stays in the outbox until acknowledged.
        with contextlib.suppress(WebSocketException, OSError, TimeoutError):
            await asyncio.wait_for(
                self.ws.send(
                    json.dumps({"v": 1, "type": "comment", "client_id": client_id, "text": text})
                ),
                SEND_LIMIT,
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


class WatchClient(PageSocket):
    """The watch page's socket (/ws/watch/), as watch.js: up once the state came."""

    def __init__(self, base: str, room: str) -> None:
        super().__init__(base.replace("http://", "ws://") + f"/ws/watch/{room}/", base)

    @property
    def failures(self) -> list[str]:
        return [e["message"] for e in self.errors]

    def greeted(self, frame: dict) -> bool:
        return frame.get("type") == "watch.state"

    async def on_frame(self, frame: dict) -> None:
        pass

"""One source track read once and handed to several consumers, each with a small bounded queue.

The composite is made once and feeds both the WebRTC fanout and the HLS writer. MediaRelay would
do the same but queues without bound by default; here a slow branch loses its oldest frames and
never holds up the others or the source.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.frame import Frame


class TeeBranch(MediaStreamTrack):
    def __init__(self, tee: FrameTee, *, queue_size: int) -> None:
        super().__init__()
        self.kind = tee.source.kind
        self._tee = tee
        self._queue: deque[Frame | None] = deque(maxlen=queue_size)
        self._ready = asyncio.Event()
        self.dropped = 0

    def _offer(self, frame: Frame | None) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(frame)
        self._ready.set()

    async def recv(self) -> Frame:
        self._tee._ensure_running()
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._queue:
                frame = self._queue.popleft()
                if frame is None:
                    self.stop()
                    raise MediaStreamError
                return frame
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        super().stop()
        self._tee._branches.discard(self)
        self._ready.set()


class FrameTee:
    def __init__(self, source: MediaStreamTrack) -> None:
        self.source = source
        self._branches: set[TeeBranch] = set()
        self._task: asyncio.Task | None = None

    def branch(self, *, queue_size: int = 4) -> TeeBranch:
        branch = TeeBranch(self, queue_size=queue_size)
        self._branches.add(branch)
        return branch

    def start(self) -> None:
        self._ensure_running()

    def _ensure_running(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.source.recv()
                for branch in list(self._branches):
                    branch._offer(frame)
        except MediaStreamError:
            pass
        for branch in list(self._branches):
            branch._offer(None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for branch in list(self._branches):
            branch.stop()

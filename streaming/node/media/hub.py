"""One consumer per received track, many readers.

aiortc decodes every received track into an unbounded queue, so a received track must be read
continuously or its frames pile up. A ``FrameHub`` is that reader: it keeps the latest frame
(for composition and recording) and feeds any number of ``FrameTap`` tracks, each a small
queue that drops the oldest frame. Its source can be swapped (a member reconnecting brings a new
remote track) while the taps, and everything fed from them, stay in place.

Decoding is what costs, so a hub says whether anyone wants its frames (``wanted``: a tap exists or
someone holds the hub, e.g. a recording reading ``latest``) and calls ``on_demand`` when that
changes; the media node decodes a published track only while its hub is wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class FrameTap(MediaStreamTrack):
    """A reader of a ``FrameHub``: ``recv()`` returns the hub's frames, oldest dropped first."""

    def __init__(self, hub: FrameHub, *, queue_size: int) -> None:
        super().__init__()
        self.kind = hub.kind
        self._hub = hub
        self._queue: deque[Any] = deque(maxlen=max(1, queue_size))
        self._ready = asyncio.Event()
        self.dropped = 0

    def _push(self, frame: Any) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(frame)
        self._ready.set()

    def pop_nowait(self) -> Any | None:
        return self._queue.popleft() if self._queue else None

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._queue:
                return self._queue.popleft()
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        self._hub._taps.discard(self)
        super().stop()
        self._ready.set()
        self._hub._demand_changed()


class FrameHub:
    """Reads one source track continuously; keeps its latest frame; feeds taps."""

    def __init__(self, source: MediaStreamTrack | None, *, kind: str, name: str = "") -> None:
        self.kind = kind
        self.name = name
        self._source = source
        self._taps: set[FrameTap] = set()
        self._task: asyncio.Task[None] | None = None
        self._switched = asyncio.Event()
        self._stopped = False
        self.latest: Any = None
        self.latest_at: float | None = None
        self.frames_in = 0
        # frame arrival times over the last seconds, for the connection-quality estimate
        self._arrivals: deque[float] = deque(maxlen=120)
        self._holders: set[object] = set()
        self.on_demand: Callable[[bool], None] | None = None
        self._wanted = False
        if source is not None:
            self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"hub-{self.kind}-{self.name}"
            )

    def tap(self, *, queue_size: int = 2) -> FrameTap:
        tap = FrameTap(self, queue_size=queue_size)
        self._taps.add(tap)
        self._demand_changed()
        return tap

    @property
    def wanted(self) -> bool:
        """Whether anything reads this hub's frames (a tap, or a holder reading ``latest``)."""
        return bool(self._taps or self._holders)

    def hold(self, holder: object) -> None:
        """Keep frames coming for ``holder``, which reads ``latest`` rather than a tap."""
        self._holders.add(holder)
        self._demand_changed()

    def release(self, holder: object) -> None:
        self._holders.discard(holder)
        self._demand_changed()

    def _demand_changed(self) -> None:
        wanted = self.wanted and not self._stopped
        if wanted != self._wanted:
            self._wanted = wanted
            if self.on_demand is not None:
                self.on_demand(wanted)

    def set_source(self, source: MediaStreamTrack | None) -> None:
        self._source = source
        self._switched.set()
        if source is not None:
            self._start()

    def fps(self, window: float = 2.0) -> float:
        """Frames per second received over the last ``window`` seconds."""
        now = time.monotonic()
        recent = [t for t in self._arrivals if now - t <= window]
        return len(recent) / window

    async def _run(self) -> None:
        while not self._stopped:
            source = self._source
            if source is None:
                return
            self._switched.clear()
            recv = asyncio.ensure_future(source.recv())
            switched = asyncio.ensure_future(self._switched.wait())
            try:
                await asyncio.wait({recv, switched}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                switched.cancel()
            if not recv.done():
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                    await recv
                continue
            try:
                frame = recv.result()
            except MediaStreamError:
                if self._source is source:
                    self._source = None
                return
            now = time.monotonic()
            self.frames_in += 1
            self.latest = frame
            self.latest_at = now
            self._arrivals.append(now)
            for tap in list(self._taps):
                tap._push(frame)

    async def stop(self) -> None:
        self._stopped = True
        self._switched.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for tap in list(self._taps):
            tap.stop()

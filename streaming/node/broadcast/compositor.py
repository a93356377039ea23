"""The broadcast picture: the room's members in a grid, composed at a fixed frame rate.

Inputs are plain ``MediaStreamTrack``s (the media node's received tracks, or synthetic ones in
tests and benchmarks). Each input is drained by its own reader task that keeps only the newest
frame: a received track that nobody reads piles up decoded frames, and the broadcast only ever
needs the latest picture of each member.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame
from av.video.reformatter import VideoReformatter

from streaming.node.broadcast.overlay import blend, render_slate, render_text
from streaming.node.broadcast.privacy import FaceBlurrer
from streaming.node.broadcast.scene import (
    ENDED_TEXT,
    SLATE_TEXT,
    WAITING_TEXT,
    BroadcastMember,
    BroadcastState,
    Scene,
)

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
# A member whose camera sent nothing for this long is shown as "no picture", not frozen. A shared
# screen is not: a browser sends a still document's picture rarely (only when it changes, or about
# once a second), and its last picture is what the screen shows.
STALE_AFTER = 2.0
# The picture count (sound only when 0) waits longer before it takes a camera for off: on a busy
# node a camera's frames can come further apart than STALE_AFTER, and the watch page's notice
# must not flicker with them.
NO_PICTURE_AFTER = 5.0

BACKGROUND = (18, 22, 30)
TILE_BACKGROUND = (40, 46, 58)
TILE_PAD = 2


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


class LatestFrameReader:
    """Drains a video track, keeping the newest frame."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frame: VideoFrame | None = None
        self.started_at = time.monotonic()
        self.received_at = 0.0
        self.frames = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                self.frame = None
                return
            self.frame = frame
            self.received_at = time.monotonic()
            self.frames += 1

    def latest(self, stale_after: float | None = STALE_AFTER) -> VideoFrame | None:
        if self.frame is None:
            return None
        if stale_after is not None and time.monotonic() - self.received_at > stale_after:
            return None
        return self.frame

    def stop(self) -> None:
        self._task.cancel()


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows) for ``count`` tiles: as square as possible, wider than tall."""
    if count <= 1:
        return 1, 1
    columns = math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


class CompositeVideoTrack(MediaStreamTrack):
    """Video track composing the scene's members, or the slate when the scene is not live."""

    kind = "video"

    def __init__(self, scene: Scene, *, width: int = 640, height: int = 360, fps: int = 15):
        super().__init__()
        # Members' decoded frames are shared with the room's other consumers (the recorder
        # composes them in a worker thread). frame.reformat() uses one swscale context per
        # frame, and two threads scaling through it at once deadlock, so scale with our own.
        self._scaler = VideoReformatter()
        if width % 2 or height % 2:
            raise ValueError("width and height must be even for yuv420p")
        self.scene = scene
        self.width = width
        self.height = height
        self.fps = fps
        self.frames_sent = 0
        self.compose_seconds = 0.0
        self._start: float | None = None
        self._index = -1
        self._readers: dict[str, LatestFrameReader] = {}
        self._blurrers: dict[str, FaceBlurrer] = {}
        self._labels: dict[str, np.ndarray] = {}
        self._layout: dict[str, Rect] = {}
        self._tiles: list[Rect] = []
        self._version = -1
        self._banner_height = max(20, height // 10)
        self._banner = self._render_banner()
        self._live_badge = render_text(
            "● 直播", size=max(10, self._banner_height // 2), color=(255, 80, 80)
        )
        self._slates = {
            BroadcastState.HOLD: self._yuv(render_slate(width, height, SLATE_TEXT)),
            BroadcastState.ENDED: self._yuv(render_slate(width, height, ENDED_TEXT)),
        }
        self._waiting: tuple[str, np.ndarray] | None = None
        # members whose picture (camera or screen) the last live frame showed; None until then.
        # A camera turned off on the member's page still has its track, which just stops: what
        # counts is a picture arriving. ``on_pictures`` is told when the count changes.
        self.pictures: int | None = None
        self.on_pictures: Callable[[int], None] | None = None

    # -- layout ------------------------------------------------------------------------------

    def layout(self) -> dict[str, Rect]:
        """Where each member's picture lands in the composite (used by tests and benchmarks)."""
        self._sync_members()
        return dict(self._layout)

    def _sync_members(self) -> None:
        if self._version == self.scene.version:
            return
        self._version = self.scene.version
        self._banner = self._render_banner()
        wanted = {m.member_id: m for m in self.scene.members}
        for member_id in list(self._readers):
            member = wanted.get(member_id)
            if member is None or member.video is not self._readers[member_id].track:
                self._readers.pop(member_id).stop()
        for member_id, member in wanted.items():
            if member.video is not None and member_id not in self._readers:
                self._readers[member_id] = LatestFrameReader(member.video)
        self._blurrers = {
            m.member_id: self._blurrers.get(m.member_id) or FaceBlurrer(phase=index)
            for index, m in enumerate(self.scene.members)
            if m.hides_face
        }
        size = max(10, self.height // 24)
        self._labels = {m.member_id: render_text(m.label, size=size) for m in self.scene.members}
        self._compute_layout(self.scene.members)

    def _compute_layout(self, members: list[BroadcastMember]) -> None:
        if any(m.screen for m in members):
            self._compute_screen_layout(members)
            return
        columns, rows = grid_shape(len(members))
        top = self._banner_height
        cell_w = self.width // columns
        cell_h = (self.height - top) // rows
        self._tiles = []
        self._layout = {}
        for index, member in enumerate(members):
            column, row = index % columns, index // columns
            # The image area inside the cell, kept even-sized and framed by a thin border.
            tile = Rect(
                column * cell_w + TILE_PAD,
                top + row * cell_h + TILE_PAD,
                (cell_w - 2 * TILE_PAD) & ~1,
                (cell_h - 2 * TILE_PAD) & ~1,
            )
            self._tiles.append(tile)
            self._layout[member.member_id] = tile

    def _compute_screen_layout(self, members: list[BroadcastMember]) -> None:
        """A screen share on air: the screen large on the left, the members in a column."""
        top = self._banner_height
        others = [m for m in members if not m.screen]
        side = self.width // 4 if others else 0
        height = self.height - top
        cell_h = height // max(1, len(others))
        self._tiles, self._layout = [], {}
        for member in members:
            if member.screen:
                tile = Rect(
                    TILE_PAD,
                    top + TILE_PAD,
                    (self.width - side - 2 * TILE_PAD) & ~1,
                    (height - 2 * TILE_PAD) & ~1,
                )
            else:
                index = others.index(member)
                tile = Rect(
                    self.width - side + TILE_PAD,
                    top + index * cell_h + TILE_PAD,
                    (side - 2 * TILE_PAD) & ~1,
                    (cell_h - 2 * TILE_PAD) & ~1,
                )
            self._tiles.append(tile)
            self._layout[member.member_id] = tile

    def _render_banner(self) -> np.ndarray:
        text = self.scene.banner or "云上板凳"
        return render_text(
            text, size=max(10, self._banner_height // 2), background=(0, 0, 0, 0), padding=2
        )

    # -- frames ------------------------------------------------------------------------------

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._next_pts()
        self._sync_members()
        started = time.perf_counter()
        if self.scene.waiting:
            frame = VideoFrame.from_ndarray(self._waiting_slate(), format="yuv420p")
        elif self.scene.state is BroadcastState.LIVE:
            frame = VideoFrame.from_ndarray(self._compose(), format="rgb24").reformat(
                format="yuv420p"
            )
        else:
            frame = VideoFrame.from_ndarray(self._slates[self.scene.state], format="yuv420p")
        self.compose_seconds += time.perf_counter() - started
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame

    async def _next_pts(self) -> int:
        now = time.monotonic()
        if self._start is None:
            self._start = now
            self._index = 0
            return 0
        target = self._index + 1
        due = self._start + target / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        else:
            # A consumer that fell behind gets the current picture, not a burst of old frames:
            # skip to the slot the wall clock is in so pts stays true to time.
            target = max(target, int((now - self._start) * self.fps))
        self._index = target
        return int(target * VIDEO_CLOCK_RATE / self.fps)

    def _compose(self) -> np.ndarray:
        canvas = np.empty((self.height, self.width, 3), dtype=np.uint8)
        canvas[:] = BACKGROUND
        blend(canvas, self._banner, 8, (self._banner_height - self._banner.shape[0]) // 2)
        blend(
            canvas,
            self._live_badge,
            self.width - self._live_badge.shape[1] - 8,
            (self._banner_height - self._live_badge.shape[0]) // 2,
        )
        pictures = 0
        for member, tile in zip(self.scene.members, self._tiles, strict=False):
            pictures += self._draw_member(canvas, member, tile)
        if pictures != self.pictures:
            self.pictures = pictures
            if self.on_pictures is not None:
                self.on_pictures(pictures)
        return canvas

    def _draw_member(self, canvas: np.ndarray, member: BroadcastMember, tile: Rect) -> bool:
        """Draw one member's tile; whether it has (or is about to have) a picture."""
        x0, y0, w, h = tile.x, tile.y, tile.width, tile.height
        region = canvas[y0 : y0 + h, x0 : x0 + w]
        reader = self._readers.get(member.member_id)
        frame = reader.latest(None if member.screen else STALE_AFTER) if reader else None
        if frame is None:
            region[:] = TILE_BACKGROUND
            # a picture just subscribed to, or late, is not yet taken for a camera turned off
            last = max(reader.started_at, reader.received_at) if reader is not None else None
            picture = last is not None and time.monotonic() - last < NO_PICTURE_AFTER
        else:
            # Scale straight into the tile size with swscale; the tile keeps the input's
            # proportions closely enough at 16:9 and this avoids a second resize.
            region[:] = self._scaler.reformat(
                frame, format="rgb24", width=w, height=h, interpolation="FAST_BILINEAR"
            ).to_ndarray()
            blurrer = self._blurrers.get(member.member_id)
            if blurrer is not None:
                blurrer.apply(region)
            picture = True
        blend(canvas, self._labels[member.member_id], x0 + 4, y0 + 4)
        return picture

    def _waiting_slate(self) -> np.ndarray:
        """The waiting picture: 调解即将开始 over the category and community (rendered once)."""
        banner = self.scene.banner
        if self._waiting is None or self._waiting[0] != banner:
            picture = render_slate(self.width, self.height, WAITING_TEXT, subtitle=banner)
            self._waiting = (banner, self._yuv(picture))
        return self._waiting[1]

    @staticmethod
    def _yuv(rgb: np.ndarray) -> np.ndarray:
        return VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()

    def stop(self) -> None:
        super().stop()
        for reader in self._readers.values():
            reader.stop()
        self._readers.clear()

"""Recording a room to a fragmented MP4 (H.264 + AAC) with its SHA-256.

Not aiortc's ``MediaRecorder``: that writes one stream per track (no composite, no mix), assumes
30 fps and keeps the whole index for the end of the file. Here the room is composed (grid with
role labels, mixed audio), encoded once, and muxed with ``frag_keyframe+empty_moov``: every
keyframe starts a self-contained fragment, so a file cut short by a crash plays up to its last
complete fragment.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from privacy.sealed import SealedWriter

from .compose import ROLE_LABELS, AudioMixer, GridCompositor, Tile
from .hub import FrameHub

logger = logging.getLogger(__name__)

Sources = Callable[[], list[tuple[str, str, FrameHub | None, FrameHub | None]]]

# flush_packets: each fragment reaches the disk when it is complete, not when the buffer fills
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


class RoomRecorder:
    """Composes the room's members and writes them to ``path`` until ``stop()``."""

    def __init__(
        self,
        sources: Sources,
        path: str | Path,
        *,
        width: int = 640,
        height: int = 360,
        fps: int = 15,
        keyframe_seconds: float = 1.0,
    ) -> None:
        self.sources = sources
        self.path = Path(path)
        self.fps = fps
        self.keyframe_seconds = keyframe_seconds
        self.compositor = GridCompositor(width=width, height=height)
        self.mixer = AudioMixer()
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at: float | None = None
        self.video_frames = 0
        self.audio_frames = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # sealed as it is written: the plaintext never reaches the disk (privacy.sealed)
        self._sink = SealedWriter(self.path)
        container = av.open(self._sink, mode="w", format="mp4", options=MP4_OPTIONS)
        video = container.add_stream("libx264", rate=self.fps)
        video.width = self.compositor.width
        video.height = self.compositor.height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = fractions.Fraction(1, self.fps)
        video.codec_context.gop_size = max(1, int(self.fps * self.keyframe_seconds))
        video.codec_context.options = {"preset": "veryfast", "tune": "zerolatency"}
        audio = container.add_stream("aac", rate=48_000)
        audio.layout = "mono"
        self._container, self._video, self._audio = container, video, audio
        loop = asyncio.get_running_loop()
        # Both encoders are opened and the header written before the loops start. Otherwise the
        # first mux (on this thread) opens every encoder not yet open while the video loop's
        # first encode opens the same one on a worker thread: two avcodec_open2 on one context,
        # which crashed the process (SIGSEGV) as a recording started.
        await loop.run_in_executor(None, container.start_encoding)
        self._started_at = time.monotonic()
        self._tasks = [
            loop.create_task(self._video_loop(), name=f"record-video-{self.path.name}"),
            loop.create_task(self._audio_loop(), name=f"record-audio-{self.path.name}"),
        ]

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started_at if self._started_at else 0.0

    def _tiles(self) -> list[Tile]:
        return [
            Tile(label=ROLE_LABELS.get(role, role), frame=video.latest if video else None)
            for _, role, video, _ in self.sources()
        ]

    async def _off_loop(self, loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> Any:
        # Cancelling the awaiting task does not stop a thread that is already encoding: keep the
        # thread's future so that stop() waits for it before the encoder and file are closed.
        self._inflight = loop.run_in_executor(None, fn, *args)
        return await asyncio.shield(self._inflight)

    async def _video_loop(self) -> None:
        loop = asyncio.get_running_loop()
        index = 0
        while True:
            target = self._started_at + index / self.fps
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # after a stall, skip the ticks that passed rather than bunching frames
            index = max(index, int((time.monotonic() - self._started_at) * self.fps))
            frame = await self._off_loop(loop, self.compositor.compose, self._tiles())
            frame.pts = index
            frame.time_base = fractions.Fraction(1, self.fps)
            packets = await self._off_loop(loop, self._video.encode, frame)
            for packet in packets:
                self._container.mux(packet)
            self.video_frames += 1
            index += 1

    async def _audio_loop(self) -> None:
        period = 960 / 48_000
        count = 0
        while True:
            delay = self._started_at + count * period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.mixer.set_sources([audio for _, _, _, audio in self.sources() if audio])
            frame = self.mixer.mix()
            for packet in self._audio.encode(frame):
                self._container.mux(packet)
            self.audio_frames += 1
            count += 1

    async def stop(self) -> dict[str, Any]:
        """Finish the file and return its path, duration (s), size and SHA-256."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        inflight = getattr(self, "_inflight", None)
        if inflight is not None and not inflight.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(inflight), timeout=5)
        duration = self.elapsed
        if self._container is not None:
            try:
                for stream in (self._video, self._audio):
                    for packet in stream.encode(None):
                        self._container.mux(packet)
            finally:
                self._container.close()
                self._container = None
                self._sink.close()
        self.mixer.close()
        sha256 = self._sink.sha256
        self.path.with_name(self.path.name + ".sha256").write_text(f"{sha256}  {self.path.name}\n")
        return {
            "path": str(self.path),
            "duration": round(duration, 3),
            "size": self._sink.size,
            "sha256": sha256,
        }

"""A short, real HLS replay made from the synthetic publisher's picture and tone, for the demo
and the tests: the same writer as a live broadcast (``HlsWriter`` with ``keep=True``), fed for a
few seconds, so the playlist, its segments and its EXT-X-PROGRAM-DATE-TIME are the real thing.

The tracks run ``SPEED`` times faster than a camera, so writing takes a fraction of the
replay's length. The muxer dates each segment from when writing began plus the durations of the
segments before it, so the replay reads as if it had been filmed from that moment on. It holds
exactly the frames of ``seconds``, however busy the machine is."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming.broadcast.selectors import REPLAY_PLAYLIST, playlist_facts
from streaming.node.broadcast.hls import HlsWriter
from streaming.node.media.synthetic import AUDIO_PTIME, SyntheticVideoTrack, ToneAudioTrack

WIDTH, HEIGHT, FPS = 640, 360, 15
# how much faster than real time the synthetic tracks deliver (both alike, so they stay in step)
SPEED = 8.0


class _Frames(MediaStreamTrack):
    """``frames`` frames of ``track``, then the end of the track (``ended`` is set when the
    writer asks for one more, so every frame has been written)."""

    def __init__(self, track: MediaStreamTrack, frames: int) -> None:
        super().__init__()
        self.kind = track.kind
        self.track = track
        self.left = frames
        self.ended = asyncio.Event()

    async def recv(self):
        if self.left <= 0:
            self.ended.set()
            self.track.stop()
            raise MediaStreamError
        self.left -= 1
        return await self.track.recv()


async def _write(directory: Path, seconds: float) -> None:
    video = _Frames(
        SyntheticVideoTrack("blue", width=WIDTH, height=HEIGHT, fps=FPS, speed=SPEED),
        round(seconds * FPS),
    )
    audio = _Frames(ToneAudioTrack(220.0, amplitude=0.2, speed=SPEED), round(seconds / AUDIO_PTIME))
    writer = HlsWriter(
        directory, video=video, audio=audio, width=WIDTH, height=HEIGHT, fps=FPS, keep=True
    )
    await writer.start()
    await video.ended.wait()
    await audio.ended.wait()
    await writer.stop(keep=True)


def sample_replay_write(directory: Path, *, seconds: float = 8.0) -> datetime:
    """Write a replay of ``seconds`` into ``directory``; returns when its picture began (when
    writing began). Takes about ``seconds / SPEED`` of real time."""
    asyncio.run(_write(Path(directory), seconds))
    start, _duration, complete = playlist_facts((Path(directory) / REPLAY_PLAYLIST).read_text())
    if start is None or not complete:
        raise RuntimeError(f"the replay in {directory} is not complete")
    return start

"""A short, real HLS replay made from the synthetic publisher's picture and tone, for the demo
and the tests: the same writer as a live broadcast (``HlsWriter`` with ``keep=True``), fed for a
few seconds, so the playlist, its segments and its EXT-X-PROGRAM-DATE-TIME are the real thing."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from streaming.broadcast.selectors import REPLAY_PLAYLIST, playlist_facts
from streaming.node.broadcast.hls import HlsWriter
from streaming.node.media.synthetic import SyntheticVideoTrack, ToneAudioTrack

WIDTH, HEIGHT, FPS = 640, 360, 15


async def _write(directory: Path, seconds: float) -> None:
    video = SyntheticVideoTrack("blue", width=WIDTH, height=HEIGHT, fps=FPS)
    audio = ToneAudioTrack(220.0, amplitude=0.2)
    writer = HlsWriter(
        directory, video=video, audio=audio, width=WIDTH, height=HEIGHT, fps=FPS, keep=True
    )
    await writer.start()
    await asyncio.sleep(seconds)
    video.stop()
    audio.stop()
    await writer.stop(keep=True)


def sample_replay_write(directory: Path, *, seconds: float = 8.0) -> datetime:
    """Write a replay of about ``seconds`` into ``directory``; returns when its picture began.
    Takes ``seconds`` of real time: the synthetic tracks are paced like a camera."""
    asyncio.run(_write(Path(directory), seconds))
    start, _duration, complete = playlist_facts((Path(directory) / REPLAY_PLAYLIST).read_text())
    if start is None or not complete:
        raise RuntimeError(f"the replay in {directory} is not complete")
    return start

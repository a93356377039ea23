"""The broadcast written as HLS (H.264 + AAC in MPEG-TS segments) for nginx or a CDN to serve.

PyAV's ``hls`` muxer cuts a segment at the first keyframe after ``hls_time`` seconds, so the
H.264 encoder is given a keyframe exactly every ``segment_seconds`` of picture time (and never on
its own): every segment then starts with a keyframe and lasts the same time.

Encoding and muxing run on one dedicated thread: they are blocking, CPU-heavy calls that must
not stall the event loop, and the muxer must never be entered by two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler, VideoFrame
from av.video.frame import PictureType

logger = logging.getLogger(__name__)

PLAYLIST_NAME = "live.m3u8"
AUDIO_RATE = 48000


class HlsWriter:
    """Writes ``video`` (and ``audio``) tracks as an HLS playlist in ``directory``.

    ``keep=True`` lists every segment and marks the playlist as an event, which becomes a
    complete replay when the writer stops; ``keep=False`` keeps a short sliding window and deletes
    older segments, so nothing of a session without consent to recording stays on disk.
    """

    def __init__(
        self,
        directory: Path,
        *,
        video: MediaStreamTrack,
        audio: MediaStreamTrack | None,
        width: int,
        height: int,
        fps: int,
        segment_seconds: int = 2,
        keep: bool = False,
        video_bitrate: int = 800_000,
    ) -> None:
        self.directory = Path(directory)
        self.video = video
        self.audio = audio
        self.width = width
        self.height = height
        self.fps = fps
        self.segment_seconds = segment_seconds
        self.keep = keep
        self.video_bitrate = video_bitrate
        self.frames_written = 0
        self.audio_frames_written = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hls")
        self._container: av.container.OutputContainer | None = None
        self._tasks: list[asyncio.Task] = []
        self._first_video_pts: int | None = None
        self._last_video_pts = -1
        self._audio_samples = 0
        self._resampler = AudioResampler(
            format="fltp", layout="mono", rate=AUDIO_RATE, frame_size=1024
        )

    @property
    def playlist(self) -> Path:
        return self.directory / PLAYLIST_NAME

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open)
        self._tasks.append(asyncio.ensure_future(self._pump(self.video, self._write_video)))
        if self.audio is not None:
            self._tasks.append(asyncio.ensure_future(self._pump(self.audio, self._write_audio)))

    async def stop(self, *, keep: bool | None = None) -> Path | None:
        """Finish the playlist; returns the directory if it is kept as a replay."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)
        if keep is None:
            keep = self.keep
        if not (keep and self.keep):
            # No consent to recording (or it was withdrawn): nothing stays behind.
            await loop.run_in_executor(None, shutil.rmtree, self.directory, True)
            return None
        return self.directory

    async def _pump(self, track: MediaStreamTrack, write) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            try:
                await loop.run_in_executor(self._executor, write, frame)
            except av.FFmpegError:
                logger.exception("HLS writer dropped a %s frame", track.kind)

    # -- on the writer thread -----------------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        options = {
            "hls_time": str(self.segment_seconds),
            "hls_segment_filename": str(self.directory / "segment_%05d.ts"),
            "hls_flags": "independent_segments+program_date_time",
        }
        if self.keep:
            options.update(hls_list_size="0", hls_playlist_type="event")
        else:
            options.update(hls_list_size="6")
            options["hls_flags"] += "+delete_segments"
        container = av.open(str(self.playlist), "w", format="hls", options=options)
        video = container.add_stream("libx264", rate=self.fps)
        video.width = self.width
        video.height = self.height
        video.pix_fmt = "yuv420p"
        video.bit_rate = self.video_bitrate
        video.codec_context.time_base = fractions.Fraction(1, self.fps)
        # Keyframes come only from _write_video (see the module docstring).
        video.codec_context.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "main",
            "forced-idr": "1",
            "x264-params": f"keyint={self.fps * 60}:min-keyint={self.fps}:scenecut=0",
        }
        self._video_stream = video
        if self.audio is not None:
            audio = container.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "mono"
            audio.bit_rate = 96_000
            self._audio_stream = audio
        self._container = container

    def _write_video(self, frame: VideoFrame) -> None:
        if self._container is None:
            return
        index = round(frame.pts * frame.time_base * self.fps)
        if self._first_video_pts is None:
            self._first_video_pts = index
        index -= self._first_video_pts
        if index <= self._last_video_pts:
            return
        # A private copy: the same frame is being encoded for WebRTC on another thread, and the
        # keyframe flag set here must not leak into that encoder (nor its flag into this one).
        copy = VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
        gop = self.fps * self.segment_seconds
        previous_gop = self._last_video_pts // gop if self._last_video_pts >= 0 else -1
        copy.pict_type = PictureType.I if index // gop != previous_gop else PictureType.NONE
        copy.pts = index
        copy.time_base = fractions.Fraction(1, self.fps)
        self._last_video_pts = index
        for packet in self._video_stream.encode(copy):
            self._container.mux(packet)
        self.frames_written += 1

    def _write_audio(self, frame: AudioFrame) -> None:
        if self._container is None:
            return
        for chunk in self._resampler.resample(frame):
            chunk.pts = self._audio_samples
            chunk.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._audio_samples += chunk.samples
            for packet in self._audio_stream.encode(chunk):
                self._container.mux(packet)
        self.audio_frames_written += 1

    def _close(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            for packet in self._video_stream.encode(None):
                container.mux(packet)
            if self.audio is not None:
                for packet in self._audio_stream.encode(None):
                    container.mux(packet)
        except av.FFmpegError:
            logger.exception("HLS writer could not flush its encoders")
        finally:
            container.close()

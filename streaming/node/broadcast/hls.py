"""The broadcast written as HLS (H.264 + AAC in MPEG-TS segments) for nginx or a CDN to serve.

The ladder: one rendition per layer of the broadcast (``ladder``), all in one directory, and a
master playlist (``index.m3u8``) listing them, so a player picks the layer its bandwidth allows:

    index.m3u8                       master: one EXT-X-STREAM-INF per rendition, best first
    live.m3u8   segment_00000.ts     the top layer (the name a replay is read by)
    180p.m3u8   180p_segment_00000.ts
    audio.m3u8  audio_segment_00000.ts   audio only (hls.js skips audio-only variants when
                                         there is video; Safari's own player uses it)

Each rendition's picture is scaled and encoded once (H.264) and the sound is encoded once (AAC)
and muxed into every rendition. Segments of all renditions start at the same picture index, so
a player switching rendition lands on the same moment.

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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler, VideoFrame
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from streaming.node.broadcast.ladder import Layer, single_layer

logger = logging.getLogger(__name__)

PLAYLIST_NAME = "live.m3u8"
MASTER_PLAYLIST_NAME = "index.m3u8"
AUDIO_RATE = 48000
AUDIO_BITRATE = 96_000
# H.264 Main profile, level 3.0 (up to 720×576); AAC-LC
VIDEO_CODEC_TAG = "avc1.4d401e"
AUDIO_CODEC_TAG = "mp4a.40.2"


@dataclass
class _Rendition:
    layer: Layer
    playlist: str
    segments: str
    container: av.container.OutputContainer | None = None
    video: av.video.stream.VideoStream | None = None
    audio: av.audio.stream.AudioStream | None = None
    # its own swscale context: the frame is shared with the WebRTC encoders' threads
    # (frame.reformat() would scale through the frame's one context, and two threads at once
    # deadlock)
    scaler: VideoReformatter = field(default_factory=VideoReformatter)


def _renditions(ladder: Sequence[Layer]) -> list[_Rendition]:
    renditions = []
    for index, layer in enumerate(ladder):
        if index == 0:
            renditions.append(_Rendition(layer, PLAYLIST_NAME, "segment_%05d.ts"))
        else:
            renditions.append(
                _Rendition(layer, f"{layer.name}.m3u8", f"{layer.name}_segment_%05d.ts")
            )
    return renditions


def master_playlist(ladder: Sequence[Layer], fps: int, *, audio: bool = True) -> str:
    """The master playlist of ``ladder`` (rendition names as ``HlsWriter`` writes them)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rendition in _renditions(ladder):
        layer = rendition.layer
        if not layer.video and not audio:
            continue
        bandwidth = layer.bitrate + (AUDIO_BITRATE if audio else 0)
        # peak: encoders overshoot, and MPEG-TS adds about a tenth
        attributes = [
            f"BANDWIDTH={int(bandwidth * 1.3)}",
            f"AVERAGE-BANDWIDTH={int(bandwidth * 1.1)}",
        ]
        codecs = [VIDEO_CODEC_TAG] if layer.video else []
        if audio:
            codecs.append(AUDIO_CODEC_TAG)
        if layer.video:
            attributes += [f"RESOLUTION={layer.width}x{layer.height}", f"FRAME-RATE={fps:.3f}"]
        attributes.append(f'CODECS="{",".join(codecs)}"')
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attributes), rendition.playlist]
    return "\n".join(lines) + "\n"


class HlsWriter:
    """Writes ``video`` (and ``audio``) tracks as HLS in ``directory``: one rendition per layer
    of ``ladder`` (default: one rendition, ``width`` × ``height`` at ``video_bitrate``) and the
    master playlist listing them.

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
        fps: int,
        width: int | None = None,
        height: int | None = None,
        ladder: Sequence[Layer] | None = None,
        segment_seconds: int = 2,
        keep: bool = False,
        video_bitrate: int = 800_000,
    ) -> None:
        self.directory = Path(directory)
        self.video = video
        self.audio = audio
        if ladder is None:
            if width is None or height is None:
                raise ValueError("HlsWriter needs a ladder or a width and height")
            ladder = single_layer(width, height, video_bitrate)
        self.ladder = tuple(ladder) if audio is not None else tuple(x for x in ladder if x.video)
        self.width, self.height = self.ladder[0].width, self.ladder[0].height
        self.fps = fps
        self.segment_seconds = segment_seconds
        self.keep = keep
        self.video_bitrate = video_bitrate
        self.frames_written = 0
        self.audio_frames_written = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hls")
        self._renditions = _renditions(self.ladder)
        self._open_renditions: list[_Rendition] = []
        self._audio_encoder: av.AudioCodecContext | None = None
        self._master_written = False
        self._tasks: list[asyncio.Task] = []
        self._first_video_pts: int | None = None
        self._last_video_pts = -1
        self._audio_samples = 0
        self._resampler = AudioResampler(
            format="fltp", layout="mono", rate=AUDIO_RATE, frame_size=1024
        )

    @property
    def playlist(self) -> Path:
        """The top rendition's playlist (a replay is read from it)."""
        return self.directory / PLAYLIST_NAME

    @property
    def master(self) -> Path:
        return self.directory / MASTER_PLAYLIST_NAME

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
        for rendition in self._renditions:
            self._open_rendition(rendition)
        if self.audio is not None:
            encoder = av.CodecContext.create("aac", "w")
            encoder.sample_rate = AUDIO_RATE
            encoder.layout = "mono"
            encoder.format = "fltp"
            encoder.bit_rate = AUDIO_BITRATE
            encoder.time_base = fractions.Fraction(1, AUDIO_RATE)
            encoder.open()
            self._audio_encoder = encoder
        self._open_renditions = list(self._renditions)

    def _open_rendition(self, rendition: _Rendition) -> None:
        options = {
            "hls_time": str(self.segment_seconds),
            "hls_segment_filename": str(self.directory / rendition.segments),
            "hls_flags": "independent_segments+program_date_time",
        }
        if self.keep:
            options.update(hls_list_size="0", hls_playlist_type="event")
        else:
            options.update(hls_list_size="6")
            options["hls_flags"] += "+delete_segments"
        container = av.open(
            str(self.directory / rendition.playlist), "w", format="hls", options=options
        )
        layer = rendition.layer
        if layer.video:
            video = container.add_stream("libx264", rate=self.fps)
            video.width = layer.width
            video.height = layer.height
            video.pix_fmt = "yuv420p"
            video.bit_rate = layer.bitrate
            video.codec_context.time_base = fractions.Fraction(1, self.fps)
            # Keyframes come only from _write_video (see the module docstring).
            video.codec_context.options = {
                "preset": "veryfast",
                "tune": "zerolatency",
                "profile": "main",
                "forced-idr": "1",
                "x264-params": f"keyint={self.fps * 60}:min-keyint={self.fps}:scenecut=0",
            }
            rendition.video = video
        if self.audio is not None:
            # Never encodes: it carries the packets of the one AAC encoder (_write_audio).
            audio = container.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "mono"
            audio.bit_rate = AUDIO_BITRATE
            rendition.audio = audio
        rendition.container = container

    def _write_master(self) -> None:
        """Once every rendition has its first segment listed: a player that finds the master
        playlist finds every playlist it names."""
        if self._master_written:
            return
        if not all((self.directory / r.playlist).exists() for r in self._renditions):
            return
        temporary = self.master.with_suffix(".tmp")
        temporary.write_text(master_playlist(self.ladder, self.fps, audio=self.audio is not None))
        temporary.replace(self.master)
        self._master_written = True

    def _write_video(self, frame: VideoFrame) -> None:
        if not self._open_renditions:
            return
        index = round(frame.pts * frame.time_base * self.fps)
        if self._first_video_pts is None:
            self._first_video_pts = index
        index -= self._first_video_pts
        if index <= self._last_video_pts:
            return
        gop = self.fps * self.segment_seconds
        previous_gop = self._last_video_pts // gop if self._last_video_pts >= 0 else -1
        picture_type = PictureType.I if index // gop != previous_gop else PictureType.NONE
        self._last_video_pts = index
        for rendition in self._open_renditions:
            layer = rendition.layer
            if not layer.video:
                continue
            # A private copy: the same frame is being encoded for WebRTC on another thread, and
            # the keyframe flag set here must not leak into that encoder (nor its flag into this).
            if (frame.width, frame.height) == (layer.width, layer.height):
                copy = VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
            else:
                copy = rendition.scaler.reformat(
                    frame, width=layer.width, height=layer.height, format="yuv420p"
                )
            copy.pict_type = picture_type
            copy.pts = index
            copy.time_base = fractions.Fraction(1, self.fps)
            for packet in rendition.video.encode(copy):
                rendition.container.mux(packet)
        self.frames_written += 1
        if not self._master_written and picture_type == PictureType.I and index:
            self._write_master()

    def _write_audio(self, frame: AudioFrame) -> None:
        if not self._open_renditions or self._audio_encoder is None:
            return
        for chunk in self._resampler.resample(frame):
            chunk.pts = self._audio_samples
            chunk.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._audio_samples += chunk.samples
            self._mux_audio(self._audio_encoder.encode(chunk))
        self.audio_frames_written += 1

    def _mux_audio(self, packets: list[av.Packet]) -> None:
        """Encoded once, muxed into every rendition."""
        for packet in packets:
            data = bytes(packet)
            for rendition in self._open_renditions:
                copy = av.Packet(data)
                copy.pts, copy.dts = packet.pts, packet.dts
                copy.time_base = packet.time_base
                copy.duration = packet.duration
                copy.stream = rendition.audio
                rendition.container.mux(copy)

    def _close(self) -> None:
        renditions, self._open_renditions = self._open_renditions, []
        if not renditions:
            return
        try:
            if self._audio_encoder is not None:
                self._open_renditions = renditions
                self._mux_audio(self._audio_encoder.encode(None))
                self._open_renditions = []
        except av.FFmpegError:
            logger.exception("HLS writer could not flush its audio encoder")
        for rendition in renditions:
            try:
                if rendition.video is not None:
                    for packet in rendition.video.encode(None):
                        rendition.container.mux(packet)
            except av.FFmpegError:
                logger.exception("HLS writer could not flush the %s encoder", rendition.layer.name)
            finally:
                rendition.container.close()
        if self.keep and not self._master_written:
            # a replay shorter than a segment still gets its master playlist
            self._write_master()

"""Synthetic media with content that survives encoding: a colour, a frame counter, a tone.

Used by the test peers and the benchmarks to check that a member receives the *other* members'
media (not just a connected state), and by the node for its slates. The counter is drawn as 16
large black/white blocks along the bottom of the picture so lossy VP8 at a low bitrate still
reads back exactly.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.video.frame import PictureType, VideoFrame

from streaming.node.internals import aiortc_private

COUNTER_BITS = 16
VIDEO_CLOCK_RATE = 90_000
AUDIO_SAMPLE_RATE = 48_000
AUDIO_PTIME = 0.020

# member colours as (Y, U, V), far apart from each other
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (76, 85, 255),
    "green": (150, 44, 21),
    "blue": (29, 255, 107),
    "yellow": (226, 1, 149),
    "magenta": (105, 212, 235),
    "cyan": (179, 171, 1),
    "grey": (128, 128, 128),
}


def _counter_geometry(width: int, height: int) -> tuple[int, int, int]:
    block_w = width // COUNTER_BITS
    strip_top = height * 3 // 4
    return block_w, strip_top, height


def colour_frame_planes(
    width: int, height: int, colour: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, u, v = colour
    return (
        np.full((height, width), y, np.uint8),
        np.full((height // 2, width // 2), u, np.uint8),
        np.full((height // 2, width // 2), v, np.uint8),
    )


def planes_to_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> VideoFrame:
    height, width = y.shape
    stacked = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(
        height * 3 // 2, width
    )
    return VideoFrame.from_ndarray(stacked, format="yuv420p")


def draw_counter(y: np.ndarray, u: np.ndarray, v: np.ndarray, counter: int) -> None:
    height, width = y.shape
    block_w, strip_top, _ = _counter_geometry(width, height)
    u[strip_top // 2 :, :] = 128
    v[strip_top // 2 :, :] = 128
    for bit in range(COUNTER_BITS):
        on = (counter >> (COUNTER_BITS - 1 - bit)) & 1
        y[strip_top:, bit * block_w : (bit + 1) * block_w] = 235 if on else 16


def _planes(frame: VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    data = frame.to_ndarray()
    h, w = frame.height, frame.width
    y = data[:h]
    chroma = data[h:].reshape(-1)
    quarter = (h // 2) * (w // 2)
    return y, chroma[:quarter].reshape(h // 2, w // 2), chroma[quarter:].reshape(h // 2, w // 2)


def read_counter(frame: VideoFrame) -> int:
    """The frame counter drawn by ``SyntheticVideoTrack`` (after any lossy round trip)."""
    y, _, _ = _planes(frame)
    height, width = y.shape
    block_w, strip_top, _ = _counter_geometry(width, height)
    row = (strip_top + height) // 2
    value = 0
    for bit in range(COUNTER_BITS):
        sample = y[
            row - 2 : row + 2, bit * block_w + block_w // 4 : (bit + 1) * block_w - block_w // 4
        ]
        value = (value << 1) | int(sample.mean() > 128)
    return value


def mean_colour(frame: VideoFrame) -> tuple[int, int, int]:
    """Mean (Y, U, V) of the colour area (above the counter strip)."""
    y, u, v = _planes(frame)
    height, width = y.shape
    top = height * 3 // 4
    return (
        int(y[top // 8 : top * 7 // 8, width // 8 : width * 7 // 8].mean()),
        int(u[top // 16 : top * 7 // 16, width // 16 : width * 7 // 16].mean()),
        int(v[top // 16 : top * 7 // 16, width // 16 : width * 7 // 16].mean()),
    )


def closest_colour(frame: VideoFrame) -> str:
    """Name of the palette colour nearest to the frame's colour area."""
    got = mean_colour(frame)
    return min(
        PALETTE, key=lambda name: sum((a - b) ** 2 for a, b in zip(PALETTE[name], got, strict=True))
    )


class SyntheticVideoTrack(MediaStreamTrack):
    """A paced video source: a colour with a frame counter, ``fps`` frames per second of media
    time, delivered at ``speed`` times real time (above 1 for a recording made ahead of time)."""

    kind = "video"

    def __init__(
        self,
        colour: str = "red",
        *,
        width: int = 320,
        height: int = 180,
        fps: float = 15,
        speed: float = 1.0,
    ) -> None:
        super().__init__()
        self.colour = colour
        self.width = width
        self.height = height
        self.fps = fps
        self.speed = speed
        self.sent = 0
        self._base = colour_frame_planes(width, height, PALETTE[colour])
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self.sent / (self.fps * self.speed) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        y, u, v = (plane.copy() for plane in self._base)
        draw_counter(y, u, v, self.sent % (1 << COUNTER_BITS))
        frame = planes_to_frame(y, u, v)
        frame.pts = int(self.sent * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self.sent += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A paced 48 kHz mono sine tone in 20 ms frames; ``frequency`` 0 gives silence. Delivered
    at ``speed`` times real time, as ``SyntheticVideoTrack``."""

    kind = "audio"

    def __init__(
        self, frequency: float = 440.0, *, amplitude: float = 0.3, speed: float = 1.0
    ) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self.speed = speed
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = int(AUDIO_PTIME * AUDIO_SAMPLE_RATE)
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self.sent * AUDIO_PTIME / self.speed - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (np.arange(samples) + self.sent * samples) / AUDIO_SAMPLE_RATE
        wave = self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)
        frame = AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = self.sent * samples
        frame.time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
        self.sent += 1
        return frame


def audio_samples(frame: AudioFrame) -> np.ndarray:
    """Mono float samples in [-1, 1] of any s16/fltp frame."""
    data = frame.to_ndarray().astype(np.float64)
    if frame.format.name.startswith("s16"):
        data = data / 32768.0
    if frame.format.is_planar:
        return data.mean(axis=0)
    channels = len(frame.layout.channels)
    return data.reshape(-1, channels).mean(axis=1)


def audio_rms(frame: AudioFrame) -> float:
    samples = audio_samples(frame)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def dominant_frequency(samples: np.ndarray, sample_rate: int = AUDIO_SAMPLE_RATE) -> float:
    """Frequency (Hz) of the strongest component of ``samples``."""
    if samples.size < 2:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * sample_rate / samples.size)


async def encode_video_loop(
    colour: str,
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 15,
    frames: int = 150,
    keyframe_interval: int = 15,
) -> tuple[list[bytes], list[bytes]]:
    """VP8 frames of ``SyntheticVideoTrack``: (as streamed, each also encoded as a keyframe).

    The second list lets a replaying publisher answer a keyframe request at once, as a live
    encoder does.
    """
    source = SyntheticVideoTrack(colour, width=width, height=height, fps=1e9)
    pictures = [await source.recv() for _ in range(frames)]

    def encode(intra_only: bool) -> list[bytes]:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = fractions.Fraction(1, int(fps))
        codec.bit_rate = max(150_000, int(width * height * 2.2))
        codec.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0"}
        payloads = []
        for index, picture in enumerate(pictures):
            picture.pts, picture.time_base = index, codec.time_base
            key = intra_only or index % keyframe_interval == 0
            picture.pict_type = PictureType.I if key else PictureType.NONE
            payloads.append(b"".join(bytes(p) for p in codec.encode(picture)))
        return payloads

    return encode(False), encode(True)


class EncodedVideoLoopTrack(MediaStreamTrack):
    """Replays pre-encoded VP8 frames at ``fps`` as ``av.Packet`` objects, in a loop.

    Like a live encoder, it answers a keyframe request (``request_keyframe``, wired to its
    sender's PLI/FIR handling) with a keyframe of the next frame.
    """

    kind = "video"

    def __init__(self, frames: list[bytes], keyframes: list[bytes], *, fps: float = 15) -> None:
        super().__init__()
        self.frames = frames
        self.keyframes = keyframes
        self.fps = fps
        self.sent = 0
        self.keyframe_requests = 0
        self.sent_keyframes: list[int] = []
        self._keyframe_wanted = False
        self._start: float | None = None

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._keyframe_wanted = True

    def wire(self, sender: Any) -> None:
        """Route ``sender``'s received PLI/FIR here (aiortc would flag an unused encoder)."""
        aiortc_private.route_keyframe_requests(sender, self.request_keyframe)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self.sent / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        index = self.sent % len(self.frames)
        payload = self.frames[index]
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            payload = self.keyframes[index]
        if not payload[0] & 0x01:
            self.sent_keyframes.append(self.sent)
        packet = av.Packet(payload)
        packet.pts = int(self.sent * VIDEO_CLOCK_RATE / self.fps)
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self.sent += 1
        return packet

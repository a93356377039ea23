"""Synthetic members for tests, benchmarks and the demo: a coloured picture that carries a frame
counter and a millisecond clock as black and white cells, and a steady tone.

The cells are large so they survive scaling into a grid tile and a VP8 or H.264 round trip; a
receiver reads them back with :func:`read_stamp` to check content and measure delay.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

STAMP_BITS = 16
STAMP_ROWS = 2  # row 0: frame counter, row 1: wall clock in ms, both modulo 2**16
STAMP_TOP = 0.72  # the cells fill the bottom of the picture from this fraction of its height
STAMP_MODULO = 1 << STAMP_BITS

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_RATE = 48000


def clock_ms() -> int:
    """Milliseconds of the wall clock modulo 2**16, comparable across processes on one host."""
    return int(time.time() * 1000) % STAMP_MODULO


def _cells(height: int, width: int):
    row_h = (height - int(height * STAMP_TOP)) / STAMP_ROWS
    cell_w = width / STAMP_BITS
    for row in range(STAMP_ROWS):
        for bit in range(STAMP_BITS):
            y0 = int(height * STAMP_TOP + row * row_h)
            x0 = int(bit * cell_w)
            yield row, bit, (y0, int(y0 + row_h), x0, int(x0 + cell_w))


def draw_stamp(rgb: np.ndarray, counter: int, ms: int) -> None:
    values = (counter % STAMP_MODULO, ms % STAMP_MODULO)
    for row, bit, (y0, y1, x0, x1) in _cells(*rgb.shape[:2]):
        on = (values[row] >> (STAMP_BITS - 1 - bit)) & 1
        rgb[y0:y1, x0:x1] = 255 if on else 0


def read_stamp(rgb: np.ndarray) -> tuple[int, int]:
    """(counter, ms) read back from a picture (or a tile cut out of one) made by draw_stamp."""
    values = [0] * STAMP_ROWS
    for row, _bit, (y0, y1, x0, x1) in _cells(*rgb.shape[:2]):
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        dy, dx = max(1, (y1 - y0) // 4), max(1, (x1 - x0) // 4)
        level = rgb[cy - dy : cy + dy, cx - dx : cx + dx].mean()
        values[row] = (values[row] << 1) | int(level > 127)
    return values[0], values[1]


def colour_area(rgb: np.ndarray) -> np.ndarray:
    """The part of a synthetic picture that shows only the member's colour (under the label)."""
    height, width = rgb.shape[:2]
    return rgb[int(height * 0.4) : int(height * 0.65), int(width * 0.3) : int(width * 0.7)]


class SyntheticVideoTrack(MediaStreamTrack):
    """Frames in yuv420p, like a decoded camera track; the stamp is written into the planes."""

    kind = "video"

    def __init__(
        self,
        colour: tuple[int, int, int],
        *,
        width: int = 320,
        height: int = 180,
        fps: int = 15,
        image: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.fps = fps
        self.width = width
        self.height = height
        if image is not None:
            base = VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            rgb = base.to_ndarray(format="rgb24", width=width, height=height)
        else:
            rgb = np.empty((height, width, 3), dtype=np.uint8)
            rgb[:] = colour
        # Black and white cells drawn once in RGB show where the stamp goes in each plane.
        yuv = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        self._base = yuv.to_ndarray()
        self._cells = [cell for _, _, cell in _cells(height, width)]
        self.counter = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self.counter += 1
            wait = self._start + self.counter / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        planes = self._base.copy()
        self._stamp(planes, self.counter % STAMP_MODULO, clock_ms())
        frame = VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = int(self.counter * 90000 / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def _stamp(self, planes: np.ndarray, counter: int, ms: int) -> None:
        height, width = self.height, self.width
        u_top, v_top = height, height + height // 4
        values = (counter, ms)
        for index, (y0, y1, x0, x1) in enumerate(self._cells):
            row, bit = divmod(index, STAMP_BITS)
            on = (values[row] >> (STAMP_BITS - 1 - bit)) & 1
            planes[y0:y1, x0:x1] = 235 if on else 16
            # Chroma planes are quarter size, stored as rows of half width one after another:
            # a neutral grey there keeps the cells black and white.
            for top in (u_top, v_top):
                chroma = planes[top : top + height // 4].reshape(height // 2, width // 2)
                chroma[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 128


class ToneAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, frequency: float = 440.0, *, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._samples = 960
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._index += 1
            wait = self._start + self._index * self._samples / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        first = self._index * self._samples
        t = (np.arange(first, first + self._samples) / AUDIO_RATE).astype(np.float64)
        wave = self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)
        frame = AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = first
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame

"""Composing a room: a grid of the members' latest pictures with role labels, and mixed audio."""

from __future__ import annotations

import fractions
import functools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw

from .hub import FrameHub, FrameTap
from .slate import cjk_font

# Role labels, never names (DESIGN: viewers and recordings show roles).
ROLE_LABELS = {
    "expert": "调解员",
    "applicant": "申请人",
    "respondent": "被申请人",
    "coordinator": "协调员",
}
BACKGROUND = (16, 128, 128)  # black in YUV
MIX_SAMPLE_RATE = 48_000
MIX_FRAME_SAMPLES = 960
# Per-source audio beyond this much is dropped so the mix stays live.
MIX_MAX_BACKLOG = MIX_SAMPLE_RATE // 4


@dataclass(frozen=True)
class Tile:
    label: str
    frame: VideoFrame | None


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows) for ``count`` tiles: 1 -> 1x1, 2 -> 2x1, 3-4 -> 2x2, 5-6 -> 3x2 ..."""
    if count <= 1:
        return 1, 1
    columns = math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


@functools.cache
def _label_mask(text: str, height: int) -> np.ndarray:
    """A boolean mask of ``text`` rendered at ``height`` pixels, padded."""
    font = cjk_font(height)
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    image = Image.new("L", (box[2] - box[0] + height // 2, height + height // 2), 0)
    ImageDraw.Draw(image).text(
        (height // 4 - box[0], height // 4 - box[1]), text, fill=255, font=font
    )
    return np.asarray(image) > 127


class GridCompositor:
    """Builds one yuv420p picture from tiles; the layout follows the number of tiles."""

    def __init__(self, *, width: int = 640, height: int = 360) -> None:
        self.width = width - width % 2
        self.height = height - height % 2
        # Tiles are decoded frames shared with other consumers (the broadcast compositor scales
        # them on the event loop while this runs in a worker thread): frame.reformat() would
        # drive the frame's single swscale context from two threads at once, which deadlocks.
        self._scaler = VideoReformatter()

    def compose(self, tiles: Sequence[Tile]) -> VideoFrame:
        y = np.full((self.height, self.width), BACKGROUND[0], np.uint8)
        u = np.full((self.height // 2, self.width // 2), BACKGROUND[1], np.uint8)
        v = np.full((self.height // 2, self.width // 2), BACKGROUND[2], np.uint8)
        columns, rows = grid_shape(len(tiles))
        cell_w = (self.width // columns) & ~1
        cell_h = (self.height // rows) & ~1
        for index, tile in enumerate(tiles):
            x0 = (index % columns) * cell_w
            y0 = (index // columns) * cell_h
            if tile.frame is not None:
                self._place(tile.frame, y, u, v, x0, y0, cell_w, cell_h)
            self._label(tile.label, y, u, v, x0, y0, cell_w, cell_h)
        planes = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
        return VideoFrame.from_ndarray(
            planes.reshape(self.height * 3 // 2, self.width), format="yuv420p"
        )

    def _place(self, frame, y, u, v, x0, y0, cell_w, cell_h) -> None:  # noqa: ANN001
        scale = min(cell_w / frame.width, cell_h / frame.height)
        tw = max(2, int(frame.width * scale) & ~1)
        th = max(2, int(frame.height * scale) & ~1)
        scaled = self._scaler.reformat(frame, width=tw, height=th, format="yuv420p").to_ndarray()
        ox = x0 + ((cell_w - tw) // 2 & ~1)
        oy = y0 + ((cell_h - th) // 2 & ~1)
        chroma = scaled[th:].reshape(-1)
        quarter = (th // 2) * (tw // 2)
        y[oy : oy + th, ox : ox + tw] = scaled[:th]
        u[oy // 2 : oy // 2 + th // 2, ox // 2 : ox // 2 + tw // 2] = chroma[:quarter].reshape(
            th // 2, tw // 2
        )
        v[oy // 2 : oy // 2 + th // 2, ox // 2 : ox // 2 + tw // 2] = chroma[quarter:].reshape(
            th // 2, tw // 2
        )

    @staticmethod
    def _label(text, y, u, v, x0, y0, cell_w, cell_h) -> None:  # noqa: ANN001
        if not text:
            return
        mask = _label_mask(text, max(10, cell_h // 12))
        mh, mw = mask.shape
        mh, mw = min(mh, cell_h) & ~1, min(mw, cell_w) & ~1
        top = y0 + cell_h - mh
        region = y[top : top + mh, x0 : x0 + mw]
        region[:] = np.where(mask[:mh, :mw], 235, 16)
        u[top // 2 : (top + mh) // 2, x0 // 2 : (x0 + mw) // 2] = 128
        v[top // 2 : (top + mh) // 2, x0 // 2 : (x0 + mw) // 2] = 128


class AudioMixer:
    """Mixes the audio of several hubs into 20 ms mono frames at 48 kHz."""

    def __init__(self) -> None:
        self._inputs: dict[FrameHub, tuple[FrameTap, av.AudioResampler, deque[np.ndarray]]] = {}
        self.samples_out = 0

    def set_sources(self, hubs: Sequence[FrameHub]) -> None:
        wanted = set(hubs)
        for hub in list(self._inputs):
            if hub not in wanted:
                self._inputs.pop(hub)[0].stop()
        for hub in hubs:
            if hub not in self._inputs:
                resampler = av.AudioResampler(format="flt", layout="mono", rate=MIX_SAMPLE_RATE)
                self._inputs[hub] = (hub.tap(queue_size=25), resampler, deque())

    def mix(self) -> AudioFrame:
        total = np.zeros(MIX_FRAME_SAMPLES, np.float32)
        for tap, resampler, pending in self._inputs.values():
            while (frame := tap.pop_nowait()) is not None:
                for chunk in resampler.resample(frame):
                    pending.append(chunk.to_ndarray().reshape(-1))
            buffered = sum(len(p) for p in pending)
            while buffered - (len(pending[0]) if pending else 0) > MIX_MAX_BACKLOG:
                buffered -= len(pending.popleft())
            taken = 0
            while pending and taken < MIX_FRAME_SAMPLES:
                head = pending[0]
                n = min(len(head), MIX_FRAME_SAMPLES - taken)
                total[taken : taken + n] += head[:n]
                taken += n
                if n == len(head):
                    pending.popleft()
                else:
                    pending[0] = head[n:]
        mixed = np.clip(total, -1.0, 1.0)
        frame = AudioFrame.from_ndarray(
            (mixed * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = MIX_SAMPLE_RATE
        frame.pts = self.samples_out
        frame.time_base = fractions.Fraction(1, MIX_SAMPLE_RATE)
        self.samples_out += MIX_FRAME_SAMPLES
        return frame

    def close(self) -> None:
        self.set_sources([])

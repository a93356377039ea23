"""Still pictures sent instead of a member: the hold slate of a caucus (背靠背)."""

from __future__ import annotations

import asyncio
import fractions
import functools
import time
from pathlib import Path

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.frame import VideoFrame
from PIL import Image, ImageDraw, ImageFont

CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
)
# The synthetic palette's "grey": a member on hold is recognisable on the wire in tests.
SLATE_RGB = (128, 128, 128)
HOLD_TEXT = "调解员正在与一方单独沟通，请稍候"


@functools.cache
def cjk_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in CJK_FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default()


def render_slate(text: str, *, width: int, height: int) -> VideoFrame:
    image = Image.new("RGB", (width, height), SLATE_RGB)
    draw = ImageDraw.Draw(image)
    font = cjk_font(max(12, height // 16))
    box = draw.textbbox((0, 0), text, font=font)
    x = (width - (box[2] - box[0])) // 2
    y = (height - (box[3] - box[1])) // 3
    draw.text((x, y), text, fill=(235, 235, 235), font=font)
    return VideoFrame.from_image(image).reformat(format="yuv420p")


class SlateTrack(MediaStreamTrack):
    """The same still picture, ``fps`` times per second."""

    kind = "video"

    def __init__(
        self, text: str = HOLD_TEXT, *, width: int = 640, height: int = 360, fps: float = 5
    ) -> None:
        super().__init__()
        self.fps = fps
        self._frame = render_slate(text, width=width, height=height)
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._count / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = self._frame
        frame.pts = int(self._count * 90_000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90_000)
        self._count += 1
        return frame

"""Pre-rendered text and pictures drawn over the broadcast.

Text goes through Pillow with a CJK font because OpenCV's Hershey fonts have no Chinese glyphs.
Everything here is rendered once (labels, banner, slate) and blended per frame as plain numpy
arrays: drawing text with Pillow on every frame would cost more than the composition itself.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Debian's fonts-noto-cjk first; the environment variable lets a deployment point elsewhere.
_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
# Index of the Simplified Chinese face inside the Noto CJK collection.
_NOTO_SC_INDEX = 2


def font_path() -> str | None:
    configured = os.environ.get("BROADCAST_FONT")
    if configured and Path(configured).exists():
        return configured
    for candidate in _FONT_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = font_path()
    if path is None:
        # Renders Latin only, but a missing font must not take the broadcast down.
        return ImageFont.load_default(size=size)
    index = _NOTO_SC_INDEX if path.endswith(".ttc") and "Noto" in path else 0
    return ImageFont.truetype(path, size=size, index=index)


def render_text(
    text: str,
    *,
    size: int,
    color: tuple[int, int, int] = (255, 255, 255),
    background: tuple[int, int, int, int] = (0, 0, 0, 160),
    padding: int = 4,
) -> np.ndarray:
    """Return an RGBA array holding ``text`` on a rounded background."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    width = max(1, right - left) + 2 * padding
    height = max(1, bottom - top) + 2 * padding
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=padding, fill=background)
    draw.text((padding - left, padding - top), text, font=font, fill=(*color, 255))
    return np.asarray(image)


def blend(canvas: np.ndarray, overlay: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend an RGBA ``overlay`` onto an RGB ``canvas`` in place, clipped to the canvas."""
    height, width = overlay.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, canvas.shape[1]), min(y + height, canvas.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    part = overlay[y0 - y : y1 - y, x0 - x : x1 - x]
    alpha = part[:, :, 3:4].astype(np.uint16)
    region = canvas[y0:y1, x0:x1]
    region[:] = (
        (part[:, :, :3].astype(np.uint16) * alpha + region.astype(np.uint16) * (255 - alpha)) // 255
    ).astype(np.uint8)


def render_slate(width: int, height: int, text: str, *, subtitle: str = "") -> np.ndarray:
    """The picture viewers see instead of the room (RGB)."""
    image = Image.new("RGB", (width, height), (28, 36, 52))
    draw = ImageDraw.Draw(image)
    title = _font(max(12, height // 9))
    box = draw.textbbox((0, 0), text, font=title)
    tw, th = box[2] - box[0], box[3] - box[1]
    draw.text(
        ((width - tw) // 2 - box[0], (height - th) // 2 - box[1]), text, font=title, fill="white"
    )
    if subtitle:
        small = _font(max(10, height // 22))
        sbox = draw.textbbox((0, 0), subtitle, font=small)
        sw = sbox[2] - sbox[0]
        draw.text(
            ((width - sw) // 2 - sbox[0], (height + th) // 2 + height // 20),
            subtitle,
            font=small,
            fill=(190, 198, 210),
        )
    return np.asarray(image).copy()

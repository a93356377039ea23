"""The livestream's ladder: the composite at a few sizes and bitrates, each encoded once.

    composite ─► tee ─┬─► EncodedFanout 360p VP8 (600 kbit/s) ─► RtpFanout ─► viewers on 360p
                      ├─► EncodedFanout 180p VP8 (250 kbit/s) ─► RtpFanout ─► viewers on 180p
                      └─► HLS: H.264 per layer + one AAC ─► master playlist
    mixer ─► tee ─► EncodedFanout Opus ─► RtpFanout ─► every viewer (audio only: nothing else)

A layer is an encoder's output: one ``EncodedFanout`` (whose packets anyone may subscribe to, a
relay to another node as well as the local ``RtpFanout``) that encodes only while someone takes
its packets. However many viewers are on a layer, its frames are scaled and encoded once; a
viewer changes layer by moving its RTP stream from one layer's ``RtpFanout`` to another's (see
``rtp_fanout``), which viewers' measured links decide (``adapt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack

from streaming.node.broadcast.rtp_fanout import RtpFanout
from streaming.node.media.fanout import EncodedFanout

AUDIO_ONLY = "audio"


@dataclass(frozen=True)
class Layer:
    """One rung: ``name`` (as in stats, logs and HLS file names), picture size and video bitrate;
    the audio-only rung has no picture (0 × 0, 0 bit/s). ``speed``: the VP8 encoder's realtime
    speed (libvpx ``cpu-used``); ``frame_divisor``: the layer encodes one composite frame in that
    many. The lower layer uses a faster speed and half the frame rate (7.5 fps of 15): a talking
    picture at 180p for a weak link loses little, and the whole ladder's encoding stays well
    below 1.6 times the top layer's alone (bench/broadcast.py --ladder)."""

    name: str
    width: int
    height: int
    bitrate: int
    speed: int = 6
    frame_divisor: int = 1

    @property
    def video(self) -> bool:
        return self.width > 0


AUDIO_LAYER = Layer(AUDIO_ONLY, 0, 0, 0)


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def default_ladder(
    width: int = 640, height: int = 360, bitrate: int | None = None
) -> tuple[Layer, ...]:
    """The full picture, the picture at half size, audio only. At 640×360: 360p at 600 kbit/s,
    180p at 250 kbit/s (other sizes scale the bitrates with the picture area)."""
    scale = width * height / (640 * 360)
    top = bitrate or max(100_000, int(600_000 * scale))
    half = Layer(
        f"{_even(height / 2)}p",
        _even(width / 2),
        _even(height / 2),
        int(top * 5 / 12),
        speed=10,
        frame_divisor=2,
    )
    return (Layer(f"{height}p", width, height, top), half, AUDIO_LAYER)


def single_layer(width: int, height: int, bitrate: int | None = None) -> tuple[Layer, ...]:
    """No ladder: every viewer gets the full picture (what a broadcast did before the ladder)."""
    return (default_ladder(width, height, bitrate)[0],)


def check_ladder(layers: Sequence[Layer], width: int, height: int) -> tuple[Layer, ...]:
    layers = tuple(layers)
    video = [layer for layer in layers if layer.video]
    if not video:
        raise ValueError("a ladder needs a video layer")
    if layers[: len(video)] != tuple(video):
        raise ValueError("the audio-only layer comes last")
    if (video[0].width, video[0].height) != (width, height):
        raise ValueError("the first layer is the composite's own size")
    if len({layer.name for layer in layers}) != len(layers):
        raise ValueError("layer names must differ")
    return layers


class EveryNthFrame(MediaStreamTrack):
    """One frame in ``n`` of ``source`` (a layer at a lower frame rate)."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, n: int) -> None:
        super().__init__()
        self.source = source
        self.n = n
        self._seen = 0

    async def recv(self) -> Any:
        while True:
            frame = await self.source.recv()
            self._seen += 1
            if (self._seen - 1) % self.n == 0:
                return frame

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class EncodedLayer:
    """One video layer of a broadcast: the composite scaled to the layer's size and encoded once
    (VP8) for every viewer on it, packetised once by its ``RtpFanout``."""

    def __init__(self, layer: Layer, source: MediaStreamTrack, *, gop_seconds: float) -> None:
        self.layer = layer
        if layer.frame_divisor > 1:
            source = EveryNthFrame(source, layer.frame_divisor)
        # Each viewer holds at most four encoded frames (see Broadcast.start for the queues).
        self.encoded = EncodedFanout(
            source,
            kind="video",
            bitrate=layer.bitrate,
            gop_seconds=gop_seconds,
            queue_size=4,
            name=f"broadcast-{layer.name}",
            size=(layer.width, layer.height),
            speed=layer.speed,
        )
        self.rtp = RtpFanout(self.encoded)

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "width": self.layer.width,
            "height": self.layer.height,
            "bitrate": self.layer.bitrate,
            # frames scaled and encoded for this layer, however many viewers take it
            "frames_encoded": self.encoded.stats["frames_in"],
            "encode_cpu_seconds": self.encoded.encode_cpu_seconds,
            "subscriptions": self.encoded.stats["subscribers"],
            # packetising once and writing to each viewer
            "send_cpu_seconds": self.rtp.send_cpu_seconds,
            "viewer_frames": self.rtp.stats["viewer_frames"],
            "viewers": len(self.rtp.viewers),
        }

    def request_keyframe(self) -> None:
        self.encoded.request_keyframe()

    async def stop(self) -> None:
        await self.rtp.stop()
        await self.encoded.stop()

"""Selective forwarding without decoding: a publisher's encoded frames go to every subscriber.

aiortc's ``RTCRtpReceiver`` reassembles each received frame in its jitter buffer and hands it,
still encoded, to its decoder thread through a queue. ``EncodedForwarder.attach(receiver)``
replaces that queue with a ``ReceiverTap`` before the receiver starts: every completed frame
becomes an ``av.Packet`` (restamped on the process's media clock, keyframes flagged) that is
handed, as the same object, to every subscriber's ``PacketTrack``; the subscriber's
``RTCRtpSender`` only packetises it (``encoder.pack``). The decoder thread gets frames only while
something needs decoded pictures (``set_decode``: the livestream compositor, the recording, a
subscriber that negotiated another codec), from a keyframe on; otherwise nothing is decoded.

Keyframes: a subscriber starts, resumes after a switch and recovers after an overflow at a
keyframe, and its PLI/FIR reaches ``request_keyframe()``. Requests become a PLI to the publisher,
at most one per ``keyframe_min_interval``, repeated at that pace while a subscriber (or the
decoder) still waits for a keyframe, so a lost PLI or a slow publisher never leaves a frozen
picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av

from streaming.node.internals import aiortc_private

from .fanout import PacketTrack, media_clock

logger = logging.getLogger(__name__)

# Source timestamps are kept for pacing while they stay this close to the media clock.
PTS_TOLERANCE_SECONDS = 0.15

# codec mime type -> the EncodedFanout codec that produces it (for subscribers that need a
# transcode because they negotiated something else than the publisher sends)
FANOUT_CODECS = {"video/vp8": "vp8", "video/h264": "h264", "audio/opus": "opus"}


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether a depacketised frame starts a new picture sequence (audio frames always do)."""
    if not data:
        return False
    mime_type = mime_type.lower()
    if mime_type == "video/vp8":
        # RFC 6386 9.1: the frame tag's lowest bit is 0 for a key frame
        return not data[0] & 0x01
    if mime_type == "video/h264":
        # aiortc's depacketiser yields Annex B: look for an IDR slice (5) or a parameter set (7)
        for chunk in data.split(b"\x00\x00\x01")[1:]:
            if chunk and chunk[0] & 0x1F in (5, 7):
                return True
        return False
    return not mime_type.startswith("video/")


class SlotTrack(PacketTrack):
    """A subscriber's permanent track: forwarded frames are offered only once its sender reads.

    Until the subscriber's connection is up nothing would drain the queue, and queued frames
    would only overflow it and ask the publisher for keyframes nobody can use yet; the first
    read asks for the keyframe the subscriber starts with instead.
    """

    def __init__(self, kind: str, *, queue_size: int = 8) -> None:
        super().__init__(kind, queue_size=queue_size)
        self.started = False

    async def recv(self) -> av.Packet:
        if not self.started:
            self.started = True
            if self._need_keyframe:
                self.request_keyframe()
        return await super().recv()


class ReceiverTap:
    """Stands in for an ``RTCRtpReceiver``'s decoder queue (see the module docstring).

    ``put`` is called on the event loop by the receiver with ``(codec, JitterFrame)``, or with
    ``None`` when the receiver stops; ``get`` is called by the receiver's decoder thread.
    """

    def __init__(self, forwarder: EncodedForwarder, receiver: Any) -> None:
        self.forwarder = forwarder
        self.receiver = receiver
        self._decoder_queue: queue.Queue[Any] = queue.Queue()
        self.decoder_needs_keyframe = True
        self.ended = False

    def put(self, item: Any) -> None:
        if item is None:
            self.ended = True
            self._decoder_queue.put(None)
            return
        codec, frame = item
        keyframe = self.forwarder._on_frame(self, codec, frame)
        if keyframe is None or not self.forwarder.decoding:
            self.decoder_needs_keyframe = True
            return
        if self.forwarder.kind == "video" and self.decoder_needs_keyframe:
            if not keyframe:
                self.forwarder.request_keyframe()
                return
            self.decoder_needs_keyframe = False
        self._decoder_queue.put(item)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._decoder_queue.get(*args, **kwargs)


class EncodedForwarder:
    """One published track's encoded frames, forwarded to any number of ``PacketTrack``s.

    Same subscriber interface as ``EncodedFanout`` (``subscribe``, ``unsubscribe``,
    ``request_keyframe``, ``stop``, ``stats``), so a slot's track moves between a forwarder, a
    transcoding fanout and a slate without its sender noticing. Its source is the receiver last
    attached; a reconnecting publisher brings a new receiver and subscribers stay.
    """

    def __init__(
        self,
        *,
        kind: str,
        codec: str,
        keyframe_min_interval: float = 0.3,
        clock: Callable[[], float] = media_clock,
        name: str = "",
    ) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be 'audio' or 'video', not {kind!r}")
        self.kind = kind
        self.codec = codec.lower()
        self.name = name
        self.keyframe_min_interval = keyframe_min_interval
        self._clock = clock
        self._tap: ReceiverTap | None = None
        self._subscribers: dict[PacketTrack, None] = {}
        self._stopped = False
        self.decoding = False
        self._keyframe_wanted = False
        self._keyframe_task: asyncio.Task[None] | None = None
        self._pli_tasks: set[asyncio.Task[None]] = set()
        self._last_pts: int | None = None
        self._last_source: tuple[ReceiverTap, int, int] | None = None
        self._arrivals: deque[float] = deque(maxlen=120)
        self.stats: dict[str, int] = {
            "frames_in": 0,
            "packets_out": 0,
            "keyframes": 0,
            "keyframe_requests": 0,
            "plis_sent": 0,
            "subscribers": 0,
            "dropped": 0,
            "source_switches": 0,
            "decoded_frames_in": 0,
            "other_codec": 0,
        }

    # -- the source ------------------------------------------------------------------------

    def attach(self, receiver: Any, *, codec: str | None = None) -> ReceiverTap:
        """Take ``receiver``'s encoded frames from now on; call before the receiver starts."""
        if aiortc_private.receiver_started(receiver):
            raise RuntimeError("attach a forwarder before the receiver starts")
        tap = ReceiverTap(self, receiver)
        # The receiver hands completed frames to this queue; its decoder thread reads it.
        aiortc_private.set_decoder_queue(receiver, tap)
        if codec is not None:
            self.codec = codec.lower()
        if self._tap is not None:
            self.stats["source_switches"] += 1
            for track in self._subscribers:
                track._reset()
            self.request_keyframe()
        self._tap = tap
        self._last_source = None
        return tap

    def set_decode(self, wanted: bool) -> None:
        """Feed the receiver's decoder (from the next keyframe) only while ``wanted``."""
        if wanted and not self.decoding and self.kind == "video":
            self.request_keyframe()
        self.decoding = wanted

    def fps(self, window: float = 2.0) -> float:
        """Frames per second received over the last ``window`` seconds."""
        now = time.monotonic()
        return sum(1 for t in self._arrivals if now - t <= window) / window

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(self, track: PacketTrack | None = None) -> PacketTrack:
        """Return a new subscriber track, or move ``track`` here from what feeds it now."""
        if self._stopped:
            raise RuntimeError("forwarder is stopped")
        if track is None:
            track = PacketTrack(self.kind)
        elif track.kind != self.kind:
            raise ValueError(f"cannot feed a {track.kind} track from a {self.kind} forwarder")
        elif track.fanout is self:
            return track
        elif track.fanout is not None:
            track.fanout.unsubscribe(track)
        track._reset()
        track._fanout = self  # type: ignore[assignment]
        self._subscribers[track] = None
        self.stats["subscribers"] = len(self._subscribers)
        if self.kind == "video":
            self.request_keyframe()
        return track

    def unsubscribe(self, track: PacketTrack) -> None:
        if self._subscribers.pop(track, False) is None:
            track._fanout = None
            track._reset()
        self.stats["subscribers"] = len(self._subscribers)

    @property
    def subscribers(self) -> list[PacketTrack]:
        return list(self._subscribers)

    async def stop(self) -> None:
        """Stop forwarding; subscriber tracks are ended."""
        self._stopped = True
        if self._keyframe_task is not None:
            self._keyframe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keyframe_task
            self._keyframe_task = None
        for track in list(self._subscribers):
            track.stop()
        self._subscribers.clear()
        self.stats["subscribers"] = 0

    # -- keyframes -------------------------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: a PLI now, or when the rate limit allows."""
        if self.kind != "video" or self._stopped:
            return
        self.stats["keyframe_requests"] += 1
        self._keyframe_wanted = True
        if self._keyframe_task is None or self._keyframe_task.done():
            self._keyframe_task = asyncio.get_running_loop().create_task(
                self._keyframe_loop(), name=f"keyframes-{self.name}"
            )

    def _waiting_for_keyframe(self) -> bool:
        if any(
            track._need_keyframe and getattr(track, "started", True) for track in self._subscribers
        ):
            return True
        tap = self._tap
        return tap is not None and self.decoding and tap.decoder_needs_keyframe

    async def _keyframe_loop(self) -> None:
        while not self._stopped and (self._keyframe_wanted or self._waiting_for_keyframe()):
            self._keyframe_wanted = False
            self._send_pli()
            await asyncio.sleep(self.keyframe_min_interval)

    def _send_pli(self) -> None:
        tap = self._tap
        if tap is None or tap.ended:
            return
        receiver = tap.receiver
        # the media SSRC, never the RTX one (a browser probing bandwidth sends padding on it)
        sources = aiortc_private.media_sources(receiver)
        if not sources:
            return  # nothing received yet: the publisher's first frame is a keyframe
        ssrc = max(sources, key=lambda s: s.timestamp).source
        self.stats["plis_sent"] += 1
        task = asyncio.get_running_loop().create_task(aiortc_private.send_pli(receiver, ssrc))
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)

    # -- frames ----------------------------------------------------------------------------

    def _on_frame(self, tap: ReceiverTap, codec: Any, frame: Any) -> bool | None:
        """Forward one completed frame; returns whether it is a keyframe (None: not used)."""
        if tap is not self._tap or self._stopped:
            return None
        mime_type = codec.mimeType.lower()
        if mime_type != self.codec:
            # a publisher switched to another negotiated codec: its subscribers cannot use it
            self.stats["other_codec"] += 1
            return None
        data = frame.data
        keyframe = is_keyframe(mime_type, data)
        self.stats["frames_in"] += 1
        self._arrivals.append(time.monotonic())
        if self.decoding:
            self.stats["decoded_frames_in"] += 1
        if not self._subscribers:
            return keyframe
        rate = codec.clockRate
        packet = av.Packet(data)
        packet.pts = packet.dts = self._stamp(tap, frame.timestamp, rate)
        packet.time_base = fractions.Fraction(1, rate)
        packet.is_keyframe = keyframe
        self.stats["packets_out"] += 1
        if keyframe and self.kind == "video":
            self.stats["keyframes"] += 1
            self._keyframe_wanted = False
        for track in list(self._subscribers):
            if getattr(track, "started", True):
                self.stats["dropped"] += track._offer(packet)
        return keyframe

    def _stamp(self, tap: ReceiverTap, timestamp: int, rate: int) -> int:
        """The packet's pts on the media clock, keeping the publisher's own frame spacing.

        Every fanout and forwarder of the process stamps on one clock, so a subscriber moved
        between them (a slate, another publisher, a reconnected one) keeps advancing RTP
        timestamps.
        """
        wall = int(self._clock() * rate)
        pts = wall
        previous = self._last_source
        if previous is not None and previous[0] is tap and previous[2] == rate:
            if self._last_pts is not None:
                delta = timestamp - previous[1]
                candidate = self._last_pts + delta
                if delta > 0 and abs(candidate - wall) < PTS_TOLERANCE_SECONDS * rate:
                    pts = candidate
        self._last_source = (tap, timestamp, rate)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

"""Encode once, send to many.

aiortc gives every ``RTCRtpSender`` its own encoder, so N subscribers of one decoded track cost N
encodes (that is what ``MediaRelay`` leads to). A track whose ``recv()`` returns an ``av.Packet`` is
only packetised by the sender (``encoder.pack``). ``EncodedFanout`` uses that: it pulls frames from
one source, encodes each frame once and hands the same ``av.Packet`` objects to every subscriber.

Three things the sender's own encoder did for free have to be done here instead:

* timestamps: every packet carries ``pts`` and ``time_base``; all fanouts in the process stamp
  packets on one shared clock (``MEDIA_EPOCH``), so a subscriber moved from one fanout to another
  (a member's picture replaced by a slate) keeps advancing RTP timestamps;
* keyframes: a PLI/FIR reaches the sender, not an encoder, so ``route_keyframe_requests`` forwards
  it to the shared encoder, rate-limited, and the GOP is kept short (1-2 s) so a missed request
  costs at most one GOP;
* back-pressure: each subscriber has a small bounded queue that drops the oldest; a video
  subscriber that overflowed skips to the next keyframe instead of decoding garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.video.frame import PictureType, VideoFrame
from av.video.reformatter import VideoReformatter

from streaming.node.internals import aiortc_private

if TYPE_CHECKING:
    from aiortc import RTCRtpSender

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_SAMPLE_RATE = 48_000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_SAMPLE_RATE)

# One clock for every fanout in the process (see the module docstring).
MEDIA_EPOCH = time.monotonic()

# Frames encoded in this process, by (fanout name, kind): what a node reports when asked how
# often it encoded a livestream (encode once, however many viewers and nodes).
ENCODED_FRAMES: Counter[tuple[str, str]] = Counter()

# A subscriber's audio is resynchronised to the clock when it lags by more than this, which
# happens after the source stalled (a muted or reconnecting member).
AUDIO_RESYNC_SECONDS = 0.1
# Source timestamps are trusted for pacing while they stay this close to the clock.
VIDEO_PTS_TOLERANCE_SECONDS = 0.15

VIDEO_CODECS = {"vp8": "libvpx", "h264": "libx264"}
AUDIO_CODECS = {"opus": "libopus", "aac": "aac"}


def media_clock() -> float:
    """Seconds since ``MEDIA_EPOCH``; the default clock of every fanout."""
    return time.monotonic() - MEDIA_EPOCH


class PacketTrack(MediaStreamTrack):
    """A subscriber of an ``EncodedFanout``: ``recv()`` returns ``av.Packet`` objects.

    The queue is bounded and drops the oldest packet, so a subscriber that cannot keep up loses
    packets instead of slowing the fanout or growing without bound. A video subscriber only starts
    (and restarts after an overflow) at a keyframe, so its decoder never sees a broken reference.
    The track outlives its fanout: ``EncodedFanout.subscribe(track)`` moves it to another fanout
    without the RTP sender noticing.
    """

    def __init__(self, kind: str, *, queue_size: int = 8) -> None:
        super().__init__()
        self.kind = kind
        self.queue_size = max(1, queue_size)
        self._queue: deque[av.Packet] = deque()
        self._ready = asyncio.Event()
        self._fanout: EncodedFanout | None = None
        self._need_keyframe = kind == "video"
        self.received = 0
        self.dropped = 0

    @property
    def fanout(self) -> EncodedFanout | None:
        return self._fanout

    def request_keyframe(self) -> None:
        """Ask the fanout currently feeding this track for a keyframe (rate-limited there)."""
        if self._fanout is not None:
            self._fanout.request_keyframe()

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._queue:
                return self._queue.popleft()
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        if self._fanout is not None:
            self._fanout.unsubscribe(self)
        super().stop()
        # wake a pending recv() so it sees the track ended
        self._ready.set()

    def _reset(self) -> None:
        """Forget queued packets, e.g. when moved to another fanout."""
        self._queue.clear()
        self._need_keyframe = self.kind == "video"

    def _offer(self, packet: av.Packet) -> int:
        """Queue one packet; returns how many packets were dropped to make room."""
        if self._need_keyframe:
            if not packet.is_keyframe:
                return 0
            self._need_keyframe = False
        dropped = 0
        if len(self._queue) >= self.queue_size:
            if self.kind == "video" and not packet.is_keyframe:
                # Dropping one inter frame would corrupt every frame up to the next keyframe;
                # drop the backlog and resume cleanly at the next keyframe instead.
                dropped = len(self._queue) + 1
                self._queue.clear()
                self._need_keyframe = True
                self.dropped += dropped
                self.request_keyframe()
                return dropped
            if self.kind == "video":
                dropped = len(self._queue)
                self._queue.clear()
            else:
                self._queue.popleft()
                dropped = 1
            self.dropped += dropped
        self._queue.append(packet)
        self.received += 1
        self._ready.set()
        return dropped


class _VideoEncoder:
    def __init__(
        self,
        *,
        codec: str,
        bitrate: int | None,
        size: tuple[int, int] | None = None,
        speed: int = 6,
    ) -> None:
        self.codec_name = VIDEO_CODECS[codec]
        self.bitrate = bitrate
        self.size = size
        self.speed = speed
        # CPU time the encoding thread spent scaling and encoding (libvpx's own threads, used
        # from 640x480 up, are not counted), for benchmarks
        self.cpu_seconds = 0.0
        self.context: Any = None
        # Encoding runs in a worker thread; a context is never used by two threads at once.
        self.lock = threading.Lock()
        # The frame being encoded is shared (a broadcast's layers and its HLS renditions take
        # the same composite frame in threads of their own). frame.reformat() scales through
        # one swscale context kept on the frame, and two threads scaling through it at once
        # deadlock: this encoder scales with its own.
        self._scaler = VideoReformatter()

    def _open(self, width: int, height: int) -> Any:
        ctx = av.CodecContext.create(self.codec_name, "w")
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = VIDEO_TIME_BASE
        ctx.framerate = fractions.Fraction(30, 1)
        # Keyframes are forced on time (gop_seconds); this only bounds the gap if that fails.
        ctx.gop_size = 300
        bitrate = self.bitrate or max(150_000, min(2_000_000, int(width * height * 2.2)))
        ctx.bit_rate = bitrate
        if self.codec_name == "libvpx":
            # the realtime settings aiortc's own VP8 encoder uses
            ctx.qmin = 2
            ctx.qmax = 56
            ctx.options = {
                "bufsize": str(bitrate),
                "cpu-used": str(-self.speed),
                "deadline": "realtime",
                "lag-in-frames": "0",
                "minrate": str(bitrate),
                "maxrate": str(bitrate),
                "noise-sensitivity": "4",
                "overshoot-pct": "15",
                "partitions": "0",
                "static-thresh": "1",
                "undershoot-pct": "100",
            }
        else:
            ctx.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "forced-idr": "1",
                "profile": "baseline",
            }
        ctx.thread_count = 1 if width * height < 640 * 480 else 2
        return ctx

    def encode(self, frame: VideoFrame, keyframe: bool) -> list[av.Packet]:
        with self.lock:
            started = time.thread_time()
            try:
                return self._encode(frame, keyframe)
            finally:
                self.cpu_seconds += time.thread_time() - started

    def _encode(self, frame: VideoFrame, keyframe: bool) -> list[av.Packet]:
        if self.size is not None and (frame.width, frame.height) != self.size:
            # Scaled here, on the encoding thread, not on the event loop; bilinear is half the
            # cost of swscale's default (bicubic) and as good for halving a picture.
            frame = self._scaler.reformat(
                frame,
                width=self.size[0],
                height=self.size[1],
                format="yuv420p",
                interpolation="FAST_BILINEAR",
            )
        elif frame.format.name != "yuv420p":
            frame = self._scaler.reformat(frame, format="yuv420p")
        ctx = self.context
        if ctx is None or ctx.width != frame.width or ctx.height != frame.height:
            ctx = self.context = self._open(frame.width, frame.height)
            keyframe = True
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        return list(ctx.encode(frame))

    def close(self) -> None:
        with self.lock:
            self.context = None


class _AudioEncoder:
    def __init__(self, *, codec: str, bitrate: int | None) -> None:
        self.codec_name = AUDIO_CODECS[codec]
        ctx = av.CodecContext.create(self.codec_name, "w")
        ctx.sample_rate = AUDIO_SAMPLE_RATE
        ctx.layout = "stereo"
        ctx.time_base = AUDIO_TIME_BASE
        if self.codec_name == "libopus":
            ctx.format = "s16"
            ctx.bit_rate = bitrate or 64_000
            ctx.options = {"application": "voip"}
            frame_size = 960
        else:
            ctx.format = "fltp"
            ctx.bit_rate = bitrate or 128_000
            frame_size = 1024
        self.context = ctx
        self.frame_size = frame_size
        self.resampler = av.AudioResampler(
            format=ctx.format.name, layout="stereo", rate=AUDIO_SAMPLE_RATE, frame_size=frame_size
        )

    def encode(self, frame: AudioFrame, keyframe: bool) -> list[av.Packet]:
        packets: list[av.Packet] = []
        for chunk in self.resampler.resample(frame):
            packets.extend(self.context.encode(chunk))
        return packets

    def close(self) -> None:
        self.context = None


class EncodedFanout:
    """Pulls frames from one source MediaStreamTrack (video or audio), encodes each frame ONCE
    (video: VP8 via PyAV libvpx, short GOP 1-2 s; audio: Opus), and hands the same av.Packet
    objects (pts and time_base set) to every subscriber.

    Lazy: the source is read and encoded only while at least one subscriber exists. A source
    that must be drained even when nobody watches (a received remote track) belongs behind a
    ``FrameHub``. ``codec`` may be ``"h264"`` / ``"aac"`` for file or HLS outputs. ``size``
    (video): every frame is scaled to this (width, height) before it is encoded, on the encoding
    thread (a broadcast's lower layers are the composite scaled down). ``speed``: libvpx's
    realtime speed (``cpu-used``, 6 as aiortc's own encoder; higher is faster and coarser).
    """

    def __init__(
        self,
        source: MediaStreamTrack | None,
        *,
        kind: str,
        bitrate: int | None = None,
        gop_seconds: float = 1.0,
        keyframe_min_interval: float = 0.5,
        queue_size: int = 8,
        codec: str | None = None,
        clock: Callable[[], float] = media_clock,
        name: str = "",
        size: tuple[int, int] | None = None,
        speed: int = 6,
    ) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be 'audio' or 'video', not {kind!r}")
        self.kind = kind
        self.name = name
        self.gop_seconds = gop_seconds
        self.keyframe_min_interval = keyframe_min_interval
        self.queue_size = queue_size
        self._clock = clock
        if kind == "video":
            self._encoder: _VideoEncoder | _AudioEncoder = _VideoEncoder(
                codec=codec or "vp8", bitrate=bitrate, size=size, speed=speed
            )
        else:
            self._encoder = _AudioEncoder(codec=codec or "opus", bitrate=bitrate)
        self._source = source
        self._source_version = 0
        self._subscribers: dict[PacketTrack, None] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopped = False
        self._keyframe_wanted = False
        self._last_keyframe_at: float | None = None
        # timestamping state
        self._last_pts: int | None = None
        self._last_source_pts: tuple[int, int, fractions.Fraction] | None = None
        self._audio_next_pts: int | None = None
        self.stats: dict[str, int] = {
            "frames_in": 0,
            "packets_out": 0,
            "keyframes": 0,
            "keyframe_requests": 0,
            "subscribers": 0,
            "dropped": 0,
            "source_switches": 0,
        }

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, track: PacketTrack | None = None) -> PacketTrack:
        """Return a new subscriber track, or move ``track`` here from the fanout feeding it."""
        if self._stopped:
            raise RuntimeError("fanout is stopped")
        if track is None:
            track = PacketTrack(self.kind, queue_size=self.queue_size)
        elif track.kind != self.kind:
            raise ValueError(f"cannot feed a {track.kind} track from a {self.kind} fanout")
        elif track.fanout is self:
            return track
        elif track.fanout is not None:
            track.fanout.unsubscribe(track)
        track._reset()
        track._fanout = self
        self._subscribers[track] = None
        self.stats["subscribers"] = len(self._subscribers)
        if self.kind == "video":
            self.request_keyframe()
        self._ensure_running()
        return track

    def unsubscribe(self, track: PacketTrack) -> None:
        if self._subscribers.pop(track, False) is None:
            track._fanout = None
            track._reset()
        self.stats["subscribers"] = len(self._subscribers)
        if not self._subscribers:
            self._wake.set()

    @property
    def subscribers(self) -> list[PacketTrack]:
        return list(self._subscribers)

    # -- control -----------------------------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask for a keyframe; requests are coalesced, at most one per keyframe_min_interval."""
        if self.kind != "video":
            return
        self.stats["keyframe_requests"] += 1
        self._keyframe_wanted = True

    def set_source(self, source: MediaStreamTrack | None) -> None:
        """Switch what is encoded (e.g. to a slate); subscribers stay subscribed."""
        if source is self._source:
            return
        self._source = source
        self._source_version += 1
        self._last_source_pts = None
        self.stats["source_switches"] += 1
        self.request_keyframe()
        self._wake.set()

    @property
    def source(self) -> MediaStreamTrack | None:
        return self._source

    @property
    def encode_cpu_seconds(self) -> float:
        """CPU time this fanout's video encoder has spent (scaling included); 0 for audio."""
        return getattr(self._encoder, "cpu_seconds", 0.0)

    async def stop(self) -> None:
        """Stop reading and encoding; subscriber tracks are ended."""
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for track in list(self._subscribers):
            track.stop()
        self._subscribers.clear()
        self.stats["subscribers"] = 0
        self._encoder.close()

    # -- the pump ----------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"fanout-{self.kind}-{self.name}"
            )

    async def _next_frame(self) -> Any:
        """The next frame of the current source, or None if woken (source switch, idle, stop)."""
        self._wake.clear()
        source = self._source
        if source is None or source.readyState != "live":
            await self._wake.wait()
            return None
        recv = asyncio.ensure_future(source.recv())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({recv, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        if not recv.done():
            recv.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await recv
            return None
        try:
            return recv.result()
        except MediaStreamError:
            # the source ended; idle until a new source or a stop
            if self._source is source:
                self._source = None
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._subscribers and not self._stopped:
                version = self._source_version
                frame = await self._next_frame()
                if frame is None or version != self._source_version or self._stopped:
                    continue
                self.stats["frames_in"] += 1
                ENCODED_FRAMES[(self.name, self.kind)] += 1
                if self.kind == "video":
                    pts = self._video_pts(frame, version)
                    keyframe = self._keyframe_due()
                    packets = await loop.run_in_executor(
                        None, self._encoder.encode, frame, keyframe
                    )
                    for packet in packets:
                        packet.pts = pts
                        packet.dts = pts
                        packet.time_base = VIDEO_TIME_BASE
                else:
                    packets = self._encoder.encode(frame, False)
                    for packet in packets:
                        packet.pts = packet.dts = self._audio_pts()
                        packet.time_base = AUDIO_TIME_BASE
                self._deliver(packets)
        except Exception:
            logger.exception("fanout %s (%s) failed", self.name, self.kind)
            raise

    def _keyframe_due(self) -> bool:
        now = self._clock()
        last = self._last_keyframe_at
        if last is None or now - last >= self.gop_seconds:
            due = True
        else:
            due = self._keyframe_wanted and now - last >= self.keyframe_min_interval
        if due:
            self._keyframe_wanted = False
            self._last_keyframe_at = now
        return due

    def _video_pts(self, frame: VideoFrame, version: int) -> int:
        wall = int(self._clock() * VIDEO_CLOCK_RATE)
        pts = wall
        previous = self._last_source_pts
        if frame.pts is not None and frame.time_base is not None:
            time_base = fractions.Fraction(frame.time_base.numerator, frame.time_base.denominator)
            if previous is not None and previous[0] == version and self._last_pts is not None:
                delta = (frame.pts - previous[1]) * previous[2] * VIDEO_CLOCK_RATE
                candidate = self._last_pts + int(delta)
                # Keep the source's own spacing (smoother pacing) while it agrees with the clock.
                if delta > 0 and abs(candidate - wall) < VIDEO_PTS_TOLERANCE_SECONDS * 90_000:
                    pts = candidate
            self._last_source_pts = (version, frame.pts, time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def _audio_pts(self) -> int:
        wall = int(self._clock() * AUDIO_SAMPLE_RATE)
        pts = self._audio_next_pts
        if pts is None or wall - pts > AUDIO_RESYNC_SECONDS * AUDIO_SAMPLE_RATE:
            pts = wall
        self._audio_next_pts = pts + self._encoder.frame_size
        return pts

    def _deliver(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.stats["packets_out"] += 1
            if packet.is_keyframe and self.kind == "video":
                self.stats["keyframes"] += 1
            for track in list(self._subscribers):
                self.stats["dropped"] += track._offer(packet)


def route_keyframe_requests(sender: RTCRtpSender, fanout: EncodedFanout | PacketTrack) -> None:
    """Make PLI/FIR received by this RTCRtpSender reach fanout.request_keyframe() (rate-limited).

    aiortc's sender turns PLI/FIR into ``_send_keyframe()``, which only flags its own encoder, and
    that encoder is never used for pre-encoded packets. Passing the ``PacketTrack`` instead of the
    fanout routes requests to whichever fanout feeds the track at the time.
    """
    aiortc_private.route_keyframe_requests(sender, fanout.request_keyframe)

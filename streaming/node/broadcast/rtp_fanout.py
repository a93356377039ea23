"""Packetise once, write to every viewer from one loop.

An ``RTCRtpSender`` fed with pre-encoded ``av.Packet``s still does everything else per viewer: a
task that wakes for every frame, packetisation (VP8 payload descriptors), an ``RtpPacket`` object,
``serialize()`` and one ``await`` per packet down to the socket. With a few hundred viewers that
per-viewer work, not the encode, is what the broadcast costs.

``RtpFanout`` takes the encoded packets of one ``EncodedFanout`` (one subscription for all its
viewers) and, for each frame:

* packetises it once, with aiortc's own packetiser; the payloads (VP8 descriptor included, so the
  picture id is shared) are the same bytes for every viewer;
* per viewer writes only the 12-byte RTP header (its own SSRC, payload type, sequence number and
  timestamp offset) and the header extensions it negotiated, protects the packet with the viewer's
  SRTP session and hands it to the viewer's socket, all without yielding to the event loop.

What stays per viewer: the ``RTCPeerConnection`` and its ``RTCRtpSender``, which negotiates, sends
the RTCP sender reports (fed with this module's counters) and handles the viewer's RTCP; NACKs are
answered from the viewer's own history of sent frames (RTX when negotiated), PLI/FIR reach the
shared encoder through ``route_keyframe_requests``. The sender's own RTP task only waits on a track
that never yields a frame.

Layers: a viewer's stream can move to another ``RtpFanout`` of the same kind (``move``, a
broadcast's other layer): it keeps its SSRC, sequence numbers and timestamp origin (every fanout
stamps on one clock), and changes over at the new fanout's next keyframe, receiving the old one's
frames until then. ``park`` stops its frames altogether (the audio-only layer).

Back-pressure: a viewer whose socket has not flushed what it was last given (its transport holds a
write buffer) skips the frame, and a video viewer then resumes at the next keyframe (asked for,
rate-limited by the encoder). Nothing waits on a viewer, so a slow one never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc.clock import current_ntp_time
from aiortc.codecs import get_encoder, is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket, wrap_rtx
from aiortc.utils import random32

from streaming.node.internals import aioice_private, aiortc_private
from streaming.node.media.fanout import EncodedFanout, PacketTrack

if TYPE_CHECKING:
    import av
    from aiortc import RTCPeerConnection, RTCRtpSender
    from aiortc.rtcrtpparameters import RTCRtpSendParameters

logger = logging.getLogger(__name__)

PACK_HEADER = struct.Struct("!BBHLL").pack
PACK_EXTENSION_HEADER = struct.Struct("!HH").pack
# Frames kept per video viewer to answer NACKs: about two seconds at 15 fps.
HISTORY_FRAMES = 32
# Bytes a viewer's transport may hold unsent before the viewer skips frames.
WRITE_BUFFER_LIMIT = 64 * 1024

CODECS = {
    "video": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96),
    "audio": RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111
    ),
}


def _never() -> bool:
    return False


def _nothing() -> int:
    return 0


class IdleTrack(MediaStreamTrack):
    """What the viewer's ``RTCRtpSender`` is given: it never yields a frame (``RtpFanout`` sends
    the RTP) and ends when stopped."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._ended.set()


class ViewerStream:
    """One viewer's RTP stream of one kind, written by an ``RtpFanout``."""

    def __init__(self, fanout: RtpFanout, sender: RTCRtpSender, track: IdleTrack) -> None:
        # the fanout writing this stream; None while parked
        self.fanout: RtpFanout | None = fanout
        # the fanout it moves to at that fanout's next keyframe
        self.joining: RtpFanout | None = None
        self.kind = fanout.kind
        self.sender = sender
        self.track = track
        self.ready = False
        self.closed = False
        self.need_keyframe = self.kind == "video"
        # per-viewer RTP state, as aiortc's sender would have it
        self.ssrc = aiortc_private.sender_ssrc(sender)
        self.sequence_number = random_sequence_number()
        self.timestamp_origin = random32()
        self.rtx_sequence_number = random_sequence_number()
        self.payload_type = 0
        self.rtx_payload_type: int | None = None
        self.mid: str | None = None
        self.extensions_map = HeaderExtensionsMap()
        self.extensions_key: tuple = ()
        self.history: deque[tuple[int, int, list[bytes], int]] = deque(maxlen=HISTORY_FRAMES)
        # counters
        self.packets_sent = 0
        self.octets_sent = 0
        self.frames_sent = 0
        self.frames_skipped = 0
        self.retransmitted = 0
        self._dtls: Any = None
        self._protect: Any = None
        self._transport: Any = None
        self._address: Any = None
        self._is_closing: Any = _never
        self._backlog: Any = _nothing

    # -- hooks into the sender -----------------------------------------------------------------

    def _hook(self) -> None:
        sender = self.sender
        start = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            await start(parameters)
            self._configure(parameters)

        # Per instance, like route_keyframe_requests: the rest of the sender stays aiortc's.
        sender.send = send  # type: ignore[method-assign]
        aiortc_private.replace_retransmit(sender, self.retransmit)

    def _configure(self, parameters: RTCRtpSendParameters) -> None:
        codec = parameters.codecs[0]
        self.payload_type = codec.payloadType
        for candidate in parameters.codecs:
            if is_rtx(candidate) and candidate.parameters.get("apt") == codec.payloadType:
                self.rtx_payload_type = candidate.payloadType
                break
        self.mid = parameters.muxId
        self.extensions_map.configure(parameters)
        self.extensions_key = (
            self.mid,
            tuple(sorted((ext.uri, ext.id) for ext in parameters.headerExtensions)),
        )
        self._dtls = self.sender.transport
        self.ready = True
        if self.kind == "video":
            self.request_keyframe()

    def _bind(self) -> bool:
        """Find the viewer's SRTP session and socket once DTLS is up; False while it is not."""
        dtls = self._dtls
        if dtls is None or dtls.state != "connected":
            return False
        tx_srtp, _rx_srtp = aiortc_private.srtp_sessions(dtls)
        if tx_srtp is None:
            return False
        # aioice's nominated pair: its protocol writes datagrams with transport.sendto (a UDP
        # socket, or a TURN allocation's transport), synchronously.
        pair = aioice_private.nominated_pair(aiortc_private.ice_connection(dtls), 1)
        if pair is None or pair.protocol.transport is None:
            return False
        transport = pair.protocol.transport
        self._protect = tx_srtp.protect
        self._transport = transport
        self._address = pair.remote_addr
        # A TURN allocation's transport has neither (it queues nothing itself).
        self._is_closing = getattr(transport, "is_closing", None) or _never
        self._backlog = getattr(transport, "get_write_buffer_size", None) or _nothing
        return True

    # -- sending -------------------------------------------------------------------------------

    def send_frame(
        self,
        payloads: list[bytes],
        timestamp: int,
        keyframe: bool,
        extensions: dict[tuple, bytes],
        abs_send_time: int,
    ) -> bool:
        """Write one frame's packets; False if the viewer skipped it."""
        if not self.ready or self.closed or not aiortc_private.sender_enabled(self.sender):
            return False
        if self._transport is None:
            if not self._bind():
                return False
        elif self._dtls.state != "connected":
            return False
        if self.need_keyframe:
            if not keyframe:
                return False
            self.need_keyframe = False
        transport = self._transport
        if self._is_closing():
            return False
        if self._backlog() > WRITE_BUFFER_LIMIT:
            self.frames_skipped += 1
            if self.kind == "video":
                self.need_keyframe = True
                self.request_keyframe()
            return False
        block = extensions.get(self.extensions_key)
        if block is None:
            block = extensions[self.extensions_key] = self._extension_block(abs_send_time)
        first_byte = 0x90 if block else 0x80
        payload_type = self.payload_type
        rtp_timestamp = (self.timestamp_origin + timestamp) & 0xFFFFFFFF
        ssrc = self.ssrc
        sequence_number = first = self.sequence_number
        protect, sendto, address = self._protect, transport.sendto, self._address
        last = len(payloads) - 1
        octets = 0
        for index, payload in enumerate(payloads):
            header = PACK_HEADER(
                first_byte,
                payload_type | 0x80 if index == last else payload_type,
                sequence_number,
                rtp_timestamp,
                ssrc,
            )
            sendto(protect(b"".join((header, block, payload))), address)
            sequence_number = (sequence_number + 1) & 0xFFFF
            octets += len(payload)
        self.sequence_number = sequence_number
        if self.kind == "video":
            self.history.append((first, rtp_timestamp, payloads, abs_send_time))
        self.packets_sent += len(payloads)
        self.octets_sent += octets
        self.frames_sent += 1
        self._report(rtp_timestamp)
        return True

    def _extension_block(self, abs_send_time: int) -> bytes:
        profile, value = self.extensions_map.set(
            HeaderExtensions(mid=self.mid, abs_send_time=abs_send_time)
        )
        if not value:
            return b""
        return PACK_EXTENSION_HEADER(profile, len(value) >> 2) + value

    def _report(self, rtp_timestamp: int) -> None:
        # The sender's RTCP task builds its sender reports from these (name-mangled) fields.
        fanout = self.fanout or self.joining
        aiortc_private.set_sender_report(
            self.sender,
            ntp_timestamp=fanout.frame_ntp if fanout else current_ntp_time(),
            rtp_timestamp=rtp_timestamp,
            packets=self.packets_sent,
            octets=self.octets_sent,
        )

    async def retransmit(self, sequence_number: int) -> None:
        """Answer a NACK from this viewer's history (wrapped in RTX when negotiated)."""
        for frame in reversed(self.history):
            first, rtp_timestamp, payloads, abs_send_time = frame
            index = (sequence_number - first) & 0xFFFF
            if index < len(payloads):
                break
        else:
            return
        packet = RtpPacket(
            payload_type=self.payload_type,
            marker=int(index == len(payloads) - 1),
            sequence_number=sequence_number,
            timestamp=rtp_timestamp,
            ssrc=self.ssrc,
            payload=payloads[index],
        )
        packet.extensions.mid = self.mid
        packet.extensions.abs_send_time = abs_send_time
        if self.rtx_payload_type is not None:
            packet = wrap_rtx(
                packet,
                payload_type=self.rtx_payload_type,
                sequence_number=self.rtx_sequence_number,
                ssrc=aiortc_private.sender_rtx_ssrc(self.sender),
            )
            self.rtx_sequence_number = (self.rtx_sequence_number + 1) & 0xFFFF
        self.retransmitted += 1
        with contextlib.suppress(ConnectionError):
            await aiortc_private.send_rtp(
                self.sender.transport, packet.serialize(self.extensions_map)
            )

    def request_keyframe(self) -> None:
        fanout = self.joining or self.fanout
        if fanout is not None:
            fanout.request_keyframe()

    def close(self) -> None:
        self.closed = True
        self.track.stop()
        self.park()

    def park(self) -> None:
        """Stop writing this stream (it stays negotiated and can ``move`` back)."""
        if self.joining is not None:
            self.joining.detach(self)
            self.joining = None
        if self.fanout is not None:
            self.fanout.detach(self)
            self.fanout = None


class RtpFanout:
    """Writes the packets of one ``EncodedFanout`` (VP8 video or Opus audio) to its viewers'
    RTP streams, packetising each frame once (see the module docstring).

    Subscribes to the encoded fanout only while it has viewers or relays (the encoder runs only
    then). A relay (``streaming.node.broadcast.relay``) is handed each frame's payloads as they
    are, to send them on to another node whose viewers get the very same bytes; a fanout fed by a
    relay has no encoder (``encoded`` None) and is handed frames with ``send_payloads``.
    """

    def __init__(self, encoded: EncodedFanout | None, *, kind: str = "", queue_size: int = 4):
        self.encoded = encoded
        self.kind = encoded.kind if encoded is not None else kind
        self.queue_size = queue_size
        self.viewers: dict[ViewerStream, None] = {}
        self._joining: dict[ViewerStream, None] = {}
        self.relays: dict[Callable[[list[bytes], int, bool], None], None] = {}
        self.frame_ntp = 0
        self._packetiser = get_encoder(CODECS[self.kind])
        self._source: PacketTrack | None = None
        self._task: asyncio.Task[None] | None = None
        self.stats = {"frames": 0, "packets": 0, "viewer_frames": 0, "viewer_skips": 0}
        # CPU time spent packetising and writing to viewers (the event loop's thread)
        self.send_cpu_seconds = 0.0

    def add_viewer(self, pc: RTCPeerConnection) -> ViewerStream:
        """Add this kind's track to ``pc`` (before its ``setLocalDescription``): its sender gets an
        ``IdleTrack`` and its RTP comes from here."""
        track = IdleTrack(self.kind)
        stream = ViewerStream(self, pc.addTrack(track), track)
        stream._hook()
        self.viewers[stream] = None
        self._subscribe()
        return stream

    def move(self, stream: ViewerStream) -> None:
        """Write ``stream`` (another fanout's, or parked) from this fanout's next keyframe on;
        until then it keeps what it was getting."""
        if stream.kind != self.kind:
            raise ValueError(f"cannot write a {stream.kind} stream from a {self.kind} fanout")
        if stream.closed:
            return
        if stream.joining is not None and stream.joining is not self:
            stream.joining.detach(stream)
            stream.joining = None
        if stream.fanout is self:
            return
        if self.kind != "video":
            if stream.fanout is not None:
                stream.fanout.detach(stream)
            stream.fanout = self
            self.viewers[stream] = None
        else:
            stream.joining = self
            self._joining[stream] = None
            self.request_keyframe()
        self._subscribe()

    def _take_joining(self) -> None:
        """At a keyframe: the streams waiting for one change over to this fanout."""
        for stream in list(self._joining):
            if stream.fanout is not None:
                stream.fanout.detach(stream)
            stream.fanout = self
            stream.joining = None
            stream.need_keyframe = False
            self.viewers[stream] = None
        self._joining.clear()

    def add_relay(self, relay: Callable[[list[bytes], int, bool], None]) -> None:
        """Hand every frame's payloads, RTP timestamp and keyframe flag to ``relay`` too."""
        self.relays[relay] = None
        self._subscribe()

    def remove_relay(self, relay: Callable[[list[bytes], int, bool], None]) -> None:
        self.relays.pop(relay, None)
        self._release()

    def _subscribe(self) -> None:
        if self._source is None and self.encoded is not None:
            self._source = self.encoded.subscribe(
                PacketTrack(self.kind, queue_size=self.queue_size)
            )
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._source), name=f"rtp-fanout-{self.kind}"
            )

    def detach(self, stream: ViewerStream) -> None:
        self.viewers.pop(stream, None)
        self._joining.pop(stream, None)
        self._release()

    def _release(self) -> None:
        if not self.viewers and not self._joining and not self.relays:
            self._stop_source()

    def _stop_source(self) -> None:
        """Nothing is written from here any more."""
        if self._source is not None:
            # the source track ending stops the task
            self._source.stop()
            self._source = None
            self._task = None

    def request_keyframe(self) -> None:
        if self.encoded is not None:
            self.encoded.request_keyframe()

    async def stop(self) -> None:
        for stream in list(self.viewers) + list(self._joining):
            stream.close()
        self.relays.clear()
        task, self._task = self._task, None
        if self._source is not None:
            self._source.stop()
            self._source = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, source: PacketTrack) -> None:
        try:
            while True:
                packet = await source.recv()
                self.send(packet)
        except MediaStreamError:
            return
        except Exception:
            logger.exception("RTP fanout (%s) failed", self.kind)
            raise

    def send(self, packet: av.Packet) -> None:
        """Packetise one encoded frame and write it to every viewer and relay."""
        started = time.thread_time()
        try:
            self._send(packet)
        finally:
            self.send_cpu_seconds += time.thread_time() - started

    def _send(self, packet: av.Packet) -> None:
        payloads, timestamp = self._packetiser.pack(packet)
        if not payloads:
            return
        keyframe = self.kind == "video" and bool(packet.is_keyframe)
        for relay in list(self.relays):
            try:
                relay(payloads, timestamp, keyframe)
            except Exception:
                logger.exception("could not relay a frame")
                self.relays.pop(relay, None)
        self.send_payloads(payloads, timestamp, keyframe)

    def send_payloads(self, payloads: list[bytes], timestamp: int, keyframe: bool) -> None:
        """Write one packetised frame (``timestamp`` in the codec's clock) to every viewer."""
        ntp = current_ntp_time()
        self.frame_ntp = ntp
        abs_send_time = (ntp >> 14) & 0x00FFFFFF
        if keyframe and self._joining:
            self._take_joining()
        extensions: dict[tuple, bytes] = {}
        sent = skipped = 0
        for stream in list(self.viewers):
            try:
                if stream.send_frame(payloads, timestamp, keyframe, extensions, abs_send_time):
                    sent += 1
                else:
                    skipped += 1
            except Exception:
                # one viewer's broken transport must not cost the others their frame
                logger.exception("could not send to a viewer")
                stream.close()
        self.stats["frames"] += 1
        self.stats["packets"] += len(payloads)
        self.stats["viewer_frames"] += sent
        self.stats["viewer_skips"] += skipped

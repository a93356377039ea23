"""A livestream's composite relayed from its home node to the other nodes that serve its viewers.

The home node (the one holding the room) composes and encodes the broadcast once. Another node
that has viewers of it asks for ONE copy of the encoded stream and fans it out to its own viewers
with the same ``RtpFanout`` the home node uses::

    home node:  composite ─► EncodedFanout ─► RtpFanout ─► its own viewers
                                                  └─► RelaySink (per serving node) ─┐
                                                                                     │ RTP/UDP
    serving node:  RelayedBroadcast ◄────────────────────────────────────────────────┘
                       └─► RtpFanout (video, audio) ─► its viewers

The relay is plain RTP over UDP between the nodes' private (relay) addresses
(``MEDIA_RELAY_HOST``; loopback on one machine): no ICE, DTLS or SRTP, so it must stay on the
nodes' own network. The payloads are the home node's packetised frames as they are (VP8 payload
descriptor included), so viewers on every node get the same bytes; each frame is sent as its
packets with consecutive sequence numbers, the frame's RTP timestamp, the marker bit on the last
packet, payload type 96 (VP8) or 111 (Opus) and an SSRC per room and kind chosen by the serving
node. The serving node keeps a frame only when all its packets arrived in order; after a loss it
waits for a keyframe and asks for one with an RTCP PLI (RFC 4585) sent back to the address the
relay comes from.

Setup and teardown go over the channel layer (see ``messages.py`` and docs/protocols.md):

    broadcast.relay    {public_id, node, address, ssrc: {video, audio}, viewers, reply_to?}
                       serving -> home: start, or renew, the relay to ``address``; sent again every
                       ``RENEW_SECONDS`` (with the node's viewer count) while the node has viewers
                       -> broadcast.relay_ready {public_id, ok, reason} on reply_to when given
    broadcast.unrelay  {public_id, node, address}   serving -> home: the last viewer left
The home node drops a relay that was not renewed for ``EXPIRY_SECONDS`` (the serving node died).
A serving node that received nothing for ``STALL_SECONDS`` keeps renewing; a renewal that reaches
a new home node (the room moved) starts the relay there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
)
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.utils import random32
from channels.layers import get_channel_layer

from streaming.node.broadcast.broadcast import (
    BroadcastError,
    ViewerLimitReached,
    answer_viewer,
    discard_viewer,
)
from streaming.node.broadcast.rtp_fanout import CODECS, RtpFanout, ViewerStream
from streaming.plane import aroom_node_channel

logger = logging.getLogger(__name__)

RENEW_SECONDS = 2.0
EXPIRY_SECONDS = 7.0
STALL_SECONDS = 3.0
READY_TIMEOUT_SECONDS = 10.0
PLI_MIN_INTERVAL = 0.3

PACK_HEADER = struct.Struct("!BBHLL").pack
UNPACK_HEADER = struct.Struct("!BBHLL").unpack_from
# RTCP PSFB (206) FMT 1 = PLI, length 2: sender SSRC, media SSRC
PACK_PLI = struct.Struct("!BBHLL").pack
PAYLOAD_TYPES = {kind: codec.payloadType for kind, codec in CODECS.items()}
KINDS = {pt: kind for kind, pt in PAYLOAD_TYPES.items()}


def vp8_keyframe(payload: bytes) -> bool:
    """Whether a VP8 RTP payload starts a keyframe (first partition, P bit clear)."""
    try:
        descriptor, rest = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return False
    return bool(descriptor.partition_start and descriptor.partition_id == 0 and rest) and not (
        rest[0] & 0x01
    )


# -- the home node's side ----------------------------------------------------------------------


class RelaySink(asyncio.DatagramProtocol):
    """What the home node sends one serving node: the room's frames as RTP over UDP to
    ``address``; the RTCP PLIs that come back ask the encoder for a keyframe."""

    def __init__(
        self, node: str, address: tuple[str, int], ssrc: dict[str, int], on_keyframe: Any
    ) -> None:
        self.node = node
        self.address = address
        self.ssrc = dict(ssrc)
        self.on_keyframe = on_keyframe
        self.viewers = 0
        self.renewed_at = time.monotonic()
        self.sequence = {"video": random_sequence_number(), "audio": random_sequence_number()}
        self.transport: asyncio.DatagramTransport | None = None
        self.stats = {"frames": 0, "packets": 0, "octets": 0, "plis": 0}

    async def open(self) -> RelaySink:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, remote_addr=self.address)
        return self

    def same(self, address: tuple[str, int], ssrc: dict[str, int]) -> bool:
        return self.address == address and self.ssrc == ssrc

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 12 and data[1] == 206 and data[0] & 0x1F == 1:
            self.stats["plis"] += 1
            self.on_keyframe()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the serving node is not listening (yet, or any more)
        pass

    def _send(self, kind: str, payloads: list[bytes], timestamp: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        payload_type, ssrc = PAYLOAD_TYPES[kind], self.ssrc[kind]
        sequence = self.sequence[kind]
        last = len(payloads) - 1
        for index, payload in enumerate(payloads):
            header = PACK_HEADER(
                0x80,
                payload_type | 0x80 if index == last else payload_type,
                sequence,
                timestamp & 0xFFFFFFFF,
                ssrc,
            )
            transport.sendto(header + payload)
            sequence = (sequence + 1) & 0xFFFF
            self.stats["octets"] += len(payload)
        self.sequence[kind] = sequence
        self.stats["frames"] += 1
        self.stats["packets"] += len(payloads)

    def video(self, payloads: list[bytes], timestamp: int, keyframe: bool) -> None:
        self._send("video", payloads, timestamp)

    def audio(self, payloads: list[bytes], timestamp: int, keyframe: bool) -> None:
        self._send("audio", payloads, timestamp)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- the serving node's side -------------------------------------------------------------------


class RelayedRtpFanout(RtpFanout):
    """An ``RtpFanout`` fed by a relay instead of an encoder."""

    def __init__(self, relayed: RelayedBroadcast, kind: str, *, queue_size: int = 4) -> None:
        super().__init__(None, kind=kind, queue_size=queue_size)
        self.relayed = relayed

    def request_keyframe(self) -> None:
        self.relayed.request_keyframe()

    def _stop_source(self) -> None:
        self.relayed.viewers_changed()


class _Assembly:
    """The packets of the frame being received, for one kind."""

    __slots__ = ("timestamp", "next_sequence", "payloads", "broken", "need_keyframe")

    def __init__(self, kind: str) -> None:
        self.timestamp: int | None = None
        self.next_sequence: int | None = None
        self.payloads: list[bytes] = []
        self.broken = False
        self.need_keyframe = kind == "video"


@dataclass
class RelayedViewer:
    viewer_id: str
    pc: RTCPeerConnection
    video: ViewerStream
    audio: ViewerStream | None


def _codecs(kind: str, mime_type: str):
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType == mime_type]


class RelayedBroadcast(asyncio.DatagramProtocol):
    """One room's composite on a node that is not its home: received once from the home node,
    fanned out to this node's viewers. Lives while the node has viewers of the room."""

    def __init__(
        self,
        public_id: str,
        *,
        node: str,
        home_channel: str,
        host: str,
        viewer_limit: int,
        ice_servers: list[Any] | None = None,
        ice_transport_policy: str = "all",
        on_idle: Any = None,
    ) -> None:
        self.public_id = public_id
        self.node = node
        self.home_channel = home_channel
        self.host = host
        self.viewer_limit = viewer_limit
        self.ice_servers = list(ice_servers or [])
        self.ice_transport_policy = RTCIceTransportPolicy(ice_transport_policy)
        self.on_idle = on_idle
        self.viewers: dict[str, RelayedViewer] = {}
        self.ssrc = {"video": random32(), "audio": random32()}
        self._video_rtp = RelayedRtpFanout(self, "video")
        self._audio_rtp = RelayedRtpFanout(self, "audio", queue_size=10)
        self._rtp = {"video": self._video_rtp, "audio": self._audio_rtp}
        self._assembly = {"video": _Assembly("video"), "audio": _Assembly("audio")}
        self.transport: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] | None = None
        self.home_address: Any = None
        self.last_packet_at = 0.0
        self._last_pli = 0.0
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = {"frames": 0, "packets": 0, "lost": 0, "plis": 0, "renewals": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def viewer_count(self) -> int:
        return len(self.viewers)

    async def start(self) -> None:
        """Bind the relay socket and ask the home node for the stream; raises BroadcastError
        when the home node refuses (not on air) or does not answer."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, 0))
        layer = get_channel_layer()
        reply_to = await layer.new_channel("relay-ready.")
        try:
            await self._ask(reply_to)
            reply = await asyncio.wait_for(layer.receive(reply_to), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            await self.stop()
            raise BroadcastError("the livestream's node did not answer") from None
        except Exception:
            await self.stop()
            raise
        if not reply.get("ok"):
            await self.stop()
            raise BroadcastError(reply.get("reason") or "this session is not being broadcast")
        self._renewer = loop.create_task(self._renew_forever(), name=f"relay-{self.public_id}")

    async def _ask(self, reply_to: str | None = None) -> None:
        message = {
            "type": "broadcast.relay",
            "public_id": self.public_id,
            "node": self.node,
            "address": list(self.address or ()),
            "ssrc": dict(self.ssrc),
            "viewers": self.viewer_count,
        }
        if reply_to:
            message["reply_to"] = reply_to
        await get_channel_layer().send(self.home_channel, message)
        self.stats["renewals"] += 1

    def _renew_soon(self) -> None:
        """Tell the home node the new viewer count now (its watch pages show the total)."""
        if self._closed or self._renewer is None or not self.viewers:
            return
        task = asyncio.ensure_future(self._ask())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _renew_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(RENEW_SECONDS)
            with contextlib.suppress(Exception):  # Redis away for a moment: the next one
                if self.stalled:
                    # Nothing comes: the room may have moved (its node died or drained). Ask
                    # the pool where it is now; the renewal starts the relay there.
                    self.home_channel = await aroom_node_channel(self.public_id)
                await self._ask()

    async def stop(self) -> None:
        """Close the viewers and the socket and tell the home node (best effort)."""
        if self._closed:
            return
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for viewer_id in list(self.viewers):
            await self.remove_viewer(viewer_id)
        await self._video_rtp.stop()
        await self._audio_rtp.stop()
        if self.transport is not None:
            self.transport.close()
        with contextlib.suppress(Exception):
            await get_channel_layer().send(
                self.home_channel,
                {
                    "type": "broadcast.unrelay",
                    "public_id": self.public_id,
                    "node": self.node,
                    # a newer relay of this node (a viewer came back at once) is not ended
                    "address": list(self.address or ()),
                },
            )

    def viewers_changed(self) -> None:
        """The last viewer of a kind left: with no viewer at all, the relay ends."""
        if not self._video_rtp.viewers and not self._audio_rtp.viewers and self.on_idle:
            self.on_idle(self)

    @property
    def stalled(self) -> bool:
        return time.monotonic() - self.last_packet_at > STALL_SECONDS

    # -- receiving ---------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.address = transport.get_extra_info("sockname")[:2]

    def error_received(self, exc: Exception) -> None:
        pass

    def request_keyframe(self) -> None:
        now = time.monotonic()
        if self.home_address is None or self.transport is None or self._closed:
            return
        if now - self._last_pli < PLI_MIN_INTERVAL:
            return
        self._last_pli = now
        self.stats["plis"] += 1
        self.transport.sendto(
            PACK_PLI(0x81, 206, 2, self.ssrc["video"], self.ssrc["video"]), self.home_address
        )

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12 or self._closed:
            return
        first, second, sequence, timestamp, ssrc = UNPACK_HEADER(data)
        kind = KINDS.get(second & 0x7F)
        if first >> 6 != 2 or kind is None or self.ssrc[kind] != ssrc:
            return
        self.home_address = addr
        self.last_packet_at = time.monotonic()
        self.stats["packets"] += 1
        payload = data[12 + 4 * (first & 0x0F) :]
        frame = self._assembly[kind]
        if frame.timestamp != timestamp:
            # a new frame; packets missing before it cost the frame(s) they belonged to
            if frame.payloads or (
                frame.next_sequence is not None and sequence != frame.next_sequence
            ):
                self._lost(frame, kind)
            frame.timestamp, frame.payloads, frame.broken = timestamp, [], False
        elif sequence != frame.next_sequence:
            frame.broken = True
        frame.next_sequence = (sequence + 1) & 0xFFFF
        frame.payloads.append(payload)
        if not second & 0x80:
            return
        payloads, frame.payloads = frame.payloads, []
        if frame.broken:
            frame.broken = False
            self._lost(frame, kind)
            return
        keyframe = kind == "video" and vp8_keyframe(payloads[0])
        if frame.need_keyframe:
            if not keyframe:
                self.request_keyframe()
                return
            frame.need_keyframe = False
        self.stats["frames"] += 1
        self._rtp[kind].send_payloads(payloads, timestamp, keyframe)

    def _lost(self, frame: _Assembly, kind: str) -> None:
        self.stats["lost"] += 1
        if kind == "video":
            # the frames after a lost one cannot be decoded: resume at a keyframe
            frame.need_keyframe = True
            self.request_keyframe()

    # -- viewers -----------------------------------------------------------------------------

    async def add_viewer(self, offer_sdp: str) -> tuple[str, str]:
        """Answer a viewer's offer; returns (viewer id, answer SDP). The viewer gets the relayed
        layer (the top of the home node's ladder) and does not move along the ladder.

        Raises ViewerLimitReached at the limit and BroadcastError for an offer that cannot
        receive this broadcast (malformed, or without VP8 video).
        """
        if self.transport is None or self._closed:
            raise BroadcastError("the relay has not started")
        if len(self.viewers) >= self.viewer_limit:
            raise ViewerLimitReached("this session has reached its WebRTC viewer limit")
        viewer_id = uuid.uuid4().hex
        pc, video, audio = await answer_viewer(
            offer_sdp,
            self._video_rtp,
            self._audio_rtp,
            ice_servers=self.ice_servers,
            ice_transport_policy=self.ice_transport_policy,
            on_closed=lambda: self.remove_viewer(viewer_id),
        )
        self.viewers[viewer_id] = RelayedViewer(viewer_id, pc, video, audio)
        self._renew_soon()
        return viewer_id, pc.localDescription.sdp

    async def remove_viewer(self, viewer_id: str) -> None:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return
        await discard_viewer(viewer.pc, viewer.video, viewer.audio)
        self._renew_soon()

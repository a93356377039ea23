"""A room's livestream: composite once, encode once per layer, send the same packets to every
viewer of a layer.

    members' tracks ──► CompositeVideoTrack ─► tee ─┬► layer 360p: EncodedFanout (VP8) ─► viewers
                                                    ├► layer 180p: EncodedFanout (VP8) ─► viewers
                                                    └► HlsWriter (H.264 per layer) ─► storage
                        AudioMixerTrack     ─► tee ─┬► EncodedFanout (Opus) ─► every viewer
                                                    └► HlsWriter (one AAC)

Viewers are receive-only ``RTCPeerConnection``s. Each frame is also packetised once per layer:
per viewer there is only an RTP header, SRTP and a socket write, done for all viewers of a layer
in one pass (``RtpFanout``); a viewer whose socket cannot keep up skips frames, nobody waits for
it. Each viewer starts on the top layer and moves down and up the ladder as its receiver reports
loss and estimated bandwidth (``ladder``, ``adapt``); the audio-only layer stops its video.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from streaming.node.broadcast.adapt import AdaptConfig, LayerPolicy
from streaming.node.broadcast.audio import AudioMixerTrack
from streaming.node.broadcast.compositor import CompositeVideoTrack
from streaming.node.broadcast.hls import HlsWriter
from streaming.node.broadcast.ladder import EncodedLayer, Layer, check_ladder, default_ladder
from streaming.node.broadcast.rtp_fanout import RtpFanout, ViewerStream
from streaming.node.broadcast.scene import BroadcastMember, BroadcastState, Scene
from streaming.node.broadcast.tee import FrameTee
from streaming.node.internals import aiortc_private
from streaming.node.media.fanout import EncodedFanout

logger = logging.getLogger(__name__)


class BroadcastError(Exception):
    """A viewer could not be added; the message is safe to show to that viewer."""


class ViewerLimitReached(BroadcastError):
    """This node serves as many WebRTC viewers as it may; the viewer should use HLS."""


@dataclass
class Viewer:
    viewer_id: str
    pc: RTCPeerConnection
    video: ViewerStream
    audio: ViewerStream | None
    policy: LayerPolicy
    # the video bitrate sent to this viewer, measured about once a second
    rate: float = 0.0
    _rate_sample: tuple[float, int] = field(default=(0.0, 0))

    @property
    def layer_index(self) -> int:
        return self.policy.index

    def measure_rate(self, now: float) -> float:
        then, octets = self._rate_sample
        if now - then >= 1.0:
            if then:
                self.rate = (self.video.octets_sent - octets) * 8 / (now - then)
            self._rate_sample = (now, self.video.octets_sent)
        return self.rate


def _codecs(kind: str, mime_type: str):
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType == mime_type]


async def answer_viewer(
    offer_sdp: str,
    video_rtp: RtpFanout,
    audio_rtp: RtpFanout,
    *,
    ice_servers: list[RTCIceServer],
    ice_transport_policy: RTCIceTransportPolicy,
    on_closed: Callable[[], Awaitable[None]],
) -> tuple[RTCPeerConnection, ViewerStream, ViewerStream | None]:
    """Answer a receive-only viewer's offer from two ``RtpFanout``s (video, audio): the
    broadcast's on its home node, or a relayed copy's on another node. Returns the peer
    connection, with its answer set as the local description, and the viewer's streams.

    Raises BroadcastError for an offer that cannot receive the broadcast (malformed, or without
    VP8 video). ``on_closed`` runs when the connection fails or closes.
    """
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=ice_servers, iceTransportPolicy=ice_transport_policy)
    )
    video = audio = None
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" not in kinds:
            raise BroadcastError("the offer has no video to receive")
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                # The packets are VP8 already: that is the only codec this sender can offer.
                transceiver.setCodecPreferences(_codecs("video", "video/VP8"))
            elif transceiver.kind == "audio":
                transceiver.setCodecPreferences(_codecs("audio", "audio/opus"))
        video = video_rtp.add_viewer(pc)
        # A viewer that asked for no sound gets none.
        audio = audio_rtp.add_viewer(pc) if "audio" in kinds else None
        # PLI/FIR go to the encoder of whichever layer the viewer is on.
        aiortc_private.route_keyframe_requests(video.sender, video.request_keyframe)
        await pc.setLocalDescription(await pc.createAnswer())
    except BroadcastError:
        await discard_viewer(pc, video, audio)
        raise
    except Exception as exc:
        # aiortc raises ValueError / internal errors for SDP it cannot use.
        await discard_viewer(pc, video, audio)
        logger.info("refused a viewer offer: %s", exc)
        raise BroadcastError("the offer could not be answered") from exc
    if "VP8" not in pc.localDescription.sdp:
        await discard_viewer(pc, video, audio)
        raise BroadcastError("the viewer cannot receive VP8 video")

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState == "connected":
            # The first picture a viewer decodes must be a keyframe: ask now, not after the
            # viewer's PLI round trip.
            video.request_keyframe()
        elif pc.connectionState in ("failed", "closed"):
            await on_closed()

    return pc, video, audio


async def discard_viewer(pc: RTCPeerConnection, *streams: ViewerStream | None) -> None:
    for stream in streams:
        if stream is not None:
            stream.close()
    await pc.close()


class Broadcast:
    def __init__(
        self,
        scene: Scene,
        *,
        width: int = 640,
        height: int = 360,
        fps: int = 15,
        viewer_limit: int = 200,
        ice_servers: list[RTCIceServer] | None = None,
        ice_transport_policy: str = "all",
        video_bitrate: int | None = None,
        gop_seconds: float = 1.0,
        hls_directory: Path | None = None,
        keep_replay: bool = False,
        ladder: Sequence[Layer] | None = None,
        adapt: AdaptConfig | None = None,
    ) -> None:
        self.scene = scene
        self.width = width
        self.height = height
        self.fps = fps
        self.viewer_limit = viewer_limit
        # An explicit empty list: aiortc's default STUN server is a public host.
        self.ice_servers = list(ice_servers or [])
        self.ice_transport_policy = RTCIceTransportPolicy(ice_transport_policy)
        self.video_bitrate = video_bitrate
        self.gop_seconds = gop_seconds
        self.hls_directory = hls_directory
        self.keep_replay = keep_replay
        self.ladder = check_ladder(
            ladder or default_ladder(width, height, video_bitrate), width, height
        )
        self.adapt = adapt or AdaptConfig()
        # told (viewer id, its new layer) whenever a viewer moves along the ladder
        self.on_layer: Callable[[str, Layer], None] | None = None
        self.layers: list[EncodedLayer] = []
        self.viewers: dict[str, Viewer] = {}
        self.video: CompositeVideoTrack | None = None
        self.audio: AudioMixerTrack | None = None
        self.hls: HlsWriter | None = None
        self._video_fanout: EncodedFanout | None = None
        self._audio_fanout: EncodedFanout | None = None
        self._video_rtp: RtpFanout | None = None
        self._audio_rtp: RtpFanout | None = None
        self._tees: list[FrameTee] = []
        # serving nodes this broadcast's top layer is relayed to (``relay.RelaySink``), by node
        self.relays: dict[str, Any] = {}
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.video = CompositeVideoTrack(
            self.scene, width=self.width, height=self.height, fps=self.fps
        )
        self.audio = AudioMixerTrack(self.scene)
        video_tee, audio_tee = FrameTee(self.video), FrameTee(self.audio)
        self._tees = [video_tee, audio_tee]
        # Short queues all the way: frames that wait are delay every viewer sees, and a switch
        # to the slate reaches viewers only after what is queued before it. A layer that falls
        # behind drops frames here instead (two frames, about 130 ms at 15 fps), and each viewer
        # holds at most four encoded frames.
        self.layers = [
            EncodedLayer(layer, video_tee.branch(queue_size=2), gop_seconds=self.gop_seconds)
            for layer in self.ladder
            if layer.video
        ]
        self._video_fanout = self.layers[0].encoded
        self._video_rtp = self.layers[0].rtp
        self._audio_fanout = EncodedFanout(
            audio_tee.branch(queue_size=5), kind="audio", name="broadcast"
        )
        self._audio_rtp = RtpFanout(self._audio_fanout, queue_size=10)
        if self.hls_directory is not None:
            self.hls = HlsWriter(
                self.hls_directory,
                video=video_tee.branch(queue_size=30),
                audio=audio_tee.branch(queue_size=100),
                fps=self.fps,
                keep=self.keep_replay,
                ladder=self.ladder,
            )
            await self.hls.start()
        # The composite runs whether or not anyone watches over WebRTC: HLS needs it, and the
        # members' received tracks must be drained either way.
        for tee in self._tees:
            tee.start()

    async def stop(self, *, keep_replay: bool | None = None) -> Path | None:
        """End the broadcast; returns the replay directory when it is kept."""
        if not self._started:
            return None
        self._started = False
        for viewer_id in list(self.viewers):
            await self.remove_viewer(viewer_id)
        for node in list(self.relays):
            self.remove_relay(node)
        replay = None
        if self.hls is not None:
            keep = self.keep_replay if keep_replay is None else keep_replay
            replay = await self.hls.stop(keep=keep)
        for layer in self.layers:
            await layer.stop()
        if self._audio_rtp is not None:
            await self._audio_rtp.stop()
        if self._audio_fanout is not None:
            await self._audio_fanout.stop()
        for tee in self._tees:
            await tee.stop()
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()
        return replay

    def set_state(self, state: BroadcastState | str) -> None:
        """Go live, hold (slate and silence) or end; takes effect on the next frame."""
        state = BroadcastState(state)
        if state is self.scene.state:
            return
        self.scene.set_state(state)
        for layer in self.layers:
            # A clean switch: viewers get the new picture as a keyframe, not as a delta on the old.
            layer.request_keyframe()

    # -- relays to other nodes ---------------------------------------------------------------

    def add_relay(self, node: str, sink: Any) -> None:
        """Send the encoded composite (the top layer, and the audio) to another node too
        (``sink``: a ``relay.RelaySink``), replacing what went to that node before."""
        self.remove_relay(node)
        if self._video_rtp is None or self._audio_rtp is None:
            raise BroadcastError("the broadcast has not started")
        self.relays[node] = sink
        self._video_rtp.add_relay(sink.video)
        self._audio_rtp.add_relay(sink.audio)
        self.request_keyframe()

    def remove_relay(self, node: str) -> None:
        sink = self.relays.pop(node, None)
        if sink is None:
            return
        for rtp, relay in ((self._video_rtp, sink.video), (self._audio_rtp, sink.audio)):
            if rtp is not None:
                rtp.remove_relay(relay)
        sink.close()

    @property
    def relayed_viewers(self) -> int:
        return sum(sink.viewers for sink in self.relays.values())

    def request_keyframe(self) -> None:
        """A keyframe of the relayed (top) layer."""
        if self._video_fanout is not None:
            self._video_fanout.request_keyframe()

    def set_members(self, members: list[BroadcastMember]) -> None:
        self.scene.set_members(members)

    @property
    def state(self) -> BroadcastState:
        return self.scene.state

    @property
    def viewer_count(self) -> int:
        return len(self.viewers)

    @property
    def stats(self) -> dict:
        video_fanout = self._video_fanout.stats if self._video_fanout else {}
        return {
            "state": str(self.scene.state),
            "viewers": self.viewer_count,
            "relayed_viewers": self.relayed_viewers,
            "relays": len(self.relays),
            "frames_composed": self.video.frames_sent if self.video else 0,
            "video": dict(video_fanout),
            "video_rtp": dict(self._video_rtp.stats) if self._video_rtp else {},
            "hls_frames": self.hls.frames_written if self.hls else 0,
            "layers": self.layer_stats(),
        }

    def layer_stats(self) -> dict[str, dict[str, Any]]:
        """Per layer: frames encoded (once, however many viewers), viewers on it."""
        stats = {layer.name: layer.stats for layer in self.layers}
        for layer in self.ladder[len(self.layers) :]:
            stats[layer.name] = {
                "viewers": 0,
                "frames_encoded": 0,
                "encode_cpu_seconds": 0.0,
                "send_cpu_seconds": 0.0,
                "viewer_frames": 0,
            }
        for viewer in self.viewers.values():
            if viewer.layer_index >= len(self.layers):
                stats[self.ladder[viewer.layer_index].name]["viewers"] += 1
        return stats

    def viewer_layer(self, viewer_id: str) -> str:
        return self.ladder[self.viewers[viewer_id].layer_index].name

    # -- viewers -----------------------------------------------------------------------------

    async def add_viewer(self, offer_sdp: str, *, adaptive: bool = True) -> tuple[str, str]:
        """Answer a viewer's offer; returns (viewer id, answer SDP). The viewer starts on the top
        layer; ``adaptive``: it moves along the ladder as its link allows (else it stays there).

        Raises ViewerLimitReached at the limit and BroadcastError for an offer that cannot
        receive this broadcast (malformed, or without VP8 video).
        """
        if not self._started or self._video_rtp is None or self._audio_rtp is None:
            raise BroadcastError("the broadcast has not started")
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
        viewer = Viewer(
            viewer_id, pc, video, audio, LayerPolicy(len(self.ladder), config=self.adapt)
        )
        self.viewers[viewer_id] = viewer
        if adaptive and len(self.ladder) > 1:
            for stream in (video, audio):
                if stream is not None:
                    self._observe(viewer, stream)
        return viewer_id, pc.localDescription.sdp

    async def remove_viewer(self, viewer_id: str) -> None:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return
        await discard_viewer(viewer.pc, viewer.video, viewer.audio)

    # -- the ladder ------------------------------------------------------------------------------

    def set_viewer_layer(self, viewer_id: str, index: int) -> None:
        """Put a viewer on ``ladder[index]`` (its policy decides this as its link changes)."""
        viewer = self.viewers[viewer_id]
        viewer.policy.index = index
        viewer.policy.reason = ""
        self._apply_layer(viewer)

    def _apply_layer(self, viewer: Viewer) -> None:
        index = viewer.layer_index
        if index < len(self.layers):
            self.layers[index].rtp.move(viewer.video)
        else:
            viewer.video.park()
        logger.info(
            "viewer %s now on layer %s (%s)",
            viewer.viewer_id,
            self.ladder[index].name,
            viewer.policy.reason or "set",
        )
        if self.on_layer is not None:
            self.on_layer(viewer.viewer_id, self.ladder[index])

    def _observe(self, viewer: Viewer, stream: ViewerStream) -> None:
        """Feed the viewer's policy with what its receiver reports about ``stream``."""

        def observe(packet: Any) -> None:
            if viewer.viewer_id not in self.viewers:
                return
            on_video = viewer.layer_index < len(self.layers)
            if stream.kind == "video" and not on_video:
                return  # a parked stream's reports say nothing about the link
            now = time.monotonic()
            decision = None
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for report in packet.reports:
                    if report.ssrc == stream.ssrc:
                        decision = viewer.policy.report(now, loss=report.fraction_lost / 256)
            elif (
                isinstance(packet, RtcpPsfbPacket)
                and packet.fmt == RTCP_PSFB_APP
                and stream.kind == "video"
            ):
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if stream.ssrc in ssrcs:
                    rate = viewer.measure_rate(now)
                    decision = viewer.policy.report(now, remb=bitrate, rate=rate)
            if stream.kind == "video":
                viewer.measure_rate(now)
            if decision is not None:
                self._apply_layer(viewer)

        aiortc_private.observe_rtcp(stream.sender, observe)

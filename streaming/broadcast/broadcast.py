"""A room's livestream: composite once, encode once, send the same packets to every viewer.

    members' tracks ──► CompositeVideoTrack ─► tee ─► EncodedFanout (VP8) ─► viewer 1..N
                        AudioMixerTrack     ─► tee ─► EncodedFanout (Opus) ─► viewer 1..N
                                                 └──► HlsWriter (H.264 + AAC) ─► media storage

Viewers are receive-only ``RTCPeerConnection``s. Each frame is also packetised once: per viewer
there is only an RTP header, SRTP and a socket write, done for all viewers in one pass
(``RtpFanout``); a viewer whose socket cannot keep up skips frames, nobody waits for it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from streaming.broadcast.audio import AudioMixerTrack
from streaming.broadcast.compositor import CompositeVideoTrack
from streaming.broadcast.hls import HlsWriter
from streaming.broadcast.rtp_fanout import RtpFanout, ViewerStream
from streaming.broadcast.scene import BroadcastMember, BroadcastState, Scene
from streaming.broadcast.tee import FrameTee
from streaming.media.fanout import EncodedFanout, route_keyframe_requests

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


def _codecs(kind: str, mime_type: str):
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType == mime_type]


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
        video_bitrate: int | None = None,
        gop_seconds: float = 1.0,
        hls_directory: Path | None = None,
        keep_replay: bool = False,
    ) -> None:
        self.scene = scene
        self.width = width
        self.height = height
        self.fps = fps
        self.viewer_limit = viewer_limit
        # An explicit empty list: aiortc's default STUN server is a public host.
        self.ice_servers = list(ice_servers or [])
        self.video_bitrate = video_bitrate
        self.gop_seconds = gop_seconds
        self.hls_directory = hls_directory
        self.keep_replay = keep_replay
        self.viewers: dict[str, Viewer] = {}
        self.video: CompositeVideoTrack | None = None
        self.audio: AudioMixerTrack | None = None
        self.hls: HlsWriter | None = None
        self._video_fanout: EncodedFanout | None = None
        self._audio_fanout: EncodedFanout | None = None
        self._video_rtp: RtpFanout | None = None
        self._audio_rtp: RtpFanout | None = None
        self._tees: list[FrameTee] = []
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
        # to the slate reaches viewers only after what is queued before it. A fanout that falls
        # behind drops frames here instead (two frames, about 130 ms at 15 fps), and each viewer
        # holds at most four encoded frames.
        self._video_fanout = EncodedFanout(
            video_tee.branch(queue_size=2),
            kind="video",
            bitrate=self.video_bitrate,
            gop_seconds=self.gop_seconds,
            queue_size=4,
            name="broadcast",
        )
        self._audio_fanout = EncodedFanout(
            audio_tee.branch(queue_size=5), kind="audio", name="broadcast"
        )
        self._video_rtp = RtpFanout(self._video_fanout)
        self._audio_rtp = RtpFanout(self._audio_fanout, queue_size=10)
        if self.hls_directory is not None:
            self.hls = HlsWriter(
                self.hls_directory,
                video=video_tee.branch(queue_size=30),
                audio=audio_tee.branch(queue_size=100),
                width=self.width,
                height=self.height,
                fps=self.fps,
                keep=self.keep_replay,
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
        replay = None
        if self.hls is not None:
            keep = self.keep_replay if keep_replay is None else keep_replay
            replay = await self.hls.stop(keep=keep)
        for rtp in (self._video_rtp, self._audio_rtp):
            if rtp is not None:
                await rtp.stop()
        for fanout in (self._video_fanout, self._audio_fanout):
            if fanout is not None:
                await fanout.stop()
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
        if self._video_fanout is not None:
            # A clean switch: viewers get the new picture as a keyframe, not as a delta on the old.
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
            "frames_composed": self.video.frames_sent if self.video else 0,
            "video": dict(video_fanout),
            "video_rtp": dict(self._video_rtp.stats) if self._video_rtp else {},
            "hls_frames": self.hls.frames_written if self.hls else 0,
        }

    # -- viewers -----------------------------------------------------------------------------

    async def add_viewer(self, offer_sdp: str) -> tuple[str, str]:
        """Answer a viewer's offer; returns (viewer id, answer SDP).

        Raises ViewerLimitReached at the limit and BroadcastError for an offer that cannot
        receive this broadcast (malformed, or without VP8 video).
        """
        if not self._started or self._video_rtp is None or self._audio_rtp is None:
            raise BroadcastError("the broadcast has not started")
        if len(self.viewers) >= self.viewer_limit:
            raise ViewerLimitReached("this session has reached its WebRTC viewer limit")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        viewer_id = uuid.uuid4().hex
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
            video = self._video_rtp.add_viewer(pc)
            # A viewer that asked for no sound gets none.
            audio = self._audio_rtp.add_viewer(pc) if "audio" in kinds else None
            route_keyframe_requests(video.sender, self._video_fanout)
            await pc.setLocalDescription(await pc.createAnswer())
        except BroadcastError:
            await self._discard(pc, video, audio)
            raise
        except Exception as exc:
            # aiortc raises ValueError / internal errors for SDP it cannot use.
            await self._discard(pc, video, audio)
            logger.info("refused a viewer offer: %s", exc)
            raise BroadcastError("the offer could not be answered") from exc
        if "VP8" not in pc.localDescription.sdp:
            await self._discard(pc, video, audio)
            raise BroadcastError("the viewer cannot receive VP8 video")

        self.viewers[viewer_id] = Viewer(viewer_id, pc, video, audio)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                # The first picture a viewer decodes must be a keyframe: ask now, not after the
                # viewer's PLI round trip.
                video.request_keyframe()
            elif pc.connectionState in ("failed", "closed"):
                await self.remove_viewer(viewer_id)

        return viewer_id, pc.localDescription.sdp

    async def remove_viewer(self, viewer_id: str) -> None:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return
        await self._discard(viewer.pc, viewer.video, viewer.audio)

    @staticmethod
    async def _discard(pc: RTCPeerConnection, *streams: ViewerStream | None) -> None:
        for stream in streams:
            if stream is not None:
                stream.close()
        await pc.close()

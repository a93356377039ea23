"""An aiortc peer that publishes synthetic media and records what it receives.

It joins a media node like the room page does (publish audio + video, then pairs of receive-only
slots) and, for every slot, keeps what came in: colours, frame counters, audio energy and pitch.
Tests assert on that content; the benchmarks time it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming.node.internals import aiortc_private
from streaming.node.media.synthetic import (
    SyntheticVideoTrack,
    ToneAudioTrack,
    audio_samples,
    closest_colour,
    dominant_frequency,
    read_counter,
)


@dataclass
class ReceivedStream:
    """What arrived on one slot's m-line."""

    mid: str
    kind: str
    frames: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    colours: Counter[str] = field(default_factory=Counter)
    recent_colours: deque[str] = field(default_factory=lambda: deque(maxlen=10))
    colour_log: list[str] = field(default_factory=list)
    counters: list[int] = field(default_factory=list)
    energy: float = 0.0
    recent_samples: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=25))
    recent_rms: deque[float] = field(default_factory=lambda: deque(maxlen=10))

    def mark(self) -> dict[str, Any]:
        """A snapshot to compare against later (``since``)."""
        return {
            "frames": self.frames,
            "counters": len(self.counters),
            "colours": len(self.colour_log),
        }

    def frames_since(self, mark: dict[str, Any]) -> int:
        return self.frames - mark["frames"]

    def counters_since(self, mark: dict[str, Any]) -> list[int]:
        return self.counters[mark["counters"] :]

    def colours_since(self, mark: dict[str, Any]) -> set[str]:
        return set(self.colour_log[mark["colours"] :])

    @property
    def colour(self) -> str | None:
        """The colour of most of the last few frames."""
        if not self.recent_colours:
            return None
        return Counter(self.recent_colours).most_common(1)[0][0]

    def frequency(self) -> float:
        if not self.recent_samples:
            return 0.0
        return dominant_frequency(np.concatenate(list(self.recent_samples)))

    def loudness(self) -> float:
        return float(np.mean(self.recent_rms)) if self.recent_rms else 0.0


class ProbePeer:
    """One simulated room member."""

    def __init__(
        self,
        *,
        colour: str = "red",
        tone: float = 440.0,
        width: int = 320,
        height: int = 180,
        fps: float = 15,
        slots: int = 3,
        ice_servers: Iterable[RTCIceServer] = (),
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        analyse: bool = True,
        receive_video_codec: str | None = None,
        capture_encoded: bool = False,
    ) -> None:
        # MAX_BUNDLE: see MediaNode._connect, the same aiortc pitfall applies to the offerer
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.video = video or SyntheticVideoTrack(colour, width=width, height=height, fps=fps)
        self.audio = audio or ToneAudioTrack(tone)
        self.slots = slots
        self.analyse = analyse
        self.receive_video_codec = receive_video_codec
        self.capture_encoded = capture_encoded
        # mid -> the encoded video frames received on that slot, as depacketised
        self.encoded: dict[str, list[bytes]] = {}
        self.streams: dict[str, ReceivedStream] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.offered_at: float | None = None

    async def offer(self) -> str:
        self.pc.addTransceiver(self.audio, direction="sendonly")
        self.pc.addTransceiver(self.video, direction="sendonly")
        for _ in range(self.slots):
            self.pc.addTransceiver("audio", direction="recvonly")
            video = self.pc.addTransceiver("video", direction="recvonly")
            if self.receive_video_codec:
                video.setCodecPreferences(
                    [
                        c
                        for c in RTCRtpReceiver.getCapabilities("video").codecs
                        if c.mimeType.lower() in (self.receive_video_codec.lower(), "video/rtx")
                    ]
                )
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        if self.capture_encoded:
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "video" and transceiver.direction == "recvonly":
                    frames = self.encoded.setdefault(str(transceiver.mid), [])
                    aiortc_private.set_decoder_queue(transceiver.receiver, _CapturingQueue(frames))
        self.offered_at = time.monotonic()
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next((t.mid for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        stream = ReceivedStream(mid=str(mid), kind=track.kind)
        self.streams[stream.mid] = stream
        self._tasks.append(asyncio.ensure_future(self._read(track, stream)))

    async def _read(self, track: MediaStreamTrack, stream: ReceivedStream) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if stream.first_frame_at is None:
                    stream.first_frame_at = now
                stream.last_frame_at = now
                stream.frames += 1
                if not self.analyse:
                    continue
                if stream.kind == "video":
                    colour = closest_colour(frame)
                    stream.colours[colour] += 1
                    stream.recent_colours.append(colour)
                    stream.colour_log.append(colour)
                    stream.counters.append(read_counter(frame))
                else:
                    samples = audio_samples(frame)
                    rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
                    stream.energy += rms
                    stream.recent_rms.append(rms)
                    stream.recent_samples.append(samples)

    def stream(self, mid: str | None) -> ReceivedStream | None:
        return self.streams.get(str(mid)) if mid is not None else None

    def slot_streams(
        self, layout: list[dict[str, Any]]
    ) -> dict[str, tuple[ReceivedStream | None, ReceivedStream | None]]:
        """member id -> (audio stream, video stream) according to the node's layout."""
        return {
            entry["member"]: (self.stream(entry["audio_mid"]), self.stream(entry["video_mid"]))
            for entry in layout
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


class _CapturingQueue(queue.Queue):
    """A receiver's decoder queue that also keeps each completed (still encoded) frame."""

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__()
        self.frames = frames

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        if item is not None:
            self.frames.append(bytes(item[1].data))
        super().put(item, *args, **kwargs)


async def wait_until(condition: Any, *, within: float = 8.0, step: float = 0.05) -> Any:
    """Poll ``condition()`` until it is truthy or ``within`` seconds passed; return its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(step)

"""The demo's showcase hearing (``DEMO_SHOWCASE``, set by ``make demo``): a live public hearing
whose room has members from the start, so its watch page plays a real session.

The members are synthetic publishers: each an aiortc peer with a picture of its role that moves
(a sliding bar and the frame counter's cells) and a voice-like sound (a low tone in syllables,
the three members taking turns). They enter the room like a member's socket does, through the
director's ``room.enter`` and ``room.offer``, with a channel of their own for the answers, so the
node, the station and the room's other members see ordinary members. Only this hearing gets
them; the other live hearings of the demo stay free for a newcomer to join.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import math
import time
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame
from channels.db import database_sync_to_async
from django.conf import settings

from streaming.broadcast.selectors import showcase_hearing_id
from streaming.plane import aroom_node_channel, node_channel

from .broadcast.overlay import blend, render_text
from .broadcast.synthetic import AUDIO_RATE, VIDEO_TIME_BASE

logger = logging.getLogger(__name__)

# (room role, label, picture colour, voice pitch in Hz)
MEMBERS = (
    ("expert", "调解员", (52, 92, 160), 120.0),
    ("applicant", "申请人", (46, 128, 84), 210.0),
    ("respondent", "被申请人", (150, 88, 40), 170.0),
)
TURN_SECONDS = 4.0
WIDTH, HEIGHT, FPS = 320, 180, 10

_started: dict[str, ShowcaseRoom] = {}


class RolePictureTrack(MediaStreamTrack):
    """A camera-like picture: the role's name on its colour, a bar sliding across, a counter."""

    kind = "video"

    def __init__(self, label: str, colour: tuple[int, int, int], *, phase: float = 0.0) -> None:
        super().__init__()
        base = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        base[:] = colour
        text = render_text(label, size=HEIGHT // 6, background=(0, 0, 0, 110), padding=6)
        blend(base, text, (WIDTH - text.shape[1]) // 2, HEIGHT // 4)
        self._base = base
        self._phase = phase
        self.frames = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self.frames += 1
            wait = self._start + self.frames / FPS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        rgb = self._base.copy()
        x = int((math.sin(self.frames / FPS * 1.3 + self._phase) + 1) / 2 * (WIDTH - 40))
        rgb[HEIGHT * 3 // 4 : HEIGHT * 3 // 4 + 12, x : x + 40] = 240
        for bit in range(12):  # the frame counter, as cells along the bottom
            on = (self.frames >> (11 - bit)) & 1
            rgb[HEIGHT - 10 :, bit * WIDTH // 12 : (bit + 1) * WIDTH // 12] = 230 if on else 30
        frame = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = int(self.frames * 90000 / FPS)
        frame.time_base = VIDEO_TIME_BASE
        return frame


class VoiceLikeTrack(MediaStreamTrack):
    """A low pitch with a few harmonics in syllables (about four a second), spoken in turns:
    member ``turn`` of ``turns`` speaks for ``TURN_SECONDS`` while the others are silent."""

    kind = "audio"

    def __init__(self, pitch: float, *, turn: int, turns: int) -> None:
        super().__init__()
        self.pitch = pitch
        self.turn = turn
        self.turns = turns
        self._samples = 960
        self._index = 0
        self._start: float | None = None

    def speaking(self, seconds: float) -> bool:
        return int(seconds // TURN_SECONDS) % self.turns == self.turn

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._index += 1
            wait = self._start + self._index * self._samples / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        first = self._index * self._samples
        t = np.arange(first, first + self._samples) / AUDIO_RATE
        if self.speaking(first / AUDIO_RATE):
            # the pitch glides a little, syllables rise and fall
            pitch = self.pitch * (1 + 0.08 * np.sin(2 * math.pi * 0.7 * t))
            phase = 2 * math.pi * np.cumsum(pitch) / AUDIO_RATE
            wave = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4))
            envelope = np.clip(np.sin(2 * math.pi * 2.1 * t), 0, None) ** 0.6
            samples = 0.18 * 32767 * envelope * wave / 2
        else:
            samples = np.zeros(self._samples)
        frame = AudioFrame.from_ndarray(
            samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = first
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class ShowcaseMember:
    """One synthetic member: a peer connection and a channel for the director's replies."""

    def __init__(self, public_id: str, role: str, label: str, video: Any, audio: Any) -> None:
        self.public_id = public_id
        self.member_id = f"demo-{role}"
        self.role = role
        self.label = label
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc.addTransceiver(audio, direction="sendonly")
        self.pc.addTransceiver(video, direction="sendonly")
        self.channel = ""
        self._reader: asyncio.Task[None] | None = None

    def message(self, type_: str, **data: Any) -> dict[str, Any]:
        return {
            "type": type_,
            "public_id": self.public_id,
            "member": self.member_id,
            "reply_to": self.channel,
            **data,
        }

    async def join(self, director: Any) -> None:
        layer = director.layer
        self.channel = await layer.new_channel("showcase.")
        answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read(layer, answered))
        await director.enter(
            self.message(
                "room.enter", role=self.role, label=self.label, record=False, admitted=True
            )
        )
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await director.offer(
            self.message(
                "room.offer", offer=self.pc.localDescription.sdp, reconnect=False, ref="demo"
            )
        )
        sdp = await asyncio.wait_for(answered, timeout=30)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def _read(self, layer: Any, answered: asyncio.Future[str]) -> None:
        """Drain the replies (the room tells every member of every change); keep the answer."""
        while True:
            message = await layer.receive(self.channel)
            frame = message.get("frame") or {}
            if frame.get("type") == "answer" and not answered.done():
                answered.set_result(frame["sdp"])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


class ShowcaseRoom:
    def __init__(self, public_id: str) -> None:
        self.public_id = public_id
        self.members: list[ShowcaseMember] = []

    async def start(self, director: Any) -> None:
        for turn, (role, label, colour, pitch) in enumerate(MEMBERS):
            member = ShowcaseMember(
                self.public_id,
                role,
                label,
                RolePictureTrack(label, colour, phase=turn * 2.0),
                VoiceLikeTrack(pitch, turn=turn, turns=len(MEMBERS)),
            )
            self.members.append(member)
            await member.join(director)

    async def stop(self) -> None:
        for member in self.members:
            await member.close()
        self.members.clear()


async def ensure_showcase(director: Any, *, node_id: str | None = None) -> ShowcaseRoom | None:
    """Seat the synthetic members in the showcase hearing once (``DEMO_SHOWCASE`` only), on the
    node of the pool that holds its room (``node_id``: this node's)."""
    if not settings.DEMO_SHOWCASE:
        return None
    public_id = await database_sync_to_async(showcase_hearing_id)()
    if public_id is None or public_id in _started:
        return _started.get(public_id) if public_id else None
    if node_id and await aroom_node_channel(public_id) != node_channel(node_id):
        return None  # another node of the pool holds this hearing's room
    room = _started[public_id] = ShowcaseRoom(public_id)
    try:
        await room.start(director)
    except Exception:
        logger.exception("the showcase hearing's members could not join")
        _started.pop(public_id, None)
        with contextlib.suppress(Exception):
            await room.stop()
        return None
    logger.info("showcase hearing %s: %d members in the room", public_id, len(room.members))
    return room


async def stop_showcase() -> None:
    for room in list(_started.values()):
        await room.stop()
    _started.clear()

"""Helpers shared by the broadcast tests: a real aiortc viewer and the members of a room."""

import asyncio
import contextlib
from collections import deque

import numpy as np
import skimage.data
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streaming.node.broadcast.scene import BroadcastMember
from streaming.node.broadcast.synthetic import SyntheticVideoTrack, ToneAudioTrack

RED, GREEN, BLUE = (200, 40, 40), (40, 200, 40), (40, 40, 200)


def face_picture() -> np.ndarray:
    # A public-domain NASA portrait bundled with scikit-image, cropped to 16:9 around the face.
    return skimage.data.astronaut()[:288]


def three_members(*, face_for=(), show_face=()) -> list[BroadcastMember]:
    colours = {"mediator": RED, "applicant": GREEN, "respondent": BLUE}
    tones = {"mediator": 330.0, "applicant": 550.0, "respondent": 770.0}
    members = []
    for role, colour in colours.items():
        image = face_picture() if role in face_for else None
        members.append(
            BroadcastMember(
                member_id=role,
                role=role,
                video=SyntheticVideoTrack(colour, image=image),
                audio=ToneAudioTrack(tones[role]),
                show_face=role in show_face,
                name="林志远" if role == "mediator" else "",
            )
        )
    return members


class Viewer:
    def __init__(self, pc, tracks):
        self.pc = pc
        self.tracks = tracks
        # Audio is drained continuously (as a player would) so that what the test looks at is
        # what plays now, not frames queued while it was busy with the picture.
        self.loudness = deque(maxlen=50)
        self._drain = asyncio.ensure_future(self._drain_audio())

    async def _drain_audio(self):
        with contextlib.suppress(MediaStreamError):
            while True:
                samples = (await self.tracks["audio"].recv()).to_ndarray()
                self.loudness.append(float(np.abs(samples).mean()))

    async def close(self):
        self._drain.cancel()
        await self.pc.close()

    async def frame(self):
        return await asyncio.wait_for(self.tracks["video"].recv(), 10)

    async def rgb(self):
        return (await self.frame()).to_ndarray(format="rgb24")


async def watch(broadcast, *, adaptive: bool = False) -> Viewer:
    """Connect a receive-only aiortc viewer to ``broadcast`` and wait for its tracks. It stays on
    the top layer unless ``adaptive``: a viewer in the test's own busy process would report its
    own lateness as a slow link (test_broadcast_ladder.py puts its viewer behind a real one)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tracks = {}
    both = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track):
        tracks[track.kind] = track
        if len(tracks) == 2 and not both.done():
            both.set_result(None)

    await pc.setLocalDescription(await pc.createOffer())
    _, answer = await broadcast.add_viewer(pc.localDescription.sdp, adaptive=adaptive)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.wait_for(both, 10)
    return Viewer(pc, tracks)


def tile(rgb: np.ndarray, rect) -> np.ndarray:
    return rgb[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width]

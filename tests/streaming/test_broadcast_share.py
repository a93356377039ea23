"""A screen shared in the room reaches the livestream: a member of a real room (aiortc peers on the
media node) puts their screen on their video sender in place of the camera, the mediator puts it
on air, and the viewers' decoded picture shows that screen, large, from the member's own pixels.

The sharing peer behaves as Chromium does with a screen: a still document sends no picture until
the encoder is asked for a keyframe, and the sender pads on its RTX SSRC meanwhile (bandwidth
probing while the screen's output stays below the estimate). The livestream starts decoding the
member's video when the share goes on air, from a keyframe it asks for with a PLI: sent to the
SSRC a packet last came from, the RTX one, that PLI reached nobody and the screen's tile stayed
empty; and a still screen's picture, older than the camera's two seconds, was dropped as stale."""

import asyncio

import numpy as np
import pytest
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from streaming.node.broadcast.synthetic import SyntheticVideoTrack
from streaming.node.process import get_media_node, get_station, reset_station
from streaming.node.worker import reset_media_node
from streaming.selectors import room_member_id
from tests.factories import UserFactory, advance, make_case
from tests.streaming.broadcast_peers import GREEN, RED, tile, watch
from tests.streaming.probe import ProbePeer

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]

YELLOW, MAGENTA = (230, 210, 30), (200, 40, 200)


@pytest.fixture(autouse=True)
def station_settings(room_settings, tmp_path):
    room_settings.BROADCAST_HLS_ROOT = tmp_path / "hls"
    return room_settings


def screen_picture(width=640, height=360) -> np.ndarray:
    """A 'document' unlike any camera here: yellow on the left half, magenta on the right."""
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:, : width // 2] = YELLOW
    rgb[:, width // 2 :] = MAGENTA
    return rgb


class StillScreen(SyntheticVideoTrack):
    """A shared screen as a browser captures it: frames while it changes; once ``still()``, one
    frame only when the encoder is asked for a keyframe (Chromium repeats its last picture then)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.moving = True
        self.refreshes = 0
        self._wake = asyncio.Event()
        self._wake.set()

    def still(self) -> None:
        self.moving = False
        self._wake.clear()

    def refresh(self) -> None:
        self.refreshes += 1
        self._wake.set()

    async def recv(self):
        await self._wake.wait()
        if not self.moving:
            self._wake.clear()
        return await super().recv()


def share_screen(sender, screen: StillScreen) -> None:
    """Put ``screen`` on ``sender``; a keyframe request (PLI) makes a still screen send a frame."""
    sender.replaceTrack(screen)
    keyframe = sender._send_keyframe

    def keyframe_and_refresh() -> None:
        keyframe()
        screen.refresh()

    sender._send_keyframe = keyframe_and_refresh


async def pad_on_rtx(sender, stop: asyncio.Event) -> int:
    """Padding-only packets on ``sender``'s RTX SSRC, as a browser's bandwidth probes (aiortc
    sends none of its own); returns how many were sent."""
    payload_type = sender._RTCRtpSender__rtx_payload_type  # negotiated with the node's answer
    assert payload_type is not None, "no RTX negotiated"
    sent = 0
    while not stop.is_set():
        packet = RtpPacket(
            payload_type=payload_type, sequence_number=sent & 0xFFFF, ssrc=sender._rtx_ssrc
        )
        packet.padding_size = 200
        await sender.transport._send_rtp(packet.serialize(HeaderExtensionsMap()))
        sent += 1
        await asyncio.sleep(0.004)
    return sent


def shows(rgb, colour) -> bool:
    return bool(np.abs(rgb.reshape(-1, 3).mean(axis=0) - colour).max() < 40)


def shows_screen(rgb, rect) -> bool:
    """The screen's two halves where the composite puts the shared screen (above the stamp)."""
    picture = tile(rgb, rect)
    height, width = picture.shape[:2]
    band = picture[int(height * 0.2) : int(height * 0.6)]
    return shows(band[:, int(width * 0.1) : int(width * 0.4)], YELLOW) and shows(
        band[:, int(width * 0.6) : int(width * 0.9)], MAGENTA
    )


def test_a_shared_screen_put_on_air_is_in_the_livestream_picture():
    case = make_case(respondent=UserFactory())
    hearing = advance(case, "in_session")
    public_id = hearing.public_id
    applicant = case.parties.get(role="applicant").user
    ids = {
        "expert": room_member_id(public_id, case.expert.pk),
        "applicant": room_member_id(public_id, applicant.pk),
    }

    async def scenario():
        node = get_media_node()
        station = get_station()
        peers = {}
        for role, colour in (("expert", RED), ("applicant", GREEN)):
            peer = ProbePeer(video=SyntheticVideoTrack(colour), slots=1, analyse=False)
            await peer.accept(await node.join(public_id, ids[role], role, await peer.offer()))
            peers[role] = peer
        broadcast = await station.open(public_id)
        viewer = await watch(broadcast)
        camera_seen = False
        for _ in range(60):  # the applicant's camera is on air
            rgb = await viewer.rgb()
            layout = broadcast.video.layout()
            if ids["applicant"] in layout and shows(
                tile(rgb, layout[ids["applicant"]])[30:70, 60:200], GREEN
            ):
                camera_seen = True
                break

        # the page's screen share: the screen goes on the video sender in place of the camera
        screen = StillScreen(MAGENTA, width=640, height=360, image=screen_picture())
        sender = next(
            t.sender for t in peers["applicant"].pc.getTransceivers() if t.kind == "video"
        )
        share_screen(sender, screen)
        stop_padding = asyncio.Event()
        padding = asyncio.ensure_future(pad_on_rtx(sender, stop_padding))
        node.set_share(public_id, ids["applicant"], on_air=False)
        off_air = [await viewer.rgb() for _ in range(15)]  # 1 s off air
        # the document on the screen stops changing: only padding on the RTX SSRC arrives
        screen.still()
        off_air += [await viewer.rgb() for _ in range(15)]
        node.set_share(public_id, ids["applicant"], on_air=True)
        frames_to_screen = None
        for index in range(90):  # 6 s at 15 fps
            rgb = await viewer.rgb()
            layout = broadcast.video.layout()
            if shows_screen(rgb, layout[ids["applicant"]]):
                frames_to_screen = index
                break
        screen_frames = [await viewer.rgb() for _ in range(5)]
        # the document stays still for 4 s more: the livestream keeps showing it
        for _ in range(60):
            still_frames = await viewer.rgb()
        layout = broadcast.video.layout()
        stop_padding.set()
        padded = await padding
        await viewer.close()
        for peer in peers.values():
            await peer.close()
        await reset_station()
        await reset_media_node()
        return (
            camera_seen,
            off_air,
            frames_to_screen,
            screen_frames,
            still_frames,
            layout,
            padded,
            screen.refreshes,
        )

    (camera_seen, off_air, frames_to_screen, screen_frames, still, layout, padded, refreshes) = (
        asyncio.run(scenario())
    )

    assert camera_seen
    # off air the screen is never shown
    assert not any(shows_screen(rgb, layout[ids["applicant"]]) for rgb in off_air)
    assert frames_to_screen is not None, "the shared screen never reached the livestream"
    screen_tile, expert_tile = layout[ids["applicant"]], layout[ids["expert"]]
    assert screen_tile.width > 2 * expert_tile.width  # shown large
    assert all(shows_screen(rgb, screen_tile) for rgb in screen_frames)
    assert shows_screen(still, screen_tile)
    assert padded > 100  # the RTX SSRC was busy all along
    assert refreshes >= 1  # the still screen's picture came from a keyframe request

"""A livestream relayed to another node: viewers there get the home node's packets, encoded once."""

import asyncio
import re

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from streaming import pool
from streaming.node.broadcast.station import BroadcastStation
from streaming.node.internals import aiortc_private
from streaming.node.media.fanout import ENCODED_FRAMES
from streaming.node.process import get_station
from streaming.node.worker import ensure_inprocess_worker
from streaming.plane import node_channel
from tests.streaming.broadcast_peers import three_members
from tests.streaming.test_watch import live_hearing, stop_node

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def station_settings(room_settings, tmp_path):
    room_settings.BROADCAST_HLS_ROOT = tmp_path / "hls"
    return room_settings


class CapturingViewer:
    """A receive-only aiortc peer that keeps the payload of every VP8 packet it is handed, by
    VP8 picture id (the same frame carries the same picture id on every node)."""

    def __init__(self):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.tracks = {}
        self.frames: dict[int, list[bytes]] = {}
        self.vp8 = -1
        self.pc.on("track", lambda track: self.tracks.setdefault(track.kind, track))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        receiver = self.pc.getTransceivers()[0].receiver

        def capturing(handle):
            async def capture(packet, arrival_time_ms):
                if packet.payload_type != self.vp8 or len(packet.payload) < 4:
                    return await handle(packet, arrival_time_ms)
                picture_id = ((packet.payload[2] & 0x7F) << 8) | packet.payload[3]
                self.frames.setdefault(picture_id, []).append(packet.payload)
                await handle(packet, arrival_time_ms)

            return capture

        aiortc_private.wrap_rtp_handler(receiver, capturing)
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        self.vp8 = int(re.search(r"a=rtpmap:(\d+) VP8/90000", sdp).group(1))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def decoded(self, count: int) -> list:
        for _ in range(100):
            if "video" in self.tracks:
                break
            await asyncio.sleep(0.05)
        return [await asyncio.wait_for(self.tracks["video"].recv(), 10) for _ in range(count)]


def top_layer_encodes() -> int:
    """Frames the broadcast's top video layer (the one relayed) encoded in this process."""
    return ENCODED_FRAMES[(f"broadcast-{get_station_top_layer()}", "video")]


def get_station_top_layer() -> str:
    from streaming.node.broadcast.ladder import default_ladder

    return default_ladder(640, 360, None)[0].name


def same_frames(first: CapturingViewer, second: CapturingViewer) -> tuple[int, int]:
    """(frames both received completely, of which byte-identical)."""
    common = sorted(set(first.frames) & set(second.frames))[:-1]  # the last may be arriving
    equal = sum(1 for pid in common if first.frames[pid] == second.frames[pid])
    return len(common), equal


def test_a_viewer_on_another_node_gets_the_home_nodes_packets_and_nothing_is_encoded_twice():
    hearing, _ = live_hearing()
    public_id = hearing.public_id

    async def scenario():
        # the home node: this process's station, on its own channel
        await ensure_inprocess_worker()
        home = get_station()
        broadcast = await home.open(public_id)
        broadcast.set_members(three_members())
        serving = BroadcastStation(hls_root=None, viewer_limit=10)
        local, remote = CapturingViewer(), CapturingViewer()
        _, answer = await home.add_viewer(public_id, await local.offer())
        await local.answer(answer)
        _, answer = await serving.add_viewer(
            public_id,
            await remote.offer(),
            home=node_channel(pool.local_node_id()),
            here="serving-node",
        )
        await remote.answer(answer)
        encoded_before = top_layer_encodes()
        composed_before = broadcast.video.frames_sent
        frames = [await local.decoded(20), await remote.decoded(20)]
        encoded = top_layer_encodes() - encoded_before
        composed = broadcast.video.frames_sent - composed_before
        relayed = dict(serving.relayed[public_id].stats)
        for _ in range(50):
            counted = home.snapshot(public_id)["viewers"]
            if counted == 2:
                break
            await asyncio.sleep(0.05)
        compared = same_frames(local, remote)
        # the last viewer on the serving node leaving ends the relay there and on the home node
        viewer_id = next(iter(serving.relayed[public_id].viewers))
        await serving.remove_viewer(public_id, viewer_id)
        for _ in range(50):
            if not broadcast.relays:
                break
            await asyncio.sleep(0.05)
        relays_after = len(broadcast.relays)
        await local.pc.close()
        await remote.pc.close()
        await serving.shutdown()
        await stop_node()
        return frames, encoded, composed, relayed, counted, compared, relays_after

    frames, encoded, composed, relayed, counted, compared, relays_after = asyncio.run(scenario())

    assert all(len(f) == 20 for f in frames)
    common, equal = compared
    assert common >= 10
    assert equal == common
    # at most one encode per composed frame, for the home node's viewer and the relayed one
    # together (a loaded machine encodes fewer: the encoder's queue drops the oldest). The two
    # counters are read one after the other: frames composed just before the window and still
    # in the encoder's queue (four at most) are encoded inside it.
    assert 0 < encoded <= composed + 4
    assert relayed["frames"] > 0
    assert counted == 2
    assert relays_after == 0

"""Packetise once: what real aiortc viewers receive from an ``RtpFanout``."""

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streaming.node.broadcast.rtp_fanout import RtpFanout
from streaming.node.internals import aiortc_private
from streaming.node.media.fanout import EncodedFanout, route_keyframe_requests
from streaming.node.media.synthetic import SyntheticVideoTrack, closest_colour, read_counter

pytestmark = pytest.mark.media


class RecordingViewer:
    """A receive-only aiortc peer that keeps every RTP packet its receiver is handed (RTX
    included, before it is unwrapped) and decodes the frames."""

    def __init__(self, server, client, stream, track):
        self.server, self.client, self.stream, self.track = server, client, stream, track
        self.packets = []
        receiver = client.getTransceivers()[0].receiver
        self.receiver = receiver

        def recording(handle):
            async def record(packet, arrival_time_ms):
                self.packets.append(packet)
                await handle(packet, arrival_time_ms)

            return record

        aiortc_private.wrap_rtp_handler(receiver, recording)

    async def close(self):
        await self.client.close()
        await self.server.close()


async def connect(rtp, fanout):
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("video", direction="recvonly")
    received = asyncio.get_running_loop().create_future()
    client.on("track", lambda track: received.set_result(track))
    await client.setLocalDescription(await client.createOffer())
    await server.setRemoteDescription(client.localDescription)
    stream = rtp.add_viewer(server)
    route_keyframe_requests(stream.sender, fanout)
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(server.localDescription)
    return RecordingViewer(server, client, stream, await received)


def media(packets, ssrc):
    return [p for p in packets if p.ssrc == ssrc]


def vp8_picture_id(payload: bytes) -> int:
    # X bit set, I bit set, 15-bit picture id (aiortc's descriptor layout)
    assert payload[0] & 0x80 and payload[1] & 0x80
    return ((payload[2] & 0x7F) << 8) | payload[3]


def test_viewers_get_byte_identical_payloads_with_their_own_sequence_numbers():
    async def scenario():
        fanout = EncodedFanout(SyntheticVideoTrack("blue", fps=15), kind="video")
        rtp = RtpFanout(fanout)
        viewers = [await connect(rtp, fanout) for _ in range(2)]
        frames = {
            i: [await asyncio.wait_for(v.track.recv(), 10) for _ in range(12)]
            for i, v in enumerate(viewers)
        }
        packets = [list(v.packets) for v in viewers]
        ssrcs = [v.stream.ssrc for v in viewers]
        stats = dict(rtp.stats)
        # the sender's RTCP sender reports carry what was written for it
        reported = 0
        for _ in range(60):
            report = await viewers[0].receiver.getStats()
            remote = [s for s in report.values() if s.type == "remote-outbound-rtp"]
            reported = remote[0].packetsSent if remote else 0
            if reported:
                break
            await asyncio.sleep(0.05)
        for viewer in viewers:
            viewer.stream.close()
            await viewer.close()
        await rtp.stop()
        await fanout.stop()
        return frames, packets, ssrcs, stats, reported

    frames, packets, ssrcs, stats, reported = asyncio.run(scenario())

    assert reported > 0

    for received in frames.values():
        assert {closest_colour(f) for f in received} == {"blue"}
        counters = [read_counter(f) for f in received]
        assert counters[-1] > counters[0]
    assert ssrcs[0] != ssrcs[1]
    streams = [media(p, ssrc) for p, ssrc in zip(packets, ssrcs, strict=True)]
    for stream in streams:
        # each viewer's own numbering: consecutive, no gap, whatever the other viewer got
        numbers = [p.sequence_number for p in stream]
        assert numbers == [(numbers[0] + i) & 0xFFFF for i in range(len(numbers))]
        # a frame ends with the marker bit and every packet of a frame shares its timestamp
        by_timestamp = {}
        for packet in stream:
            by_timestamp.setdefault(packet.timestamp, []).append(packet)
        for frame in list(by_timestamp.values())[:-1]:
            assert [p.marker for p in frame] == [0] * (len(frame) - 1) + [1]
        # a viewer's first frame is a keyframe (VP8: P bit clear after the 4-byte descriptor)
        assert stream[0].payload[0] & 0x10  # start of partition
        assert stream[0].payload[4] & 0x01 == 0
    # the same frame (same picture id) is the same bytes for both viewers
    first = {}
    for packet in streams[0]:
        first.setdefault(vp8_picture_id(packet.payload), []).append(packet.payload)
    second = {}
    for packet in streams[1]:
        second.setdefault(vp8_picture_id(packet.payload), []).append(packet.payload)
    common = [pid for pid in first if pid in second]
    assert len(common) >= 8
    for pid in common[:-1]:  # the last one may still be arriving
        assert first[pid] == second[pid]
    # one packetisation per frame for both viewers
    assert stats["viewer_frames"] > stats["frames"]


def test_a_nack_is_answered_with_a_retransmission_to_that_viewer_only():
    async def scenario():
        fanout = EncodedFanout(SyntheticVideoTrack("green", fps=15), kind="video")
        rtp = RtpFanout(fanout)
        viewers = [await connect(rtp, fanout) for _ in range(2)]
        for viewer in viewers:
            for _ in range(5):
                await asyncio.wait_for(viewer.track.recv(), 10)
        asker, other = viewers
        lost = media(asker.packets, asker.stream.ssrc)[-3]
        others_before = len(other.packets)
        await aiortc_private.send_nack(asker.receiver, asker.stream.ssrc, [lost.sequence_number])
        for _ in range(100):
            if asker.stream.retransmitted:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        repairs = [
            p
            for p in asker.packets
            if p.ssrc == aiortc_private.sender_rtx_ssrc(asker.stream.sender)
        ]
        others_repairs = [p for p in other.packets[others_before:] if p.ssrc != other.stream.ssrc]
        retransmitted = (asker.stream.retransmitted, other.stream.retransmitted)
        for viewer in viewers:
            viewer.stream.close()
            await viewer.close()
        await rtp.stop()
        await fanout.stop()
        return lost, repairs, others_repairs, retransmitted

    lost, repairs, others_repairs, retransmitted = asyncio.run(scenario())

    assert retransmitted == (1, 0)
    assert len(repairs) == 1
    repair = repairs[0]
    # RTX (RFC 4588): the original sequence number, then the original payload
    assert int.from_bytes(repair.payload[:2], "big") == lost.sequence_number
    assert repair.payload[2:] == lost.payload
    assert repair.timestamp == lost.timestamp
    assert others_repairs == []


def test_a_viewer_that_leaves_does_not_interrupt_the_others_and_the_last_stops_the_encoder():
    async def scenario():
        fanout = EncodedFanout(SyntheticVideoTrack("red", fps=15), kind="video")
        rtp = RtpFanout(fanout)
        staying, leaving = [await connect(rtp, fanout) for _ in range(2)]
        await asyncio.wait_for(leaving.track.recv(), 10)
        leaving.stream.close()
        await leaving.close()
        counters = [
            read_counter(await asyncio.wait_for(staying.track.recv(), 10)) for _ in range(8)
        ]
        subscribed = fanout.stats["subscribers"]
        staying.stream.close()
        await staying.close()
        after = fanout.stats["subscribers"]
        await rtp.stop()
        await fanout.stop()
        return counters, subscribed, after

    counters, subscribed, after = asyncio.run(scenario())

    assert counters[-1] > counters[0]
    assert subscribed == 1  # one subscription for all viewers
    assert after == 0

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streaming.node.internals import aiortc_private
from streaming.node.media.fanout import EncodedFanout, route_keyframe_requests
from streaming.node.media.synthetic import SyntheticVideoTrack, closest_colour, read_counter


async def connect_viewer(fanout):
    """A server-side peer sending the fanout's packets, and an aiortc client receiving them."""
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("video", direction="recvonly")
    received = asyncio.get_running_loop().create_future()
    client.on("track", lambda track: received.set_result(track))
    await client.setLocalDescription(await client.createOffer())
    await server.setRemoteDescription(client.localDescription)
    sender = server.addTrack(fanout.subscribe())
    route_keyframe_requests(sender, fanout)
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(server.localDescription)
    return server, client, sender, await received


@pytest.mark.media
def test_real_peers_receive_one_encode_and_their_pli_reaches_the_encoder():
    async def scenario():
        fanout = EncodedFanout(
            SyntheticVideoTrack("blue", fps=15), kind="video", keyframe_min_interval=0.2
        )
        peers = [await connect_viewer(fanout) for _ in range(2)]
        frames = {}
        for index, (_, _, _, track) in enumerate(peers):
            frames[index] = [await asyncio.wait_for(track.recv(), 10) for _ in range(10)]
        requests_before = fanout.stats["keyframe_requests"]
        keyframes_before = fanout.stats["keyframes"]
        # a real RTCP PLI from the first viewer, over the network, to the server's sender
        server_sender = peers[0][2]
        client_receiver = peers[0][1].getTransceivers()[0].receiver
        await aiortc_private.send_pli(client_receiver, aiortc_private.sender_ssrc(server_sender))
        for _ in range(50):
            if fanout.stats["keyframe_requests"] > requests_before:
                break
            await asyncio.sleep(0.02)
        for _ in range(8):
            await asyncio.wait_for(peers[0][3].recv(), 10)
        stats = dict(fanout.stats)
        for server, client, _, _ in peers:
            await client.close()
            await server.close()
        await fanout.stop()
        return frames, stats, requests_before, keyframes_before

    frames, stats, requests_before, keyframes_before = asyncio.run(scenario())

    for received in frames.values():
        assert {closest_colour(f) for f in received} == {"blue"}
        counters = [read_counter(f) for f in received]
        assert counters[-1] > counters[0]
    # two viewers, one encode: each source frame was encoded once
    assert stats["frames_in"] - 1 <= stats["packets_out"] <= stats["frames_in"]
    assert stats["keyframe_requests"] > requests_before
    assert stats["keyframes"] > keyframes_before

"""Media in tests stays on loopback: the node's answers (room and livestream) and the test's own
peers offer candidates in 127.0.0.0/8 only, and a candidate elsewhere is not used."""

import asyncio
import ipaddress

import pytest
from aioice import Candidate, Connection
from django.conf import settings

from streaming.node.broadcast.broadcast import Broadcast
from streaming.node.broadcast.scene import Scene
from streaming.node.ice import node_ice_servers
from streaming.node.internals import aioice_private
from streaming.node.media.node import MediaNode
from tests.streaming.broadcast_peers import three_members
from tests.streaming.probe import ProbePeer

pytestmark = pytest.mark.media

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def candidate_addresses(sdp: str) -> list[str]:
    """The connection address of every ``a=candidate`` line (and ``c=`` line) of ``sdp``."""
    addresses = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            addresses.append(line.split()[4])
        elif line.startswith("c=IN "):
            addresses.append(line.split()[2])
    return addresses


def outside_loopback(sdp: str) -> list[str]:
    return [a for a in candidate_addresses(sdp) if ipaddress.ip_address(a) not in LOOPBACK]


@pytest.mark.signalling
def test_the_check_sees_an_address_outside_loopback():
    sdp = "c=IN IP4 127.0.0.1\r\na=candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host\r\n"
    assert candidate_addresses(sdp) == ["127.0.0.1", "192.0.2.7"]
    assert outside_loopback(sdp) == ["192.0.2.7"]


@pytest.mark.signalling
def test_tests_run_with_ice_kept_to_loopback():
    assert settings.ICE_HOST_ADDRESSES == ["127.0.0.1"]
    assert aioice_private.confined_to() == ["127.0.0.1"]


def test_the_room_node_answers_with_loopback_candidates_only():
    async def scenario():
        node = MediaNode(ice_servers=node_ice_servers())
        peer = ProbePeer(colour="red", tone=440.0)
        try:
            offer = await peer.offer()
            answer = await node.join("confined", "expert", "expert", offer)
            await peer.accept(answer)
            return offer, answer
        finally:
            await peer.close()
            await node.shutdown()

    offer, answer = asyncio.run(scenario())
    assert candidate_addresses(answer) and candidate_addresses(offer)
    assert outside_loopback(answer) == []
    assert outside_loopback(offer) == []


def test_the_livestream_answers_viewers_with_loopback_candidates_only():
    from aiortc import RTCConfiguration, RTCPeerConnection

    async def scenario():
        scene = Scene(
            category="劳资纠纷", community="幸福里社区", state="live", members=three_members()
        )
        broadcast = Broadcast(scene, width=320, height=180, fps=10, ice_servers=node_ice_servers())
        await broadcast.start()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            _, answer = await broadcast.add_viewer(pc.localDescription.sdp)
            return answer
        finally:
            await pc.close()
            await broadcast.stop(keep_replay=False)

    answer = asyncio.run(scenario())
    assert candidate_addresses(answer)
    assert outside_loopback(answer) == []


def test_a_remote_candidate_outside_the_confinement_is_not_used():
    async def scenario():
        connection = Connection(ice_controlling=True)
        try:
            for host in ("192.0.2.7", "abcdef.local", "127.0.0.1"):
                await connection.add_remote_candidate(
                    Candidate(
                        foundation="1",
                        component=1,
                        transport="udp",
                        priority=1,
                        host=host,
                        port=50000,
                        type="host",
                    )
                )
            return [c.host for c in connection.remote_candidates]
        finally:
            await connection.close()

    assert asyncio.run(scenario()) == ["127.0.0.1"]


def candidate_ports(sdp: str) -> list[int]:
    return [int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")]


@pytest.fixture
def udp_ports(settings):
    """MEDIA_NODE_UDP_PORTS applied as the media node process applies it; undone afterwards."""
    import socket

    from streaming.node.ice import confine_host_addresses

    low, high = 47310, 47321
    # a few ports of the range are taken by something else already
    taken = []
    for port in range(low, low + 6):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        taken.append(sock)
    settings.MEDIA_NODE_UDP_PORTS = f"{low}-{high}"
    confine_host_addresses()
    try:
        yield range(low + 6, high + 1)
    finally:
        settings.MEDIA_NODE_UDP_PORTS = ""
        confine_host_addresses()
        for sock in taken:
            sock.close()


def test_the_nodes_candidates_use_ports_of_its_udp_range_and_media_flows(udp_ports):
    assert aioice_private.udp_ports() == (udp_ports.start - 6, udp_ports.stop - 1)

    async def scenario():
        node = MediaNode(ice_servers=node_ice_servers())
        peers = [ProbePeer(colour="red", tone=440.0), ProbePeer(colour="blue", tone=880.0)]
        answers = []
        try:
            for i, peer in enumerate(peers):
                answer = await node.join("ranged", f"m{i}", "expert", await peer.offer())
                await peer.accept(answer)
                answers.append(answer)
            # both receive each other's video through sockets bound in the range
            for _ in range(200):
                if all(
                    any(s.kind == "video" and s.frames for s in p.streams.values()) for p in peers
                ):
                    break
                await asyncio.sleep(0.05)
            received = [
                sum(s.frames for s in p.streams.values() if s.kind == "video") for p in peers
            ]
            return answers, [p.pc.localDescription.sdp for p in peers], received
        finally:
            for peer in peers:
                await peer.close()
            await node.shutdown()

    answers, offers, received = asyncio.run(scenario())
    ports = [port for sdp in [*answers, *offers] for port in candidate_ports(sdp)]
    assert ports and all(port in udp_ports for port in ports), ports
    assert all(received), received
    # without a range, aioice chooses (an ephemeral port, outside this range)
    aioice_private.use_udp_ports("")
    assert aioice_private.udp_ports() is None

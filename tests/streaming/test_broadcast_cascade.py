"""Viewers of one livestream on two media node processes: the home node composes and encodes the
room's broadcast once and relays it to the other node, whose viewers get the same packets."""

import asyncio
import os
import subprocess
import sys
import time
import uuid

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from asgi import application
from streaming import pool
from streaming.plane import node_channel
from tests.e2e.conftest import _database_url
from tests.streaming.test_broadcast_relay import CapturingViewer, same_frames
from tests.streaming.test_watch import HEADERS, live_hearing

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cluster(settings, tmp_path):
    """start(node id) -> a `manage.py medianode` process on this test's channel layer."""
    if not settings.REDIS_URL:
        pytest.skip("no REDIS_URL")
    prefix = f"cascade-{uuid.uuid4().hex[:8]}"
    settings.MEDIA_NODE_INPROCESS = False
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": prefix},
        }
    }
    processes = []

    def start(node_id: str) -> subprocess.Popen:
        log = open(tmp_path / f"node-{node_id}.log", "w")  # noqa: SIM115
        env = {
            **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CHANNEL_PREFIX": prefix,
            "MEDIA_NODE_ID": node_id,
            "MEDIA_NODE_INPROCESS": "0",
            "MEDIA_RELAY_HOST": "127.0.0.1",
            "ICE_SERVERS": "[]",
            "ICE_HOST_ADDRESSES": "127.0.0.1",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "BROADCAST_HLS_ROOT": str(tmp_path / f"hls-{node_id}"),
        }
        process = subprocess.Popen(
            [sys.executable, "manage.py", "medianode"],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append((process, log))
        return process

    yield start
    for process, log in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        print(open(log.name).read()[-3000:])


async def ask(layer, channel: str, message: dict, *, wait: float = 5) -> dict:
    reply_to = await layer.new_channel("test.")
    await layer.send(channel, {**message, "reply_to": reply_to})
    return await asyncio.wait_for(layer.receive(reply_to), wait)


async def node_stats(layer, channel: str) -> dict:
    return await ask(layer, channel, {"type": "broadcast.stats"})


async def until_answering(layer, channel: str, limit: float = 60) -> None:
    give_up = time.monotonic() + limit
    while True:
        try:
            await node_stats(layer, channel)
            return
        except TimeoutError:
            assert time.monotonic() < give_up, f"the node on {channel} never answered"


async def watch_on(public_id: str) -> tuple[CapturingViewer, WebsocketCommunicator]:
    """A watch page: its socket, and an aiortc viewer offering through it (the socket places the
    offer on the node with the most viewer room)."""
    communicator = WebsocketCommunicator(application, f"/ws/watch/{public_id}/", headers=HEADERS)
    connected, _ = await communicator.connect()
    assert connected
    viewer = CapturingViewer()
    await communicator.send_json_to({"type": "watch.offer", "sdp": await viewer.offer()})
    while True:
        reply = await communicator.receive_json_from(timeout=30)
        if reply["type"] == "watch.answer":
            break
        assert reply["type"] == "watch.state", reply
    await viewer.answer(reply["sdp"])
    return viewer, communicator


def test_viewers_on_two_nodes_receive_the_same_packets_encoded_once_on_the_home_node(cluster):
    hearing, _ = live_hearing()
    public_id = hearing.public_id
    cluster("node-a")
    cluster("node-b")

    async def scenario():
        layer = get_channel_layer()
        for node_id in ("node-a", "node-b"):
            await until_answering(layer, node_channel(node_id))
        for _ in range(100):  # both have their lease
            if len(await asyncio.to_thread(pool.live_nodes)) == 2:
                break
            await asyncio.sleep(0.1)
        # the first viewer: both nodes have as much room, the room's own node takes it; the
        # second: the other node has more room now, and relays the home node's stream
        here, here_socket = await watch_on(public_id)
        there, there_socket = await watch_on(public_id)
        home_id = await asyncio.to_thread(pool.room_node, public_id)
        other_id = ({"node-a", "node-b"} - {home_id}).pop()
        home, other = node_channel(home_id), node_channel(other_id)
        frames = [await here.decoded(20), await there.decoded(20)]
        compared = same_frames(here, there)
        home_stats, other_stats = await node_stats(layer, home), await node_stats(layer, other)
        # the last viewer on the other node leaves: it ends its relay, the home node stops
        # sending
        await there_socket.send_json_to({"type": "watch.leave"})
        relays_after = None
        for _ in range(50):
            after = await node_stats(layer, home)
            relays_after = after["broadcasts"][public_id]["relays"]
            if relays_after == 0:
                break
            await asyncio.sleep(0.1)
        other_after = await node_stats(layer, other)
        for socket in (here_socket, there_socket):
            await socket.disconnect()
        await here.pc.close()
        await there.pc.close()
        return frames, compared, home_stats, other_stats, relays_after, other_after

    frames, compared, home_stats, other_stats, relays_after, other_after = asyncio.run(scenario())

    assert all(len(f) == 20 for f in frames)
    common, equal = compared
    assert common >= 10
    assert equal == common
    broadcast = home_stats["broadcasts"][public_id]
    assert broadcast["viewers"] == 1
    assert broadcast["relays"] == 1
    assert broadcast["relayed_viewers"] == 1
    # encoded once, on the home node, however many nodes serve viewers
    # (each layer of the ladder is encoded once at most, the relayed top layer included)
    encoded = {k: n for k, n in home_stats["encoded"].items() if k.endswith(":video")}
    assert encoded
    assert all(0 < n <= broadcast["frames_composed"] for n in encoded.values())
    assert other_stats["encoded"] == {}
    assert other_stats["broadcasts"] == {}
    assert other_stats["relayed"][public_id]["viewers"] == 1
    assert other_stats["relayed"][public_id]["frames"] > 0
    assert relays_after == 0
    assert other_after["relayed"] == {}

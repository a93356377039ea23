"""The media node's worker outlives Redis going away: it keeps taking messages afterwards, with
the rooms it held, and one failing message does not end it."""

import asyncio

import redis.exceptions
from channels.routing import ChannelNameRouter
from channels_redis.pubsub import RedisPubSubChannelLayer

from streaming.node import process, worker
from streaming.plane import node_channel


def _enter(layer_channel: str, member: str) -> dict:
    return {
        "type": "room.enter",
        "public_id": "outage-room",
        "member": member,
        "role": "expert",
        "label": "调解员",
        "reply_to": layer_channel,
        "record": False,
        "admitted": True,
    }


async def _hello(layer, channel: str) -> dict:
    while True:
        message = await asyncio.wait_for(layer.receive(channel), 10)
        if message["frame"]["type"] == "hello":
            return message["frame"]


def test_the_node_takes_messages_again_after_redis_restarts(private_redis, monkeypatch):
    channel = node_channel()

    async def scenario():
        layer = RedisPubSubChannelLayer(hosts=[private_redis.url()], prefix="outage")
        monkeypatch.setattr(process, "get_channel_layer", lambda: layer)
        node = worker.NodeWorker(
            application=ChannelNameRouter({channel: worker.MediaNodeConsumer.as_asgi()}),
            channels=[channel],
            channel_layer=layer,
        )
        task = asyncio.ensure_future(node.arun())
        try:
            me = await layer.new_channel("member.")
            await asyncio.sleep(0.5)
            await layer.send(channel, _enter(me, "a"))
            assert (await _hello(layer, me))["me"]["id"] == "a"
            # A message the node has no handler for fails alone.
            await layer.send(channel, {"type": "room.nonsense"})

            await asyncio.get_running_loop().run_in_executor(None, private_redis.stop)
            await asyncio.sleep(2)
            await asyncio.get_running_loop().run_in_executor(None, private_redis.start)

            again = await layer.new_channel("member.")
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                # This client's own first calls may meet the connection Redis closed.
                try:
                    await layer.send(channel, _enter(again, "b"))
                    hello = await asyncio.wait_for(_hello(layer, again), 2)
                    break
                except (TimeoutError, ConnectionError, redis.exceptions.ConnectionError):
                    assert asyncio.get_running_loop().time() < deadline, "the node never came back"
                    await asyncio.sleep(0.3)
            assert hello["me"]["id"] == "b"
            assert not task.done()
            # The room it held before the outage is still there.
            assert set(process.get_director().rooms["outage-room"].members) == {"a", "b"}
        finally:
            task.cancel()
            await worker.reset_media_node()
            await layer.flush()

    asyncio.run(scenario())

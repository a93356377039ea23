"""The media node's side of the watch signaling, when the node is its own process.

The web process's :class:`WatchConsumer` sends these to the ``media-node`` channel; the node
answers on the consumer's own channel. The node's channel consumer
(``streaming.node_worker.MediaNodeConsumer``) takes them by inheriting
:class:`BroadcastNodeMessages`; :class:`BroadcastNodeConsumer` serves broadcasts alone.

    broadcast.offer     {public_id, sdp, reply_to}   -> watch.answer_ready {viewer_id, sdp}
                                                       | watch.refused {reason, message}
    broadcast.leave     {public_id, viewer_id}
    broadcast.snapshot  {public_id, reply_to}        -> watch.state {state, viewers}
                        (a watch page opened: the broadcast starts if the session may be shown)
"""

from __future__ import annotations

import asyncio

from channels.consumer import AsyncConsumer

from streaming.broadcast.broadcast import BroadcastError, ViewerLimitReached
from streaming.broadcast.station import get_station

# The same channel as the room's signaling (streaming.node_worker).
MEDIA_NODE_CHANNEL = "media-node"

_background: set[asyncio.Task] = set()


class BroadcastNodeMessages:
    channel_layer: object

    async def broadcast_offer(self, message: dict) -> None:
        # Answering takes a moment (ICE gathering): other messages need not wait for it.
        task = asyncio.get_running_loop().create_task(self._answer(message))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _answer(self, message: dict) -> None:
        try:
            viewer_id, answer = await get_station().add_viewer(message["public_id"], message["sdp"])
        except ViewerLimitReached as exc:
            reply = {"type": "watch.refused", "reason": "viewer_limit", "message": str(exc)}
        except BroadcastError as exc:
            reply = {"type": "watch.refused", "reason": "offer_refused", "message": str(exc)}
        else:
            reply = {"type": "watch.answer_ready", "viewer_id": viewer_id, "sdp": answer}
        await self.channel_layer.send(message["reply_to"], reply)

    async def broadcast_leave(self, message: dict) -> None:
        await get_station().remove_viewer(message["public_id"], message["viewer_id"])

    async def broadcast_snapshot(self, message: dict) -> None:
        snapshot = await get_station().watch(message["public_id"])
        await self.channel_layer.send(message["reply_to"], {"type": "watch.state", **snapshot})


class BroadcastNodeConsumer(BroadcastNodeMessages, AsyncConsumer):
    pass

"""The media node's side of the watch signaling.

The web process's ``WatchConsumer`` sends these to the node's channel
(``streaming.plane.room_node_channel``); the node answers on the consumer's own channel. The
node's channel consumer (``streaming.node.worker.MediaNodeConsumer``) takes them by inheriting
:class:`BroadcastNodeMessages`.

    broadcast.offer     {public_id, sdp, reply_to, home?}  -> watch.answer_ready {viewer_id, sdp}
                                                       | watch.refused {reason, message}
                        sent to the node placed for the viewer; ``home`` is the channel of the
                        room's node: when it is not the channel the offer came on, this node
                        serves the viewer from a relay of the home node's stream (``relay.py``)
    broadcast.leave     {public_id, viewer_id}       to the node that answered the offer
    broadcast.snapshot  {public_id, reply_to}        -> watch.state {state, viewers}
                        (a watch page opened: the broadcast starts if the session may be shown)

Node -> node (``relay.py``):

    broadcast.relay     {public_id, node, address, ssrc, viewers, reply_to?}
                                                     -> broadcast.relay_ready {public_id, ok, reason}
    broadcast.unrelay   {public_id, node, address}
    broadcast.stats     {public_id?, reply_to}       -> broadcast.stats {encoded, broadcasts, relayed}
"""

from __future__ import annotations

import asyncio
from typing import Any

from streaming.node.broadcast.broadcast import BroadcastError, ViewerLimitReached
from streaming.node.media.fanout import ENCODED_FRAMES
from streaming.node.process import get_station
from streaming.plane import watch_answer_message, watch_refused_message, watch_state_message

_background: set[asyncio.Task] = set()


class BroadcastNodeMessages:
    channel_layer: Any
    scope: dict

    async def broadcast_offer(self, message: dict) -> None:
        # Answering takes a moment (ICE gathering): other messages need not wait for it.
        task = asyncio.get_running_loop().create_task(self._answer(message))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _answer(self, message: dict) -> None:
        try:
            viewer_id, answer = await get_station().add_viewer(
                message["public_id"],
                message["sdp"],
                home=message.get("home") or "",
                here=self.scope.get("channel", ""),
                socket=message.get("reply_to") or "",
            )
        except ViewerLimitReached as exc:
            reply = watch_refused_message("viewer_limit", str(exc))
        except BroadcastError as exc:
            reply = watch_refused_message("offer_refused", str(exc))
        else:
            reply = watch_answer_message(viewer_id, answer)
        await self.channel_layer.send(message["reply_to"], reply)

    async def broadcast_leave(self, message: dict) -> None:
        await get_station().remove_viewer(message["public_id"], message["viewer_id"])

    async def broadcast_snapshot(self, message: dict) -> None:
        snapshot = await get_station().watch(message["public_id"])
        await self.channel_layer.send(message["reply_to"], watch_state_message(snapshot))

    async def broadcast_relay(self, message: dict) -> None:
        # Opening the broadcast reads the database: other messages need not wait for it.
        task = asyncio.get_running_loop().create_task(self._relay(message))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _relay(self, message: dict) -> None:
        try:
            ok, reason = await get_station().relay_to(message)
        except (BroadcastError, KeyError, TypeError, ValueError) as exc:
            ok, reason = False, str(exc) or "the relay could not be set up"
        if message.get("reply_to"):
            await self.channel_layer.send(
                message["reply_to"],
                {
                    "type": "broadcast.relay_ready",
                    "public_id": message.get("public_id"),
                    "ok": ok,
                    "reason": reason,
                },
            )

    async def broadcast_unrelay(self, message: dict) -> None:
        get_station().unrelay(message["public_id"], message["node"], message.get("address"))

    async def broadcast_stats(self, message: dict) -> None:
        """What this node encodes and serves (benchmarks, tests, operators)."""
        station = get_station()
        await self.channel_layer.send(
            message["reply_to"],
            {
                "type": "broadcast.stats",
                "encoded": {f"{name}:{kind}": n for (name, kind), n in ENCODED_FRAMES.items()},
                "broadcasts": {pid: b.stats for pid, b in list(station.broadcasts.items())},
                "relayed": {
                    pid: {"viewers": r.viewer_count, **r.stats}
                    for pid, r in list(station.relayed.items())
                },
                "viewers": station.viewer_count,
            },
        )

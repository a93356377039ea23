"""The comment benchmark's baseline: one plain group_send per room event, encoded per viewer.

bench/comments.py serves its ``plain`` runs with this application (``cloudbench.serve
--application plain_broadcast:application``). It is the project's application with two
substitutions: committed events leave through ``publish_plain`` (one channel-layer message per
event, with the event as a dict) instead of the room's sender queue, and the live-room socket
is a ``PlainLiveRoomConsumer``, which joins the room's group itself and encodes every event it
receives, instead of sharing its process's room hub and the frames the hub encodes once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import django
from asgiref.sync import async_to_sync

django.setup(set_prefix=False)

from channels.layers import get_channel_layer  # noqa: E402
from django.urls import re_path  # noqa: E402

from cloudbench import routing  # noqa: E402
from voting import broadcast, protocol  # noqa: E402
from voting.consumers import LiveRoomConsumer  # noqa: E402

_loop: asyncio.AbstractEventLoop | None = None


class PlainLiveRoomConsumer(LiveRoomConsumer):
    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "room.event":
            await self.room_event(message)
        else:
            await super().dispatch(message)

    async def join_room(self, room_id: int, case_id: int) -> None:
        global _loop
        _loop = asyncio.get_running_loop()
        await self.channel_layer.group_add(broadcast.room_group(room_id), self.channel_name)

    async def leave_room(self) -> None:
        await self.channel_layer.group_discard(
            broadcast.room_group(self.room_id), self.channel_name
        )

    async def room_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if event["seq"] <= self.backlog_upto:
            return
        await self.send(protocol.events_frame([event]))


def publish_plain(room_id: int, events: list[dict[str, Any]]) -> None:
    """One group message per event, sent on the server's event loop when there is one."""

    async def send() -> None:
        layer = get_channel_layer()
        for event in events:
            await layer.group_send(
                broadcast.room_group(room_id), {"type": "room.event", "event": event}
            )

    loop = _loop
    if loop is not None and loop.is_running():
        try:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(send()))
            return
        except RuntimeError:
            pass
    async_to_sync(send)()


# The services publish through `broadcast.publish`, looked up when an event commits.
broadcast.publish = publish_plain
(live,) = [i for i, p in enumerate(routing.websocket_urlpatterns) if "ws/live" in str(p.pattern)]
routing.websocket_urlpatterns[live] = re_path(
    routing.websocket_urlpatterns[live].pattern.regex.pattern, PlainLiveRoomConsumer.as_asgi()
)

from asgi import application  # noqa: E402, F401  (its routes are the list changed above)

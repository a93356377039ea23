"""The watch WebSocket: residents ask for the WebRTC stream of a public session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils.translation import gettext as _

from cloudbench.sockets import CLOSE_NOT_FOUND, CLOSE_REFUSED, ProtocolConsumer
from streaming.broadcast.selectors import broadcast_facts
from streaming.broadcast.services import watch_placement
from streaming.embedded import ensure_inprocess_worker
from streaming.plane import aroom_node_channel, hls_url, watch_group
from streaming.protocol import (
    WATCH_LIMITS,
    WATCH_MESSAGE_TYPES,
    WatchLeave,
    WatchOffer,
    WatchPing,
    read_watch_message,
)

logger = logging.getLogger(__name__)

STATE_ATTEMPTS = 8


class WatchConsumer(ProtocolConsumer):
    """Thin: checks the session is public, forwards offers to the station, relays state.

    The station lives with the media node and is reached over the channel layer
    (``streaming.node.broadcast.messages``), whether the node is its own process or a task of this one
    (``MEDIA_NODE_INPROCESS``): one code path, as for the room.
    """

    limits = WATCH_LIMITS
    message_types = WATCH_MESSAGE_TYPES

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections before every handler, in the one thread
        # that the process's thread-sensitive work shares. Only connect uses the database here,
        # through database_sync_to_async (which closes them itself), so the hop is skipped:
        # hundreds of viewers reconnecting at once after a restart would queue behind it.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            await super().dispatch(message)  # says there is no handler
            return
        await handler(message)

    async def connect(self) -> None:
        self.public_id = self.scope["url_route"]["kwargs"]["public_id"]
        self.viewer_id: str | None = None
        # the node that answered this viewer's offer (not always the room's own node)
        self.viewer_channel: str | None = None
        self.offer_pending = False
        self.group = None
        # not thread-sensitive: viewers connecting together are answered in parallel
        facts = await database_sync_to_async(broadcast_facts, thread_sensitive=False)(
            self.public_id
        )
        await self.accept()
        if facts is None:
            await self.send_error("not_found", _("There is no such session."))
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if not facts.public:
            # Anonymous or signed in, nobody watches a session whose parties did not all agree.
            await self.send_error("private", _("This session is not public."))
            await self.close(code=CLOSE_REFUSED)
            return
        self.group = watch_group(self.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        if settings.MEDIA_NODE_INPROCESS:
            await ensure_inprocess_worker()
        self._state_seen = asyncio.Event()
        self._asking = asyncio.ensure_future(self._ask_for_state())

    async def _ask_for_state(self) -> None:
        # A channel-layer message to a node that is not listening yet (just started, or
        # restarting) is lost, not queued: ask again until the node answers. After a while the
        # viewer is told, and the asking goes on, slower, for as long as the socket is open.
        attempt = 0
        while True:
            with contextlib.suppress(Exception):  # Redis away for a moment: ask again
                await self._to_node({"type": "broadcast.snapshot", "reply_to": self.channel_name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_seen.wait(), min(0.25 * (attempt + 1), 3.0))
                return
            attempt += 1
            if attempt == STATE_ATTEMPTS:
                await self.send_error(
                    "unavailable", _("The livestream is not available right now.")
                )

    async def disconnect(self, code: int) -> None:
        asking = getattr(self, "_asking", None)
        if asking is not None:
            asking.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await self._leave()
        # (A viewer answered after this socket closed has no ICE peer: the node drops it when
        # its connection fails.)

    def serving(self) -> bool:
        return self.group is not None

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        message = read_watch_message(frame)
        if isinstance(message, WatchPing):
            await self.send_frame({"type": "pong"})
        elif isinstance(message, WatchLeave):
            await self._leave()
        elif isinstance(message, WatchOffer):
            await self._offer(message.sdp)

    async def _offer(self, sdp: str) -> None:
        if self.offer_pending:
            # One peer connection at a time per socket: a flood of offers costs the node nothing.
            await self.send_error(
                "busy", _("An offer is already being answered."), ref="watch.offer"
            )
            return
        await self._leave()
        self.offer_pending = True
        # The node with the most viewer room answers; it relays the room's node's stream when
        # it is another node.
        placement = await asyncio.to_thread(watch_placement, self.public_id)
        self.viewer_channel = placement.channel
        await self._to_node(
            {"type": "broadcast.offer", "sdp": sdp, "reply_to": self.channel_name},
            channel=placement.channel,
            home=placement.home,
        )

    async def _leave(self) -> None:
        if self.viewer_id is None:
            return
        viewer_id, self.viewer_id = self.viewer_id, None
        await self._to_node(
            {"type": "broadcast.leave", "viewer_id": viewer_id}, channel=self.viewer_channel
        )

    async def _to_node(self, message: dict, *, channel: str | None = None, **extra: str) -> None:
        channel = channel or await aroom_node_channel(self.public_id)
        await self.channel_layer.send(channel, {**message, **extra, "public_id": self.public_id})

    # -- from the station ---------------------------------------------------------------------

    async def watch_answer_ready(self, event: dict) -> None:
        self.offer_pending = False
        self.viewer_id = event["viewer_id"]
        await self.send_frame({"type": "watch.answer", "sdp": event["sdp"]})

    async def watch_layer(self, event: dict) -> None:
        """The ladder moved this viewer (``video``: false on the audio-only layer)."""
        await self.send_frame(
            {"type": "watch.layer", "layer": event["layer"], "video": bool(event["video"])}
        )

    async def watch_refused(self, event: dict) -> None:
        self.offer_pending = False
        if event["reason"] == "viewer_limit":
            await self.send_frame(
                {"type": "watch.fallback", "reason": "viewer_limit", "hls": hls_url(self.public_id)}
            )
        else:
            await self.send_error("offer_refused", event["message"], ref="watch.offer")

    async def watch_moved(self, event: dict) -> None:
        """The hearing's room moved to another node (``streaming.pool``): the viewer the old node
        had is gone; ask the new node for the state (its station starts the broadcast, the slate
        until members are back), and the page offers again. A viewer another node served from a
        relay is let go there (the page's new offer is placed afresh)."""
        await self._leave()
        self.offer_pending = False
        await self.send_frame({"type": "watch.moved"})
        asking = getattr(self, "_asking", None)
        if asking is not None:
            asking.cancel()
        self._state_seen = asyncio.Event()
        self._asking = asyncio.ensure_future(self._ask_for_state())

    async def watch_state(self, event: dict) -> None:
        self._state_seen.set()
        await self.send_frame(
            {
                "type": "watch.state",
                "state": event["state"],
                "viewers": event["viewers"],
                "members": event.get("members", 0),
                "pictures": event.get("pictures", event.get("members", 0)),
                "screen": bool(event.get("screen")),
                "hls": hls_url(self.public_id),
            }
        )

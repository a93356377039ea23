"""The watch WebSocket: residents ask for the WebRTC stream of a public session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils.translation import gettext as _

from accounts.ratelimit import MessageBudget
from streaming.broadcast.node_messages import MEDIA_NODE_CHANNEL
from streaming.broadcast.selectors import broadcast_facts
from streaming.broadcast.station import hls_url, watch_group
from streaming.node_worker import ensure_inprocess_worker
from streaming.protocol import (
    WatchLeave,
    WatchOffer,
    WatchPing,
    WatchProtocolError,
    parse_watch_message,
    watch_error_frame,
)

logger = logging.getLogger(__name__)

# Close codes: the page shows the reason and does not retry.
CLOSE_NOT_FOUND = 4404
CLOSE_PRIVATE = 4403
CLOSE_FLOOD = 4429
# A watch page sends an offer, a leave and a ping now and then: a burst of 20 is generous, and
# a socket that keeps flooding after being told is closed.
RATE_PER_SECOND = 2.0
RATE_BURST = 20.0
FLOOD_LIMIT = 50
STATE_ATTEMPTS = 8


class WatchConsumer(AsyncWebsocketConsumer):
    """Thin: checks the session is public, forwards offers to the station, relays state.

    The station lives with the media node and is reached over the channel layer
    (``node_messages``), whether the node is its own process or a task of this one
    (``MEDIA_NODE_INPROCESS``): one code path, as for the room.
    """

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
        self.offer_pending = False
        self.group = None
        self.budget = MessageBudget(per_second=RATE_PER_SECOND, burst=RATE_BURST)
        # not thread-sensitive: viewers connecting together are answered in parallel
        facts = await database_sync_to_async(broadcast_facts, thread_sensitive=False)(
            self.public_id
        )
        await self.accept()
        if facts is None:
            await self._send(watch_error_frame("not_found", _("There is no such session.")))
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if not facts.public:
            # Anonymous or signed in, nobody watches a session whose parties did not all agree.
            await self._send(watch_error_frame("private", _("This session is not public.")))
            await self.close(code=CLOSE_PRIVATE)
            return
        self.group = watch_group(self.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        if settings.MEDIA_NODE_INPROCESS:
            ensure_inprocess_worker()
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
                await self._send(
                    watch_error_frame(
                        "unavailable", _("The livestream is not available right now.")
                    )
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

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.group is None:
            return
        if not self.budget.take():
            if self.budget.should_warn:
                await self._send(watch_error_frame("rate_limited", _("Too many messages.")))
            if self.budget.rejected >= FLOOD_LIMIT:
                await self.close(code=CLOSE_FLOOD)
            return
        raw = text_data if text_data is not None else ""
        try:
            content = json.loads(raw) if text_data is not None else None
            message = parse_watch_message(content, size=len(raw))
        except (json.JSONDecodeError, RecursionError):  # RecursionError: "[[[[..." nested deep
            await self._send(watch_error_frame("bad_json", _("Messages are JSON.")))
            return
        except WatchProtocolError as exc:
            await self._send(watch_error_frame(exc.code, exc.message))
            return
        if isinstance(message, WatchPing):
            await self._send({"type": "pong"})
        elif isinstance(message, WatchLeave):
            await self._leave()
        elif isinstance(message, WatchOffer):
            await self._offer(message.sdp)

    async def _offer(self, sdp: str) -> None:
        if self.offer_pending:
            # One peer connection at a time per socket: a flood of offers costs the node nothing.
            await self._send(watch_error_frame("busy", _("An offer is already being answered.")))
            return
        await self._leave()
        self.offer_pending = True
        await self._to_node({"type": "broadcast.offer", "sdp": sdp, "reply_to": self.channel_name})

    async def _leave(self) -> None:
        if self.viewer_id is None:
            return
        viewer_id, self.viewer_id = self.viewer_id, None
        await self._to_node({"type": "broadcast.leave", "viewer_id": viewer_id})

    async def _to_node(self, message: dict) -> None:
        await self.channel_layer.send(MEDIA_NODE_CHANNEL, {**message, "public_id": self.public_id})

    # -- from the station ---------------------------------------------------------------------

    async def watch_answer_ready(self, event: dict) -> None:
        self.offer_pending = False
        self.viewer_id = event["viewer_id"]
        await self._send({"type": "watch.answer", "sdp": event["sdp"]})

    async def watch_refused(self, event: dict) -> None:
        self.offer_pending = False
        if event["reason"] == "viewer_limit":
            await self._send(
                {"type": "watch.fallback", "reason": "viewer_limit", "hls": hls_url(self.public_id)}
            )
        else:
            await self._send(watch_error_frame("offer_refused", event["message"]))

    async def watch_state(self, event: dict) -> None:
        self._state_seen.set()
        await self._send(
            {
                "type": "watch.state",
                "state": event["state"],
                "viewers": event["viewers"],
                "hls": hls_url(self.public_id),
            }
        )

    async def _send(self, content: dict) -> None:
        await self.send(text_data=json.dumps(content, ensure_ascii=False))

"""The watch WebSocket: residents ask for the WebRTC stream of a public session."""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils.translation import gettext as _

from streaming.broadcast.broadcast import BroadcastError, ViewerLimitReached
from streaming.broadcast.node_messages import MEDIA_NODE_CHANNEL
from streaming.broadcast.protocol import (
    Ping,
    WatchLeave,
    WatchOffer,
    WatchProtocolError,
    error_frame,
    parse_watch_message,
)
from streaming.broadcast.selectors import broadcast_facts
from streaming.broadcast.station import get_station, hls_url, watch_group

logger = logging.getLogger(__name__)

# Close codes: the page shows the reason and does not retry.
CLOSE_NOT_FOUND = 4404
CLOSE_PRIVATE = 4403


class WatchConsumer(AsyncWebsocketConsumer):
    """Thin: checks the session is public, forwards offers to the station, relays state.

    The station lives with the media node: called directly when the node runs in this process
    (``MEDIA_NODE_INPROCESS``), reached over the channel layer otherwise (``node_messages``).
    """

    async def connect(self) -> None:
        self.public_id = self.scope["url_route"]["kwargs"]["public_id"]
        self.viewer_id: str | None = None
        self.group = None
        facts = await database_sync_to_async(broadcast_facts)(self.public_id)
        await self.accept()
        if facts is None:
            await self._send(error_frame("not_found", _("There is no such session.")))
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if not facts.public:
            # Anonymous or signed in, nobody watches a session whose parties did not all agree.
            await self._send(error_frame("private", _("This session is not public.")))
            await self.close(code=CLOSE_PRIVATE)
            return
        self.group = watch_group(self.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        if settings.MEDIA_NODE_INPROCESS:
            snapshot = await get_station().watch(self.public_id)
            await self.watch_state({"type": "watch.state", **snapshot})
        else:
            await self._to_node({"type": "broadcast.snapshot", "reply_to": self.channel_name})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await self._leave()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.group is None:
            return
        raw = text_data if text_data is not None else ""
        try:
            content = json.loads(raw) if text_data is not None else None
            message = parse_watch_message(content, size=len(raw))
        except json.JSONDecodeError:
            await self._send(error_frame("bad_json", _("Messages are JSON.")))
            return
        except WatchProtocolError as exc:
            await self._send(error_frame(exc.code, exc.message))
            return
        if isinstance(message, Ping):
            await self._send({"type": "pong"})
        elif isinstance(message, WatchLeave):
            await self._leave()
        elif isinstance(message, WatchOffer):
            await self._offer(message.sdp)

    async def _offer(self, sdp: str) -> None:
        await self._leave()
        if not settings.MEDIA_NODE_INPROCESS:
            await self._to_node(
                {"type": "broadcast.offer", "sdp": sdp, "reply_to": self.channel_name}
            )
            return
        try:
            viewer_id, answer = await get_station().add_viewer(self.public_id, sdp)
        except ViewerLimitReached as exc:
            await self.watch_refused({"reason": "viewer_limit", "message": str(exc)})
        except BroadcastError as exc:
            await self.watch_refused({"reason": "offer_refused", "message": str(exc)})
        else:
            await self.watch_answer_ready({"viewer_id": viewer_id, "sdp": answer})

    async def _leave(self) -> None:
        if self.viewer_id is None:
            return
        viewer_id, self.viewer_id = self.viewer_id, None
        if settings.MEDIA_NODE_INPROCESS:
            await get_station().remove_viewer(self.public_id, viewer_id)
        else:
            await self._to_node({"type": "broadcast.leave", "viewer_id": viewer_id})

    async def _to_node(self, message: dict) -> None:
        await self.channel_layer.send(MEDIA_NODE_CHANNEL, {**message, "public_id": self.public_id})

    # -- from the station (directly or over the channel layer) ---------------------------------

    async def watch_answer_ready(self, event: dict) -> None:
        self.viewer_id = event["viewer_id"]
        await self._send({"type": "watch.answer", "sdp": event["sdp"]})

    async def watch_refused(self, event: dict) -> None:
        if event["reason"] == "viewer_limit":
            await self._send(
                {"type": "watch.fallback", "reason": "viewer_limit", "hls": hls_url(self.public_id)}
            )
        else:
            await self._send(error_frame("offer_refused", event["message"]))

    async def watch_state(self, event: dict) -> None:
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

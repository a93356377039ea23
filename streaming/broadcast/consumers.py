"""The watch WebSocket: residents ask for the WebRTC stream of a public session."""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils.translation import gettext as _

from streaming.broadcast.broadcast import BroadcastError, ViewerLimitReached
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
    """Thin: checks the session is public, forwards offers to the station, relays state."""

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
        station = get_station()
        snapshot = station.snapshot(self.public_id)
        await self._send({"type": "watch.state", **snapshot, "hls": hls_url(self.public_id)})

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
        station = get_station()
        try:
            self.viewer_id, answer = await station.add_viewer(self.public_id, sdp)
        except ViewerLimitReached:
            await self._send(
                {"type": "watch.fallback", "reason": "viewer_limit", "hls": hls_url(self.public_id)}
            )
            return
        except BroadcastError as exc:
            await self._send(error_frame("offer_refused", str(exc)))
            return
        await self._send({"type": "watch.answer", "sdp": answer})

    async def _leave(self) -> None:
        if self.viewer_id is not None:
            viewer_id, self.viewer_id = self.viewer_id, None
            await get_station().remove_viewer(self.public_id, viewer_id)

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

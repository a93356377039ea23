"""Live view of an agreement: the draft, comments and signatures refresh while the mediator edits.

Only the case's parties, mediator and coordinators may connect. The domain publishes to the case
group after commit (realtime.publish_case_update); this consumer sends a fresh snapshot when an
agreement event arrives."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.ratelimit import MessageBudget

from .. import protocol
from ..realtime import case_group
from . import selectors

# The page sends a ping now and then and a refresh after reconnecting; each refresh reads the
# database, so a socket that floods is told, then closed.
RATE_PER_SECOND = 1.0
RATE_BURST = 10.0
FLOOD_LIMIT = 30
CLOSE_FLOOD = 4429

# Events on the case group that change what the agreement page shows.
AGREEMENT_EVENT_PREFIXES = ("agreement_", "follow_up_")


class AgreementConsumer(AsyncJsonWebsocketConsumer):
    case_id: int | None = None

    async def connect(self) -> None:
        tracking_number = self.scope["url_route"]["kwargs"]["tracking_number"]
        user = self.scope.get("user")
        self.budget = MessageBudget(per_second=RATE_PER_SECOND, burst=RATE_BURST)
        self.case_id = await database_sync_to_async(selectors.can_subscribe)(user, tracking_number)
        if self.case_id is None:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(case_group(self.case_id), self.channel_name)
        await self.accept()
        await self._send_snapshot()

    async def disconnect(self, code: int) -> None:
        if self.case_id is not None:
            await self.channel_layer.group_discard(case_group(self.case_id), self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        if not self.budget.take():
            if self.budget.should_warn:
                await self.send_json(protocol.error_frame("rate_limited", "too many messages"))
            if self.budget.rejected >= FLOOD_LIMIT:
                await self.close(code=CLOSE_FLOOD)
            return
        try:
            message = protocol.parse_agreement_message(text_data)
        except protocol.ProtocolError as exc:
            await self.send_json(protocol.error_frame(exc.code, exc.message))
            return
        if message["type"] == "ping":
            await self.send_json({"type": "pong"})
        elif message["type"] == "refresh":
            await self._send_snapshot()

    async def case_update(self, message: dict) -> None:
        kind = str((message.get("event") or {}).get("kind", ""))
        if kind.startswith(AGREEMENT_EVENT_PREFIXES):
            await self._send_snapshot()

    async def _send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(selectors.live_snapshot)(self.case_id)
        await self.send_json(protocol.draft_frame(snapshot))

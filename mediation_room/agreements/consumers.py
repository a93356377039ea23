"""Live view of an agreement: the draft, comments and signatures refresh while the mediator edits.

Only the case's parties, mediator and coordinators may connect. The domain publishes to the case
group after commit (realtime.publish_case_update); this consumer sends a fresh snapshot when an
agreement event arrives."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from cloudbench.sockets import CLOSE_REFUSED, ProtocolConsumer

from .. import protocol
from ..realtime import case_group
from . import selectors

# Events on the case group that change what the agreement page shows.
AGREEMENT_EVENT_PREFIXES = ("agreement_", "follow_up_")


class AgreementConsumer(ProtocolConsumer):
    limits = protocol.LIMITS
    message_types = protocol.MESSAGE_TYPES
    case_id: int | None = None

    async def connect(self) -> None:
        tracking_number = self.scope["url_route"]["kwargs"]["tracking_number"]
        user = self.scope.get("user")
        self.case_id = await database_sync_to_async(selectors.can_subscribe)(user, tracking_number)
        if self.case_id is None:
            await self.close(code=CLOSE_REFUSED)
            return
        await self.channel_layer.group_add(case_group(self.case_id), self.channel_name)
        await self.accept()
        await self._send_snapshot()

    async def disconnect(self, code: int) -> None:
        if self.case_id is not None:
            await self.channel_layer.group_discard(case_group(self.case_id), self.channel_name)

    def serving(self) -> bool:
        return self.case_id is not None

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        message = protocol.read_agreement_message(frame)
        if message["type"] == "ping":
            await self.send_frame({"type": "pong"})
        elif message["type"] == "refresh":
            await self._send_snapshot()

    async def case_update(self, message: dict) -> None:
        kind = str((message.get("event") or {}).get("kind", ""))
        if kind.startswith(AGREEMENT_EVENT_PREFIXES):
            await self._send_snapshot()

    async def _send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(selectors.live_snapshot)(self.case_id)
        await self.send_frame(protocol.draft_frame(snapshot))

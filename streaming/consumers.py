"""The mediation room's signaling socket, ``/ws/room/<hearing public id>/``.

Thin: authenticates and checks the member's place in the case, validates frames against
``protocol``, records the room's CaseEvents through services, and forwards everything about media
to the media node over the channel layer (``node_worker``). The node answers on this socket's
channel or the room's group with ready-made frames.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.ratelimit import MessageBudget
from mediation_room.realtime import case_group

from . import protocol
from .node_worker import MEDIA_NODE_CHANNEL, ensure_inprocess_worker, room_group
from .selectors import RoomAccess, RoomRefused, recording_consent, room_access_for_user
from .services import room_event_record

CLOSE_REFUSED = 4403
CLOSE_REMOVED = 4410
CLOSE_FLOOD = 4429
CLOSE_SUPERSEDED = 4409

# A member's page sends a handful of frames a minute; a burst of 20 is generous, and a socket
# that keeps flooding after being told is closed.
RATE_PER_SECOND = 5.0
RATE_BURST = 20.0
FLOOD_LIMIT = 50


class RoomConsumer(AsyncWebsocketConsumer):
    access: RoomAccess | None = None

    async def connect(self) -> None:
        self.access = None
        self.public_id = self.scope["url_route"]["kwargs"]["public_id"]
        self.user = self.scope.get("user")
        self.in_media = False
        self.budget = MessageBudget(per_second=RATE_PER_SECOND, burst=RATE_BURST)
        # accept first, so that a refusal can say why before the socket closes
        await self.accept()
        try:
            self.access = await database_sync_to_async(room_access_for_user)(
                self.user, self.public_id
            )
        except RoomRefused as exc:
            await self._send(protocol.refused_frame(exc.code, exc.message))
            await self.close(code=CLOSE_REFUSED)
            return
        if settings.MEDIA_NODE_INPROCESS:
            ensure_inprocess_worker()
        await self.channel_layer.group_add(room_group(self.public_id), self.channel_name)
        # consent answers change during a session: the recording follows them
        await self.channel_layer.group_add(case_group(self.access.case_id), self.channel_name)
        await self._to_node(
            "room.enter",
            role=self.access.role,
            label=self.access.label,
            record=self.access.record,
            admitted=self.access.admitted,
        )

    async def disconnect(self, code: int) -> None:
        if self.access is None:
            return
        await self.channel_layer.group_discard(room_group(self.public_id), self.channel_name)
        await self.channel_layer.group_discard(case_group(self.access.case_id), self.channel_name)
        await self._to_node("room.exit")
        if self.in_media:
            self.in_media = False
            await self._event("room_left")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.access is None:
            return
        if not self.budget.take():
            await self._flooded()
            return
        try:
            message = protocol.parse(text_data if text_data is not None else bytes_data)
        except protocol.ProtocolError as exc:
            await self._send(protocol.error_frame(exc))
            return
        if message.type in protocol.EXPERT_ACTIONS and self.access.role != "expert":
            await self._send(
                protocol.error_frame(
                    protocol.ProtocolError(
                        "forbidden", "Only the mediator can do this.", ref_type=message.type
                    )
                )
            )
            return
        await getattr(self, f"_on_{message.type}")(message)

    # -- client frames ---------------------------------------------------------------------

    async def _on_join(self, message: protocol.Message) -> None:
        await self._to_node(
            "room.offer", offer=message.data["offer"], reconnect=False, ref=message.ref
        )

    async def _on_reconnect(self, message: protocol.Message) -> None:
        await self._to_node(
            "room.offer", offer=message.data["offer"], reconnect=True, ref=message.ref
        )

    async def _on_leave(self, message: protocol.Message) -> None:
        await self._to_node("room.leave")
        if self.in_media:
            self.in_media = False
            await self._event("room_left")

    async def _on_media(self, message: protocol.Message) -> None:
        await self._to_node("room.media", **message.data)

    # the node confirms each of the mediator's actions with a "done" frame that carries the
    # CaseEvent to record (see room_frame)
    async def _on_admit(self, message: protocol.Message) -> None:
        await self._to_node("room.admit", actor=self.access.member_id, **message.data)

    async def _on_mute(self, message: protocol.Message) -> None:
        await self._to_node("room.mute", actor=self.access.member_id, **message.data)

    async def _on_remove(self, message: protocol.Message) -> None:
        await self._to_node("room.remove", actor=self.access.member_id, **message.data)

    async def _on_caucus(self, message: protocol.Message) -> None:
        await self._to_node("room.caucus", actor=self.access.member_id, **message.data)

    async def _on_ping(self, message: protocol.Message) -> None:
        await self._send({"type": "pong", "ref": message.ref})

    # -- from the media node -------------------------------------------------------------

    async def room_frame(self, event: dict[str, Any]) -> None:
        frame = event["frame"]
        await self._send(frame)
        if event.get("record_event"):
            await self._event(event["record_event"]["kind"], **event["record_event"]["data"])
        if frame.get("type") == "answer" and event.get("joined"):
            self.in_media = True
            await self._event("room_joined")
        elif frame.get("type") == "answer":
            self.in_media = True
        elif frame.get("type") == "left":
            self.in_media = False
        if event.get("close"):
            code = CLOSE_REMOVED if frame.get("type") == "removed" else CLOSE_SUPERSEDED
            # the node has forgotten this member already: nothing more to tell it
            self.access = None
            await self.close(code=code)

    async def case_update(self, event: dict[str, Any]) -> None:
        if self.access is None:
            return
        if event.get("event", {}).get("kind") in ("consent_granted", "consent_withdrawn"):
            record = await database_sync_to_async(recording_consent)(self.public_id)
            await self._to_node("room.record", record=record)

    # -- helpers ---------------------------------------------------------------------------

    async def _flooded(self) -> None:
        """Say so once in a while (not once per dropped frame), and give up on a flood."""
        if self.budget.should_warn:
            await self._send(
                protocol.error_frame(
                    protocol.ProtocolError("rate_limited", "Too many messages; slow down.")
                )
            )
        if self.budget.rejected >= FLOOD_LIMIT:
            await self.close(code=CLOSE_FLOOD)

    async def _to_node(self, type_: str, **data: Any) -> None:
        await self.channel_layer.send(
            MEDIA_NODE_CHANNEL,
            {
                "type": type_,
                "public_id": self.public_id,
                "member": self.access.member_id,
                "reply_to": self.channel_name,
                **data,
            },
        )

    async def _event(self, kind: str, **data: Any) -> None:
        await database_sync_to_async(room_event_record)(
            public_id=self.public_id, actor=self.user, kind=kind, data=data
        )

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False))

"""The mediation room's signaling socket, ``/ws/room/<hearing public id>/``.

Thin: authenticates and checks the member's place in the case, validates frames against
``protocol``, records the room's CaseEvents through services, and forwards everything about media
to the media node over the channel layer (``streaming.node``). The node answers on this socket's
channel or the room's group with ready-made frames.

``/ws/room/<id>/?probe=1`` is the check page's connection test: the same socket, route and
checks, but it only answers pings. It never enters the room, so a resident testing their
connection is not in the mediator's lobby, and a test socket still opening when the resident
moves on to the room cannot take the room page's place (the node lets the newest entry of a
member win).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from cloudbench.sockets import (
    CLOSE_REFUSED,
    CLOSE_REMOVED,
    CLOSE_SUPERSEDED,
    ProtocolConsumer,
    ProtocolError,
)
from mediation_room.realtime import case_group

from . import pool, protocol
from .embedded import ensure_inprocess_worker
from .plane import media_room_group, node_channel, room_moved_message, watch_group
from .selectors import RoomAccess, RoomRefused, recording_consent, room_access_for_user
from .services import room_event_record


class RoomConsumer(ProtocolConsumer):
    limits = protocol.LIMITS
    message_types = protocol.MESSAGE_TYPES
    access: RoomAccess | None = None

    async def connect(self) -> None:
        self.access = None
        self.public_id = self.scope["url_route"]["kwargs"]["public_id"]
        self.user = self.scope.get("user")
        self.in_media = False
        self.moved_from = ""
        self.probe = self.query_param("probe") == "1"
        # accept first, so that a refusal can say why before the socket closes
        await self.accept()
        try:
            self.access = await database_sync_to_async(room_access_for_user)(
                self.user, self.public_id
            )
        except RoomRefused as exc:
            await self.send_frame(protocol.refused_frame(exc.code, exc.message))
            await self.close(code=CLOSE_REFUSED)
            return
        if self.probe:
            return
        if settings.MEDIA_NODE_INPROCESS:
            await ensure_inprocess_worker()
        await self.channel_layer.group_add(media_room_group(self.public_id), self.channel_name)
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
        if self.access is None or self.probe:
            return
        await self.channel_layer.group_discard(media_room_group(self.public_id), self.channel_name)
        await self.channel_layer.group_discard(case_group(self.access.case_id), self.channel_name)
        await self._to_node("room.exit")
        if self.in_media:
            self.in_media = False
            await self._event("room_left")

    def serving(self) -> bool:
        return self.access is not None

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        message = protocol.read_message(frame)
        if self.probe and message.type != "ping":
            raise ProtocolError(
                "probe", "This connection test only answers pings.", ref=message.ref or message.type
            )
        if message.type in protocol.EXPERT_ACTIONS and self.access.role != "expert":
            raise ProtocolError(
                "forbidden", "Only the mediator can do this.", ref=message.ref or message.type
            )
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

    async def _on_share(self, message: protocol.Message) -> None:
        await self._to_node("room.share", **message.data)

    async def _on_share_air(self, message: protocol.Message) -> None:
        await self._to_node("room.share_air", actor=self.access.member_id, **message.data)

    async def _on_ping(self, message: protocol.Message) -> None:
        await self.send_frame({"type": "pong", "ref": message.ref})

    # -- from the media node -------------------------------------------------------------

    async def room_frame(self, event: dict[str, Any]) -> None:
        frame = event["frame"]
        await self.send_frame(frame)
        if event.get("record_event"):
            await self._event(event["record_event"]["kind"], **event["record_event"]["data"])
        if frame.get("type") == "answer" and self.moved_from:
            # media from the room's new node: the node it left lets this member go
            moved_from, self.moved_from = self.moved_from, ""
            await self.channel_layer.send(
                node_channel(moved_from),
                {"type": "room.gone", "public_id": self.public_id, "member": self.access.member_id},
            )
            self.in_media = True
        elif frame.get("type") == "answer" and event.get("joined"):
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

    async def room_moved(self, event: dict[str, Any]) -> None:
        """The room moved to another node (``streaming.pool``: its node died, or drains): enter
        it there as a member coming back, with what the database says now; the page is told,
        and offers again when the new node says hello."""
        if self.access is None:
            return
        try:
            self.access = await database_sync_to_async(room_access_for_user)(
                self.user, self.public_id
            )
        except RoomRefused as exc:
            await self.send_frame(protocol.refused_frame(exc.code, exc.message))
            self.access = None
            await self.close(code=CLOSE_REFUSED)
            return
        if self.in_media:
            self.moved_from = event.get("moved_from", "")
        await self.send_frame({"type": "moved", "reason": event.get("reason", "")})
        await self._to_node(
            "room.enter",
            role=self.access.role,
            label=self.access.label,
            record=self.access.record,
            admitted=self.access.admitted,
        )

    async def case_update(self, event: dict[str, Any]) -> None:
        if self.access is None:
            return
        if event.get("event", {}).get("kind") in ("consent_granted", "consent_withdrawn"):
            record = await database_sync_to_async(recording_consent)(self.public_id)
            await self._to_node("room.record", record=record)

    # -- helpers ---------------------------------------------------------------------------

    async def _to_node(self, type_: str, **data: Any) -> None:
        placement = await pool.acall(pool.place_room, self.public_id)
        if placement.moved:
            # this socket is the first to find the room's node gone: every member (this one
            # too) enters the new node and offers again; this message would find nobody there
            await self.channel_layer.group_send(
                media_room_group(self.public_id),
                room_moved_message(placement.node, placement.moved_from, "failover"),
            )
            await self.channel_layer.group_send(
                watch_group(self.public_id), {"type": "watch.moved", "node": placement.node}
            )
            if type_ not in ("room.enter", "room.exit"):
                return
        await self.channel_layer.send(
            node_channel(placement.node),
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

"""The media node's end of the room signaling, reached through the channel layer.

The web process's ``RoomConsumer`` authenticates members and sends ``room.*`` messages to the
``media-node`` channel; this module holds the rooms' live state (lobby, admitted members,
removals, caucus, recording) next to the ``MediaNode`` and answers on each member's own channel
or the room's group. It runs in the media node process (``manage.py medianode``) or,
in the embedded setup (``MEDIA_NODE_INPROCESS``), as a task in the web process consuming the
same channel: one code path either way.

    room.enter    {public_id, member, role, label, reply_to, record, admitted}
    room.offer    {public_id, member, offer, reconnect, ref}
    room.leave    {public_id, member}
    room.exit     {public_id, member, reply_to}       the member's socket closed
    room.media    {public_id, member, audio, video}   self-mute, for the others' display
    room.admit / room.mute / room.remove / room.caucus  {public_id, actor, member, ...}
    room.record   {public_id, record}                 recording consent changed
Replies are ``room.frame`` messages carrying the protocol frame to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.worker import Worker
from django.conf import settings
from django.utils import timezone

from .broadcast.node_messages import BroadcastNodeMessages
from .media.node import MediaNode, OfferRejected
from .protocol import VERSION

logger = logging.getLogger(__name__)

MEDIA_NODE_CHANNEL = "media-node"
HOSTS = frozenset({"expert", "coordinator"})
STATS_INTERVAL = 3.0


def room_group(public_id: str) -> str:
    """The channel-layer group of one hearing's room (all its members' sockets)."""
    return f"room.{public_id}"


def frame_message(frame: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "room.frame", "frame": frame, **extra}


@dataclass
class RoomMember:
    member_id: str
    role: str
    label: str
    channel: str
    admitted: bool = False
    in_media: bool = False
    muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    self_muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    receive_video: bool = True


@dataclass
class RoomState:
    public_id: str
    members: dict[str, RoomMember] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    admitted: set[str] = field(default_factory=set)
    caucus: frozenset[str] | None = None
    record: bool = False
    recording: bool = False
    recording_started_at: Any = None
    quality: dict[str, str] = field(default_factory=dict)


@dataclass
class OfferTurns:
    """One member's offers, answered one at a time in the order they came."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0  # offers holding or waiting for the lock


class RoomDirector:
    """Rooms of this node process: their state, their media, what members are told."""

    def __init__(self, node: MediaNode, layer: Any) -> None:
        self.node = node
        self.layer = layer
        self.rooms: dict[str, RoomState] = {}
        self._stats_task: asyncio.Task[None] | None = None
        self._offer_turns: dict[tuple[str, str], OfferTurns] = {}

    # -- sending ---------------------------------------------------------------------------

    async def _to(self, member: RoomMember, frame: dict[str, Any], **extra: Any) -> None:
        await self.layer.send(member.channel, frame_message(frame, **extra))

    async def _to_channel(self, channel: str, frame: dict[str, Any], **extra: Any) -> None:
        await self.layer.send(channel, frame_message(frame, **extra))

    async def _error(self, channel: str, code: str, message: str, ref_type: str = "") -> None:
        await self._to_channel(
            channel, {"type": "error", "code": code, "message": message, "ref_type": ref_type}
        )

    async def _done(self, actor: RoomMember, action: str, kind: str, **data: Any) -> None:
        """Confirm an expert's action; the actor's consumer records ``kind`` as a CaseEvent, so
        the audit trail holds what happened, not what was asked for."""
        await self._to(
            actor,
            {"type": "done", "action": action, **data},
            record_event={"kind": kind, "data": data},
        )

    def _members_frame(self, room: RoomState) -> dict[str, Any]:
        return {
            "type": "members",
            "members": [
                {
                    "id": m.member_id,
                    "role": m.role,
                    "label": m.label,
                    "admitted": m.admitted,
                    "in_media": m.in_media,
                    "muted": dict(m.muted),
                    "self_muted": dict(m.self_muted),
                    "on_hold": room.caucus is not None and m.member_id not in room.caucus,
                    "quality": room.quality.get(m.member_id, ""),
                }
                for m in room.members.values()
            ],
        }

    async def _announce(self, room: RoomState) -> None:
        await self.layer.group_send(
            room_group(room.public_id), frame_message(self._members_frame(room))
        )

    async def _lobby(self, room: RoomState) -> None:
        waiting = [
            {"id": m.member_id, "role": m.role, "label": m.label}
            for m in room.members.values()
            if not m.admitted
        ]
        for member in room.members.values():
            if member.role in HOSTS:
                await self._to(member, {"type": "lobby", "waiting": waiting})

    async def _layouts(self, room: RoomState) -> None:
        for member in room.members.values():
            if member.in_media and self.node.room(room.public_id):
                slots = self._layout(room, member)
                await self._to(member, {"type": "layout", "slots": slots})

    def _layout(self, room: RoomState, member: RoomMember) -> list[dict[str, Any]]:
        slots = []
        for entry in self.node.layout(room.public_id, member.member_id):
            other = room.members.get(entry["member"])
            slots.append({**entry, "label": other.label if other else ""})
        return slots

    # -- handlers --------------------------------------------------------------------------

    async def enter(self, m: dict[str, Any]) -> None:
        room = self.rooms.setdefault(m["public_id"], RoomState(m["public_id"]))
        member_id, channel = m["member"], m["reply_to"]
        if member_id in room.removed:
            await self._to_channel(
                channel, {"type": "removed", "message": "removed by the mediator"}, close=True
            )
            return
        previous = room.members.get(member_id)
        if previous is not None and previous.channel != channel:
            # the same person opened the room again (another tab or a reconnect): the newest wins
            await self._to(
                previous,
                {"type": "error", "code": "superseded", "message": "", "ref_type": ""},
                close=True,
            )
        member = RoomMember(
            member_id=member_id,
            role=m["role"],
            label=m["label"],
            channel=channel,
            admitted=m["role"] in HOSTS or member_id in room.admitted or bool(m.get("admitted")),
            in_media=bool(previous and previous.in_media),
            muted=previous.muted if previous else {"audio": False, "video": False},
        )
        room.members[member_id] = member
        room.record = bool(m.get("record"))
        await self._to(
            member,
            {
                "type": "hello",
                "v": VERSION,
                "me": {"id": member_id, "role": member.role, "label": member.label},
                "recording": room.recording,
                "admitted": member.admitted,
            },
        )
        if not member.admitted:
            await self._to(member, {"type": "waiting"})
        if room.caucus is not None:
            await self._to(member, self._caucus_frame(room, member))
        await self._lobby(room)
        await self._announce(room)
        self._ensure_stats()

    async def offer(self, m: dict[str, Any]) -> None:
        """Answer a member's offer. Offers run as tasks of their own (ICE gathering takes a
        moment), so two from one member (a double join, a reconnect while joining) would both
        find the member new: each would make a connection and only one would be kept, leaving the
        other open. They take turns instead; the later one replaces the earlier connection."""
        key = (m.get("public_id", ""), m.get("member", ""))
        turns = self._offer_turns.setdefault(key, OfferTurns())
        turns.waiting += 1
        try:
            async with turns.lock:
                await self._offer(m)
        finally:
            turns.waiting -= 1
            if not turns.waiting:
                del self._offer_turns[key]

    async def _offer(self, m: dict[str, Any]) -> None:
        room = self.rooms.get(m["public_id"])
        member = room.members.get(m["member"]) if room else None
        type_ = "reconnect" if m.get("reconnect") else "join"
        if room is None or member is None:
            await self._error(m["reply_to"], "not_in_room", "enter the room first", type_)
            return
        if not member.admitted:
            await self._error(member.channel, "not_admitted", "wait to be admitted", type_)
            return
        media_room = self.node.room(room.public_id)
        first = not (media_room and member.member_id in media_room.members)
        try:
            if first:
                answer = await self.node.join(
                    room.public_id, member.member_id, member.role, m["offer"]
                )
            else:
                answer = await self.node.restart_ice(room.public_id, member.member_id, m["offer"])
        except OfferRejected as exc:
            await self._error(member.channel, "bad_offer", str(exc), type_)
            return
        member.in_media = True
        if any(member.muted.values()):
            self.node.mute(room.public_id, member.member_id, **member.muted)
        if not member.receive_video:
            self.node.set_receive(room.public_id, member.member_id, video=False)
        if room.caucus is not None:
            self._apply_caucus(room)
        await self._to(
            member,
            {
                "type": "answer",
                "sdp": answer,
                "layout": self._layout(room, member),
                "ref": m.get("ref"),
            },
            joined=first,
        )
        await self._layouts(room)
        await self._announce(room)
        await self._maybe_record(room)

    async def leave(self, m: dict[str, Any]) -> None:
        room = self.rooms.get(m["public_id"])
        member = room.members.get(m["member"]) if room else None
        if room is None or member is None:
            return
        await self._leave_media(room, member)
        await self._to(member, {"type": "left"})
        await self._announce(room)

    async def exit(self, m: dict[str, Any]) -> None:
        room = self.rooms.get(m["public_id"])
        member = room.members.get(m["member"]) if room else None
        if room is None or member is None or member.channel != m["reply_to"]:
            return
        await self._leave_media(room, member)
        room.members.pop(member.member_id, None)
        await self._lobby(room)
        await self._announce(room)

    async def media(self, m: dict[str, Any]) -> None:
        room = self.rooms.get(m["public_id"])
        member = room.members.get(m["member"]) if room else None
        if member is None:
            return
        # the page says what is on; the others are shown what is off
        member.self_muted = {"audio": not m["audio"], "video": not m["video"]}
        if "receive_video" in m:
            member.receive_video = bool(m["receive_video"])
            if member.in_media:
                self.node.set_receive(room.public_id, member.member_id, video=member.receive_video)
        await self._announce(room)

    async def admit(self, m: dict[str, Any]) -> None:
        room, actor, target = self._actor_and_target(m)
        if room is None:
            return
        if target is None:
            await self._error(actor.channel, "bad_member", "unknown room member", "admit")
            return
        if target.admitted:
            # A second click, or an admit sent on an older lobby list: nothing happens again
            # (another "admitted" would make the member's page start its media over).
            await self._lobby(room)
            return
        target.admitted = True
        room.admitted.add(target.member_id)
        await self._to(target, {"type": "admitted"})
        await self._done(actor, "admit", "room_member_admitted", member=target.member_id)
        await self._lobby(room)
        await self._announce(room)

    async def mute(self, m: dict[str, Any]) -> None:
        room, actor, target = self._actor_and_target(m)
        if room is None:
            return
        if target is None:
            await self._error(actor.channel, "bad_member", "unknown room member", "mute")
            return
        for kind in ("audio", "video"):
            if m.get(kind) is not None:
                target.muted[kind] = bool(m[kind])
        if target.in_media:
            self.node.mute(room.public_id, target.member_id, **target.muted)
        await self._done(
            actor, "mute", "room_member_muted", member=target.member_id, **target.muted
        )
        await self._announce(room)

    async def remove(self, m: dict[str, Any]) -> None:
        room, actor, target = self._actor_and_target(m)
        if room is None:
            return
        if target is None or target.member_id == actor.member_id:
            await self._error(actor.channel, "bad_member", "unknown room member", "remove")
            return
        room.removed.add(target.member_id)
        await self._leave_media(room, target)
        room.members.pop(target.member_id, None)
        await self._to(
            target, {"type": "removed", "message": "removed by the mediator"}, close=True
        )
        await self._done(actor, "remove", "room_member_removed", member=target.member_id)
        await self._lobby(room)
        await self._announce(room)

    async def caucus(self, m: dict[str, Any]) -> None:
        room, actor, target = self._actor_and_target(m, allow_none=True)
        if room is None:
            return
        if m.get("member") is None:
            room.caucus = None
        else:
            if target is None or not target.in_media or not actor.in_media:
                await self._error(actor.channel, "bad_member", "both must be in the room", "caucus")
                return
            room.caucus = frozenset({actor.member_id, target.member_id})
        self._apply_caucus(room)
        for member in room.members.values():
            await self._to(member, self._caucus_frame(room, member))
        if room.caucus is None:
            await self._done(actor, "caucus", "room_caucus_ended")
        else:
            await self._done(actor, "caucus", "room_caucus_started", member=target.member_id)
        await self._announce(room)

    async def record(self, m: dict[str, Any]) -> None:
        room = self.rooms.get(m["public_id"])
        if room is None:
            return
        room.record = bool(m["record"])
        await self._maybe_record(room)

    # -- helpers ---------------------------------------------------------------------------

    def _actor_and_target(
        self, m: dict[str, Any], *, allow_none: bool = False
    ) -> tuple[RoomState | None, RoomMember | None, RoomMember | None]:
        room = self.rooms.get(m["public_id"])
        actor = room.members.get(m["actor"]) if room else None
        # the consumer checked the role already; the node does not take an order from anyone else
        if room is None or actor is None or actor.role != "expert":
            return None, None, None
        target = room.members.get(m.get("member") or "")
        if target is None and not allow_none:
            return room, actor, None
        return room, actor, target

    def _caucus_frame(self, room: RoomState, member: RoomMember) -> dict[str, Any]:
        return {
            "type": "caucus",
            "active": room.caucus is not None,
            "members": sorted(room.caucus or ()),
            "on_hold": room.caucus is not None and member.member_id not in room.caucus,
        }

    def _apply_caucus(self, room: RoomState) -> None:
        media_room = self.node.room(room.public_id)
        if media_room is None:
            return
        caucus = None
        if room.caucus is not None:
            caucus = [m for m in room.caucus if m in media_room.members]
        self.node.set_caucus(room.public_id, caucus)

    async def _leave_media(self, room: RoomState, member: RoomMember) -> None:
        if not member.in_media:
            return
        member.in_media = False
        if room.caucus is not None and member.member_id in room.caucus:
            room.caucus = None
            self._apply_caucus(room)
            for other in room.members.values():
                if other is not member:
                    await self._to(other, self._caucus_frame(room, other))
        still_recording = room.recording and any(
            m.in_media for m in room.members.values() if m is not member
        )
        if room.recording and not still_recording:
            await self._stop_recording(room)
        await self.node.leave(room.public_id, member.member_id)
        await self._layouts(room)

    async def _maybe_record(self, room: RoomState) -> None:
        in_media = any(m.in_media for m in room.members.values())
        if room.record and in_media and not room.recording:
            directory = Path(settings.MEDIA_ROOT) / "private" / "recordings" / room.public_id
            started = timezone.now()
            path = directory / f"{started:%Y%m%dT%H%M%S}-{int(time.time() * 1000) % 1000:03d}.mp4"
            await self.node.start_recording(room.public_id, str(path))
            room.recording = True
            room.recording_started_at = started
            await self.layer.group_send(
                room_group(room.public_id), frame_message({"type": "recording", "active": True})
            )
        elif room.recording and not room.record:
            await self._stop_recording(room)

    async def _stop_recording(self, room: RoomState) -> None:
        result = await self.node.stop_recording(room.public_id)
        room.recording = False
        await self.layer.group_send(
            room_group(room.public_id), frame_message({"type": "recording", "active": False})
        )
        if result is None:
            return
        from .services import recording_store

        try:
            await database_sync_to_async(recording_store)(
                hearing_public_id=room.public_id,
                path=result["path"],
                sha256=result["sha256"],
                duration=result["duration"],
                size=result["size"],
                started_at=room.recording_started_at,
            )
        except Exception:
            logger.exception("recording of a room could not be stored")

    def _ensure_stats(self) -> None:
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.get_running_loop().create_task(self._stats_loop())

    async def _stats_loop(self) -> None:
        while self.rooms:
            await asyncio.sleep(STATS_INTERVAL)
            for room in list(self.rooms.values()):
                if not self.node.room(room.public_id):
                    continue
                with contextlib.suppress(Exception):
                    stats = await self.node.stats(room.public_id)
                    quality = {mid: s["quality"] for mid, s in stats.items()}
                    if quality != room.quality:
                        room.quality = quality
                        await self._announce(room)

    async def shutdown(self) -> None:
        for room in list(self.rooms.values()):
            if room.recording:
                await self._stop_recording(room)
        self.rooms.clear()
        if self._stats_task is not None:
            self._stats_task.cancel()
        await self.node.shutdown()


class RoomNodeMessages:
    """Handlers of the ``room.*`` messages; mixed into the media node's channel consumer."""

    channel_layer: Any

    def _director(self) -> RoomDirector:
        return get_director()

    async def room_enter(self, message: dict[str, Any]) -> None:
        await self._director().enter(message)

    async def room_offer(self, message: dict[str, Any]) -> None:
        # an offer takes the node a moment (ICE gathering); other rooms need not wait for it
        director = self._director()
        task = asyncio.get_running_loop().create_task(director.offer(message))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def room_leave(self, message: dict[str, Any]) -> None:
        await self._director().leave(message)

    async def room_exit(self, message: dict[str, Any]) -> None:
        await self._director().exit(message)

    async def room_media(self, message: dict[str, Any]) -> None:
        await self._director().media(message)

    async def room_admit(self, message: dict[str, Any]) -> None:
        await self._director().admit(message)

    async def room_mute(self, message: dict[str, Any]) -> None:
        await self._director().mute(message)

    async def room_remove(self, message: dict[str, Any]) -> None:
        await self._director().remove(message)

    async def room_caucus(self, message: dict[str, Any]) -> None:
        await self._director().caucus(message)

    async def room_record(self, message: dict[str, Any]) -> None:
        await self._director().record(message)


class MediaNodeConsumer(RoomNodeMessages, BroadcastNodeMessages, AsyncConsumer):
    """The ``media-node`` channel's consumer (``manage.py medianode``): the rooms, and their
    livestreams (``broadcast.*``, see ``streaming.broadcast.node_messages``)."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        # One message that fails (a reply lost while Redis restarts, a malformed message) must not
        # end the consumer: the next message would start a new one, but the media sessions it
        # holds live on only as long as this process keeps taking messages.
        try:
            await super().dispatch(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("media node: %s failed", message.get("type", "?"))


class NodeWorker(Worker):
    """Channels' worker for the ``media-node`` channel, that outlives the channel layer going
    away: a failed receive (Redis restarting) is retried instead of ending the listener, which
    would leave the node holding media sessions that no message reaches any more."""

    async def listener(self, channel: str) -> None:
        pause = 0.2
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever the layer's client raises
                logger.warning("media node: receiving failed (%s); retrying in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.2
            if not message.get("type"):
                logger.warning("media node: a message without a type was dropped")
                continue
            scope = {"type": "channel", "channel": channel}
            instance_queue = self.get_or_create_application_instance(channel, scope)
            await instance_queue.put(message)


def node_worker() -> NodeWorker:
    from channels.routing import ChannelNameRouter

    return NodeWorker(
        application=ChannelNameRouter({MEDIA_NODE_CHANNEL: MediaNodeConsumer.as_asgi()}),
        channels=[MEDIA_NODE_CHANNEL],
        channel_layer=get_channel_layer(),
    )


# -- the process's node ------------------------------------------------------------------------

_director: RoomDirector | None = None
_worker_task: asyncio.Task[None] | None = None
_background: set[asyncio.Task[Any]] = set()


def node_ice_servers() -> list[Any]:
    from .ice import node_ice_servers as configured

    return configured()


def get_media_node() -> MediaNode:
    return get_director().node


def get_director() -> RoomDirector:
    global _director
    if _director is None:
        node = MediaNode(ice_servers=node_ice_servers())
        _director = RoomDirector(node, get_channel_layer())
    return _director


def ensure_inprocess_worker() -> None:
    """Consume the media-node channel inside this process (the embedded setup, tests)."""
    global _worker_task, _director
    loop = asyncio.get_running_loop()
    if _worker_task is not None and not _worker_task.done():
        if _worker_task.get_loop() is loop:
            return
        # Left by an event loop that is gone (a test's scenario): its node, and the station
        # attached to it, cannot serve this one.
        from .broadcast.station import forget_station

        forget_station()
        _worker_task = None
        _director = None
    _worker_task = loop.create_task(node_worker().arun(), name="media-node-worker")


async def reset_media_node() -> None:
    """Stop the process's node and worker (tests run each scenario in a fresh event loop), and
    the livestream station attached to that node."""
    global _director, _worker_task
    from .broadcast.station import reset_station

    await reset_station()
    if _worker_task is not None:
        _worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await _worker_task
        _worker_task = None
    if _director is not None:
        await _director.shutdown()
        _director = None

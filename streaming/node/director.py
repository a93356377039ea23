"""The rooms of a media node: their live state next to the ``MediaNode`` that carries their media.

The web process's ``RoomConsumer`` authenticates members and sends ``room.*`` messages to the
node's channel (``streaming.plane.room_node_channel``); the director holds each room's lobby,
admitted members, removals, caucus and recording, and answers on each member's own channel or
the room's group (``streaming.plane.media_room_group``) with ready-made protocol frames.

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

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from streaming.plane import media_room_group, room_frame_message
from streaming.protocol import VERSION
from streaming.selectors import recorded_files, room_state_from_trail
from streaming.services import (
    ShareRefused,
    recording_store,
    screen_share_air_check,
    screen_share_start_check,
)

from .media.node import MediaNode, OfferRejected

logger = logging.getLogger(__name__)

HOSTS = frozenset({"expert", "coordinator"})
STATS_INTERVAL = 3.0


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
    share: str | None = None  # the member sharing their screen (one at a time)
    share_on_air: bool = False  # the mediator put it on the livestream
    moving: bool = False  # to another node (a drain): media stays here until members close it
    # while moving: when each member had its answer from the new node (``room.gone``)
    answered: dict[str, float] = field(default_factory=dict)


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
        self._sends: set[asyncio.Task[None]] = set()
        previous = node.on_event

        def on_event(room_id: str, member_id: str, event: str, data: dict[str, Any]) -> None:
            if previous is not None:
                previous(room_id, member_id, event, data)
            if event == "speaker" and room_id in self.rooms:
                # the node's speaker detection: a small frame to the room (rate-limited there)
                frame = {"type": "speaker", "member": member_id, "level": data.get("level")}
                task = asyncio.get_running_loop().create_task(
                    self.layer.group_send(media_room_group(room_id), room_frame_message(frame))
                )
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

        node.on_event = on_event
        self._opening: dict[str, asyncio.Lock] = {}

    # -- sending ---------------------------------------------------------------------------

    async def _to(self, member: RoomMember, frame: dict[str, Any], **extra: Any) -> None:
        await self.layer.send(member.channel, room_frame_message(frame, **extra))

    async def _to_channel(self, channel: str, frame: dict[str, Any], **extra: Any) -> None:
        await self.layer.send(channel, room_frame_message(frame, **extra))

    async def _error(self, channel: str, code: str, message: str, ref: str = "") -> None:
        # the one error frame of every socket (cloudbench.sockets.error_frame)
        await self._to_channel(
            channel, {"type": "error", "code": code, "message": message, "ref": ref}
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
            media_room_group(room.public_id), room_frame_message(self._members_frame(room))
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

    async def _open_room(self, public_id: str) -> RoomState:
        """The room, made on its first member's entry on this node from what the database and
        the audit trail say (admissions, removals, caucus): the same whether the hearing starts
        here or its room comes from a node that died or drained. A recording a dead node left
        unfinished is kept with its hash."""
        room = self.rooms.get(public_id)
        if room is not None:
            return room
        lock = self._opening.setdefault(public_id, asyncio.Lock())
        async with lock:
            room = self.rooms.get(public_id)
            if room is not None:
                return room
            room = RoomState(public_id)
            try:
                trail = await database_sync_to_async(room_state_from_trail)(public_id)
            except Exception:
                logger.exception("room %s: its state could not be read; it starts empty", public_id)
            else:
                room.admitted = set(trail["admitted"])
                room.removed = set(trail["removed"])
                room.caucus = frozenset(trail["caucus"]) if trail["caucus"] else None
                room.record = trail["record"]
                await self._keep_orphaned_recordings(public_id)
            self.rooms[public_id] = room
        self._opening.pop(public_id, None)
        return room

    async def _keep_orphaned_recordings(self, public_id: str) -> None:
        try:
            kept = await database_sync_to_async(_keep_orphaned_recordings, thread_sensitive=False)(
                public_id
            )
        except Exception:
            logger.exception("room %s: an unfinished recording could not be kept", public_id)
            return
        for name in kept:
            logger.info("room %s: kept the recording %s its node left", public_id, name)

    async def enter(self, m: dict[str, Any]) -> None:
        room = await self._open_room(m["public_id"])
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
                {"type": "error", "code": "superseded", "message": "", "ref": ""},
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
        if room.share is not None:
            await self._to(member, self._share_frame(room))
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
            await self._error(
                m["reply_to"], "not_in_room", "enter the room first", m.get("ref") or type_
            )
            return
        if not member.admitted:
            await self._error(
                member.channel, "not_admitted", "wait to be admitted", m.get("ref") or type_
            )
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
            await self._error(member.channel, "bad_offer", str(exc), m.get("ref") or type_)
            return
        member.in_media = True
        if any(member.muted.values()):
            self.node.mute(room.public_id, member.member_id, **member.muted)
        if not member.receive_video:
            self.node.set_receive(room.public_id, member.member_id, video=False)
        if room.caucus is not None:
            self._apply_caucus(room)
        if room.share is not None:
            self._apply_share(room)
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
        if not room.members:
            await self._close(room)
            return
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
        if room.caucus is not None and room.share_on_air:
            # a private talk is never on air, and the share stays off when it ends
            room.share_on_air = False
            self._apply_share(room)
            await self._done(
                actor, "share_air", "room_share_off_air", member=room.share, reason="caucus"
            )
            await self._share_announce(room)
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

    async def share(self, m: dict[str, Any]) -> None:
        """A member starts or stops sharing their screen (their page sends the screen in place
        of the camera); the room shows it large, the livestream only once the mediator says."""
        room = self.rooms.get(m["public_id"])
        member = room.members.get(m["member"]) if room else None
        if room is None or member is None:
            return
        if m["active"]:
            try:
                screen_share_start_check(
                    sharing=room.share, member=member.member_id, in_media=member.in_media
                )
            except ShareRefused as exc:
                await self._error(member.channel, exc.code, exc.message, "share")
                return
            if room.share == member.member_id:
                await self._to(member, self._share_frame(room))
                return
            room.share, room.share_on_air, kind = member.member_id, False, "room_share_started"
        else:
            if room.share != member.member_id:
                return
            room.share, room.share_on_air, kind = None, False, "room_share_stopped"
        self._apply_share(room)
        await self._to(
            member,
            {"type": "done", "action": "share"},
            record_event={"kind": kind, "data": {"member": member.member_id}},
        )
        await self._share_announce(room)

    async def share_air(self, m: dict[str, Any]) -> None:
        room = self.rooms.get(m["public_id"])
        actor = room.members.get(m["actor"]) if room else None
        if room is None or actor is None:
            return
        try:
            screen_share_air_check(
                sharing=room.share,
                on_air=m["on_air"],
                actor_role=actor.role,
                caucus=room.caucus is not None,
            )
        except ShareRefused as exc:
            await self._error(actor.channel, exc.code, exc.message, "share_air")
            return
        on_air = bool(m["on_air"]) and room.share is not None
        if on_air == room.share_on_air:
            await self._to(actor, self._share_frame(room))
            return
        room.share_on_air = on_air
        self._apply_share(room)
        kind = "room_share_on_air" if on_air else "room_share_off_air"
        await self._done(actor, "share_air", kind, member=room.share or "")
        await self._share_announce(room)

    def _share_frame(self, room: RoomState) -> dict[str, Any]:
        return {"type": "share", "member": room.share, "on_air": room.share_on_air}

    async def _share_announce(self, room: RoomState) -> None:
        await self.layer.group_send(
            media_room_group(room.public_id), room_frame_message(self._share_frame(room))
        )

    def _apply_share(self, room: RoomState) -> None:
        if self.node.room(room.public_id) is not None:
            self.node.set_share(room.public_id, room.share, on_air=room.share_on_air)

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
            # The caucus ends with a member's leaving, and the audit trail says so (a node that
            # rebuilds the room from it must not bring the caucus back); one of those who stay
            # records it, a host first. A room moving to another node ends nothing.
            others = [other for other in room.members.values() if other is not member]
            recorder = None
            if not room.moving:
                recorder = next((o for o in others if o.role in HOSTS), None) or next(
                    iter(others), None
                )
            for other in others:
                extra = {}
                if other is recorder:
                    extra["record_event"] = {
                        "kind": "room_caucus_ended",
                        "data": {"member": member.member_id, "reason": "left"},
                    }
                await self._to(other, self._caucus_frame(room, other), **extra)
        if room.share == member.member_id:
            room.share, room.share_on_air = None, False
            self._apply_share(room)
            await self._share_announce(room)
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
                media_room_group(room.public_id),
                room_frame_message({"type": "recording", "active": True}),
            )
        elif room.recording and not room.record:
            await self._stop_recording(room)

    async def _stop_recording(self, room: RoomState, *, announce: bool = True) -> None:
        result = await self.node.stop_recording(room.public_id)
        room.recording = False
        if announce:
            await self.layer.group_send(
                media_room_group(room.public_id),
                room_frame_message({"type": "recording", "active": False}),
            )
        if result is None:
            return
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

    async def _close(self, room: RoomState) -> None:
        """The room's last member left this node: it forgets the room (its state is in the
        audit trail, for whichever node holds it next)."""
        if room.recording:
            await self._stop_recording(room)
        if self.node.room(room.public_id):
            await self.node.close_room(room.public_id)
        self.rooms.pop(room.public_id, None)

    async def finish_recording(self, public_id: str) -> None:
        """The room is about to move: its recording here ends (and is kept) before the new node
        starts the next file."""
        room = self.rooms.get(public_id)
        if room is None:
            return
        room.record = False
        if room.recording:
            await self._stop_recording(room, announce=False)

    async def gone(self, m: dict[str, Any]) -> None:
        """A member's page has its answer from the room's new node: this one lets the member go
        without telling anybody. While the room moves away (a drain: make before break) the
        member's media stays here until its page closes the old connection (``wait_gone``), so
        the others see it until they have it from the new node too."""
        room = self.rooms.get(m["public_id"])
        if room is not None and room.moving:
            room.answered.setdefault(m["member"], time.monotonic())
            return
        member = room.members.pop(m["member"], None) if room else None
        if member is not None and self.node.room(room.public_id):
            with contextlib.suppress(Exception):
                await self.node.leave(room.public_id, member.member_id)

    def start_move(self, public_id: str) -> None:
        """The room is about to move to another node (``gone`` keeps media until the end)."""
        room = self.rooms.get(public_id)
        if room is not None:
            room.moving = True

    def _still_here(self, room: RoomState) -> list[str]:
        """The room's members whose media still comes through this node."""
        media_room = self.node.room(room.public_id)
        out = []
        for member in room.members.values():
            if not member.in_media or media_room is None:
                continue
            held = media_room.members.get(member.member_id)
            if held is None or held.pc is None:
                continue
            if held.pc.connectionState in ("closed", "failed"):
                continue
            out.append(member.member_id)
        return out

    async def wait_gone(self, public_id: str, within: float) -> None:
        """Until every member of the room has closed its connection to this node (its page has
        its media from the new node): at most ``within`` s, or ``within`` s after the member
        had its answer from the new node (it is on its way; a loaded machine connects slowly)."""
        deadline = time.monotonic() + within
        while True:
            room = self.rooms.get(public_id)
            here = self._still_here(room) if room is not None else []
            if not here:
                return
            now = time.monotonic()
            if all(
                now >= max(deadline, room.answered.get(member, 0.0) + within) for member in here
            ):
                return
            await asyncio.sleep(0.1)

    def held_rooms(self) -> set[str]:
        return set(self.rooms)

    async def hand_over(self, public_id: str) -> None:
        """The room moved to another node: finish its recording here (kept with its hash), and
        close its members' media without telling them anything (they are offering to the new
        node already)."""
        room = self.rooms.pop(public_id, None)
        if room is None:
            return
        if room.recording:
            await self._stop_recording(room, announce=False)
        if self.node.room(public_id):
            await self.node.close_room(public_id)

    async def shutdown(self) -> None:
        for room in list(self.rooms.values()):
            if room.recording:
                await self._stop_recording(room)
        self.rooms.clear()
        if self._stats_task is not None:
            self._stats_task.cancel()
        await self.node.shutdown()


def _keep_orphaned_recordings(public_id: str) -> list[str]:
    """Store the hearing's recording files that have no record (a node died while writing
    them), each with its hash; their names."""
    root = Path(settings.MEDIA_ROOT).resolve()
    directory = root / "private" / "recordings" / public_id
    if not directory.is_dir():
        return []
    known = recorded_files(public_id)
    kept = []
    for path in sorted(directory.glob("*.mp4")):
        if str(path.resolve().relative_to(root)) in known:
            continue
        recording_store(hearing_public_id=public_id, path=str(path), **_recording_facts(path))
        kept.append(path.name)
    return kept


def _recording_facts(path: Path) -> dict[str, Any]:
    """Hash, size, length and start of a recording file a node left unfinished (a fragmented
    MP4 plays up to its last fragment). A sealed file (encrypted at rest) is first sealed again
    as a finished file, up to its last whole chunk; its hash and length are of the recording
    itself, read through its key."""
    import hashlib
    from datetime import UTC, datetime

    import av

    from privacy.files import finish_unfinished
    from privacy.sealed import SealedReader, is_sealed

    sealed = is_sealed(path)
    if sealed:
        finish_unfinished(path)
        with SealedReader(path) as reader:
            sha256 = reader.sealed_sha256  # hashed as it was sealed again
    else:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        sha256 = digest.hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{sha256}  {path.name}\n")
    duration = 0.0
    try:
        with (
            SealedReader(path) if sealed else path.open("rb") as source,
            av.open(source) as container,
        ):
            for stream in container.streams:
                if stream.duration and stream.time_base:
                    duration = max(duration, float(stream.duration * stream.time_base))
            if not duration and container.duration:
                duration = container.duration / 1_000_000
    except Exception:  # noqa: BLE001 - a file cut before its first fragment: no length to read
        logger.warning("recording %s: its length could not be read", path.name)
    try:
        started = datetime.strptime(path.name[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        started = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return {
        "sha256": sha256,
        "size": path.stat().st_size,
        "duration": duration,
        "started_at": started,
    }

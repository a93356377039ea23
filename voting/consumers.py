"""The audience WebSocket of a live room: `/ws/live/<hearing public id>/?after=<last seq>`.

Thin: authenticate, validate (voting.protocol), call a service, reply. Room events arrive from the
channel layer already encoded (one JSON text per batch) and are forwarded unchanged."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from channels.db import database_sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _

from cloudbench.errors import DomainError, NotPermitted
from cloudbench.sockets import CLOSE_NOT_FOUND, ProtocolConsumer
from mediation_room.selectors import case_role_for_user

from . import broadcast, protocol, selectors
from .models import Room
from .services import comments, polling, rooms

# The scope extension of cloudbench.webserver (named here: importing it would start Twisted).
PREPARED_FRAMES = "cloudbench.prepared_frames"

# Who may watch a room changes rarely (a consent withdrawn, a poll opened); when hundreds of
# viewers join at once they share one answer for a couple of seconds instead of each running the
# same queries. What depends on the viewer (their role) is still asked per viewer.
ROOM_STATE_TTL = 2.0
_room_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _shared_room_state(public_id: str) -> dict[str, Any] | None:
    now = time.monotonic()
    cached = _room_cache.get(public_id)
    if cached and cached[0] > now:
        return cached[1]
    try:
        hearing = selectors.hearing_by_public_id(public_id)
    except Http404:
        return None
    room = rooms.room_for_hearing(hearing)
    state = {
        "room": room,
        "case": hearing.case,
        "public": selectors.room_is_public(room),
        "polls": [
            polling.poll_payload(p, with_counts=p.results_visible)
            for p in selectors.open_polls(room)
        ],
    }
    if len(_room_cache) > 1000:
        _room_cache.clear()
    _room_cache[public_id] = (now + ROOM_STATE_TTL, state)
    return state


def _room_state(public_id: str, user) -> dict[str, Any] | None:
    shared = _shared_room_state(public_id)
    if shared is None:
        return None
    signed_in = bool(user and user.is_authenticated)
    role = case_role_for_user(shared["case"], user) if signed_in else None
    moderator = signed_in and selectors.is_room_moderator(shared["room"], user)
    return {
        **shared,
        "may_watch": shared["public"] or role is not None or moderator,
        # may watch whether or not the room is public
        "insider": role is not None or moderator,
        "can_comment": signed_in,
        "moderator": moderator,
    }


def _backlog(room_id: int, after: int) -> tuple[list[dict[str, Any]], int]:
    """Events after `after` and the room's last seq, read after joining the group. `after` -1
    is a fresh viewer: no history over the socket (the page shows recent comments)."""
    if after < 0:
        last = selectors.room_last_seq(room_id)
        return [], last
    # The room's last seq is read before the events: every event up to it is committed, so the
    # read below holds all of them. Read after, it could name events committed between the two
    # reads, and their live frames would be dropped as repeats of a backlog that lacks them.
    last = selectors.room_last_seq(room_id)
    room = Room(pk=room_id)
    events: list[dict[str, Any]] = []
    while True:
        page = selectors.events_after(room, after)
        events.extend(page)
        if len(page) < selectors.EVENTS_PAGE:
            break
        after = page[-1]["seq"]
    return events, max(last, events[-1]["seq"] if events else 0)


class LiveRoomConsumer(ProtocolConsumer):
    limits = protocol.limits()
    message_types = protocol.MESSAGE_TYPES
    room_id: int | None = None
    # Events up to this seq were sent from the database on (re)connect; live frames at or below it
    # are repeats and are dropped, so a reconnecting client gets neither gaps nor duplicates.
    backlog_upto = 0
    live = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.early: list[dict[str, Any]] = []
        # The server's way to write a frame prepared once straight to this socket
        # (cloudbench.webserver), or None.
        self.frames = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Room events touch no database, so they skip the close_old_connections() thread hop that
        # Channels makes before every handler: at 2,000 viewers that hop, not the socket write,
        # would be the cost of a broadcast. Everything else goes the usual way.
        # The connect handler's database work goes through database_sync_to_async, which closes
        # stale connections itself, so it skips the hop too (it would queue every joining viewer
        # behind one thread).
        kind = message["type"]
        if kind == "websocket.connect":
            await self.websocket_connect(message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        public_id = self.scope["url_route"]["kwargs"]["public_id"]
        user = self.scope.get("user")
        await self.accept()
        state = await database_sync_to_async(_room_state, thread_sensitive=False)(public_id, user)
        if state is None or not state["may_watch"]:
            # The same answer whether the room does not exist or is not public.
            await self.send_error("not_found", _("This session is not public."))
            await self.close(code=CLOSE_NOT_FOUND)
            return
        room: Room = state["room"]
        self.room_id = room.pk
        self.public_id = public_id
        self.insider = state["insider"]
        self.frames = self.scope.get("extensions", {}).get(PREPARED_FRAMES)
        self.user = user
        broadcast.bind_loop(asyncio.get_running_loop())
        # Join first, then read: anything committed after the read arrives through the group.
        await self.join_room(room.pk, state["case"].pk)
        after = self._after_param()
        events, last = await database_sync_to_async(_backlog, thread_sensitive=False)(
            room.pk, after
        )
        self.backlog_upto = last
        await self.send(
            protocol.frame(
                "welcome",
                room=public_id,
                seq=last,
                can_comment=state["can_comment"],
                moderator=state["moderator"],
                slow_mode_seconds=room.slow_mode_seconds,
                review_all=room.review_all,
                polls=state["polls"],
            )
        )
        for start in range(0, len(events), 200):
            await self.send(protocol.events_frame(events[start : start + 200]))
        while self.early:
            waiting, self.early = self.early, []
            for message in waiting:
                await self.room_frame(message)
        self.live = True

    def _after_param(self) -> int:
        try:
            return max(-1, int(self.query_param("after", "-1")))
        except ValueError:
            return -1

    async def join_room(self, room_id: int, case_id: int) -> None:
        """Room events reach this socket through this process's hub for the room."""
        await broadcast.hub_join(room_id, self, case_id)

    async def leave_room(self) -> None:
        await broadcast.hub_leave(self.room_id, self)

    async def disconnect(self, code: int) -> None:
        if self.room_id is None:
            return
        await self.leave_room()

    def serving(self) -> bool:
        return self.room_id is not None

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        message = protocol.read_message(frame)
        try:
            await self.handle(message)
        except (DomainError, PermissionDenied) as exc:
            code = getattr(exc, "code", "forbidden")
            text = getattr(exc, "message", "") or _("You may not do this.")
            await self.send_error(code, text, ref=_ref(message))

    async def handle(self, message: protocol.Message) -> None:
        if isinstance(message, protocol.Ping):
            await self.send(protocol.frame("pong"))
        elif isinstance(message, protocol.Resume):
            events, _last = await database_sync_to_async(_backlog, thread_sensitive=False)(
                self.room_id, message.after
            )
            for start in range(0, len(events), 200):
                await self.send(protocol.events_frame(events[start : start + 200]))
        elif isinstance(message, protocol.PostComment):
            if not self.user.is_authenticated:
                raise NotPermitted(_("Sign in to comment or vote."), code="sign_in")
            # Not thread-sensitive: comments from many connections are stored in parallel (each
            # worker thread has its own database connection); the room's row lock orders them.
            result = await database_sync_to_async(_comment, thread_sensitive=False)(
                self.room_id, self.user, message.client_id, message.text
            )
            await self.send(protocol.frame("comment.ack", **result))
        elif isinstance(message, protocol.CastVote):
            if not self.user.is_authenticated:
                raise NotPermitted(_("Sign in to comment or vote."), code="sign_in")
            await database_sync_to_async(_vote, thread_sensitive=False)(
                self.room_id, self.user, message.poll, message.option
            )
            await self.send(protocol.frame("vote.ack", poll=message.poll, option=message.option))

    async def room_not_public(self) -> None:
        """Called by the room hub when the room stopped being public: a viewer who is not a
        member of the case nor a moderator is told and let go (the page stops reconnecting)."""
        _room_cache.pop(self.public_id, None)
        if self.insider:
            return
        self.live = False
        await self.send_error("not_found", _("This session is not public."))
        await self.close(code=CLOSE_NOT_FOUND)

    def deliver_now(self, message: dict[str, Any]) -> bool:
        """The hub's fast path: True when the batch is taken care of (written straight to the
        socket, or already sent with the backlog); False when it needs `deliver`."""
        frames = self.frames
        if frames is None or not self.live or message["first"] <= self.backlog_upto:
            return self.live and message["last"] <= self.backlog_upto
        prepared = message["prepared"]
        if prepared is None:
            prepared = message["prepared"] = frames.prepare(message["text"])
        frames.send(prepared)
        return True

    async def deliver(self, message: dict[str, Any]) -> None:
        """Called by this process's room hub for every batch. Until the welcome and the backlog
        are out, batches wait, so the client sees them in order and without repeats."""
        if not self.live:
            self.early.append(message)
            return
        await self.room_frame(message)

    async def room_frame(self, message: dict[str, Any]) -> None:
        if message["last"] <= self.backlog_upto:
            return
        if message["first"] <= self.backlog_upto:
            data = json.loads(message["text"])
            fresh = [e for e in data["events"] if e["seq"] > self.backlog_upto]
            await self.send(protocol.events_frame(fresh))
            return
        await self.base_send(message["send"])


def _ref(message: protocol.Message) -> str:
    return getattr(message, "client_id", "") or getattr(message, "poll", "")


def _comment(room_id: int, user, client_id: str, text: str) -> dict[str, Any]:
    result = comments.comment_post(
        room=Room(pk=room_id), author=user, client_id=client_id, text=text
    )
    comment = result.comment
    return {
        "client_id": client_id,
        "id": comment.pk,
        "state": comment.state,
        "seq": comment.seq,
        "duplicate": not result.created,
    }


def _vote(room_id: int, user, poll_public_id: str, option: int) -> None:
    poll = selectors.poll_lookup(room=Room(pk=room_id), poll_public_id=poll_public_id)
    polling.vote_cast(poll=poll, user=user, option_position=option)

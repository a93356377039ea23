"""The broadcasts of one media node process: one per live public hearing, keyed by its public id.

The station decides what viewers see from three inputs and nothing else:

* the database (:func:`broadcast_facts`): the hearing's state, every party's livestream consent,
  the mediator's pause; re-read whenever a ``case.update`` arrives on the case's group, which
  every CaseEvent sends after commit (a consent withdrawn mid-session reaches the picture in
  one database read and one frame);
* the room on the media node: who is in it, muted, or in a caucus (node events);
* the viewers it serves.

It announces the state and the viewer count on the hearing's watch group (watch pages) and on the
case group (the room's "live to N viewers" indicator), at most twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from mediation_room.models import Hearing
from mediation_room.realtime import case_group
from streaming.broadcast.broadcast import Broadcast, BroadcastError
from streaming.broadcast.scene import BroadcastMember, BroadcastState, Role, Scene
from streaming.broadcast.selectors import BroadcastFacts, broadcast_facts

logger = logging.getLogger(__name__)

ANNOUNCE_INTERVAL = 0.5
# Viewers keep the "ended" slate this long before their connections are closed.
ENDED_GRACE_SECONDS = 3.0
# Room roles as the media node names them -> what the broadcast shows. Anyone else in the room
# (a coordinator observing) is not on air.
NODE_ROLES = {
    "expert": Role.MEDIATOR,
    "mediator": Role.MEDIATOR,
    "applicant": Role.APPLICANT,
    "respondent": Role.RESPONDENT,
}


def watch_group(public_id: str) -> str:
    return f"watch.{public_id}"


def hls_url(public_id: str) -> str:
    return f"{settings.BROADCAST_HLS_URL}{public_id}/live.m3u8"


def broadcast_state_for(facts: BroadcastFacts, *, caucus: bool) -> BroadcastState:
    if facts.finished:
        return BroadcastState.ENDED
    if facts.hearing_state != Hearing.State.LIVE or not facts.public or facts.paused or caucus:
        return BroadcastState.HOLD
    return BroadcastState.LIVE


class NotOnAir(BroadcastError):
    """There is no broadcast for this hearing (not live, private, or unknown)."""


class BroadcastStation:
    def __init__(
        self,
        *,
        hls_root: Path | None,
        viewer_limit: int,
        ice_servers: list[Any] | None = None,
        width: int = 640,
        height: int = 360,
        fps: int = 15,
        pitch_shift: float | None = None,
    ) -> None:
        self.hls_root = hls_root
        self.viewer_limit = viewer_limit
        self.ice_servers = ice_servers or []
        self.width, self.height, self.fps = width, height, fps
        self.pitch_shift = pitch_shift
        self.node: Any = None
        self.broadcasts: dict[str, Broadcast] = {}
        self.facts: dict[str, BroadcastFacts] = {}
        self.replays: dict[str, Path | None] = {}
        self._cases: dict[int, set[str]] = {}
        self._taps: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._channel: str | None = None
        self._listener: asyncio.Task | None = None
        self._announce_pending: set[str] = set()
        self._announcer: asyncio.Task | None = None
        self._last_announced: dict[str, tuple[str, int]] = {}
        self._ending: set[str] = set()

    # -- the room's media node --------------------------------------------------------------

    def attach_node(self, node: Any) -> None:
        """Follow the rooms of ``node`` (a ``streaming.media.node.MediaNode``): room id = hearing
        public id. Its existing event handler keeps being called first."""
        self.node = node
        previous = node.on_event

        def on_event(room_id: str, member_id: str, event: str, data: dict) -> None:
            if previous is not None:
                previous(room_id, member_id, event, data)
            self._on_node_event(room_id, event)

        node.on_event = on_event

    def _on_node_event(self, room_id: str, event: str) -> None:
        if event not in ("joined", "left", "muted", "caucus"):
            return
        if room_id in self.broadcasts:
            self._sync(room_id)
        elif event == "joined":
            asyncio.ensure_future(self._open_quietly(room_id))

    async def _open_quietly(self, public_id: str) -> None:
        try:
            await self.open(public_id)
        except Exception:
            logger.exception("could not open the broadcast of hearing %s", public_id)

    # -- broadcasts -------------------------------------------------------------------------

    async def open(self, public_id: str) -> Broadcast | None:
        """The hearing's broadcast, started if the hearing is live and public; else None."""
        lock = self._locks.setdefault(public_id, asyncio.Lock())
        async with lock:
            if public_id in self.broadcasts:
                return self.broadcasts[public_id]
            facts = await database_sync_to_async(broadcast_facts)(public_id)
            if facts is None or facts.hearing_state != Hearing.State.LIVE or not facts.public:
                # A private session is never composed, encoded or written anywhere.
                return None
            scene = Scene(
                category=facts.category, community=facts.community, pitch_shift=self.pitch_shift
            )
            broadcast = Broadcast(
                scene,
                width=self.width,
                height=self.height,
                fps=self.fps,
                viewer_limit=self.viewer_limit,
                ice_servers=self.ice_servers,
                hls_directory=self.hls_root / public_id if self.hls_root else None,
                keep_replay=facts.recording_consent,
            )
            await broadcast.start()
            self.broadcasts[public_id] = broadcast
            self.facts[public_id] = facts
            self._cases.setdefault(facts.case_id, set()).add(public_id)
            await self._follow_case(facts.case_id)
            self._sync(public_id)
            return broadcast

    async def refresh(self, public_id: str) -> None:
        """Re-read the database facts of an open broadcast and apply them."""
        facts = await database_sync_to_async(broadcast_facts)(public_id)
        if facts is None or public_id not in self.broadcasts:
            return
        self.facts[public_id] = facts
        if not facts.finished:
            self._sync(public_id)
        elif public_id not in self._ending:
            # In the background: the grace period must not hold up other hearings' updates.
            self._ending.add(public_id)
            task = asyncio.ensure_future(self.end(public_id))
            task.add_done_callback(lambda _: self._ending.discard(public_id))

    async def end(self, public_id: str) -> Path | None:
        broadcast = self.broadcasts.get(public_id)
        if broadcast is None:
            return self.replays.get(public_id)
        broadcast.set_state(BroadcastState.ENDED)
        self._announce(public_id)
        await asyncio.sleep(ENDED_GRACE_SECONDS)
        self.broadcasts.pop(public_id, None)
        facts = self.facts.pop(public_id, None)
        for key in [k for k in self._taps if k[0] == public_id]:
            self._taps.pop(key)[1].stop()
        # Kept only if every party still consents to recording at the end.
        replay = await broadcast.stop(keep_replay=bool(facts and facts.recording_consent))
        self.replays[public_id] = replay
        self._announce(public_id)
        return replay

    async def shutdown(self) -> None:
        for public_id in list(self.broadcasts):
            broadcast = self.broadcasts.pop(public_id)
            facts = self.facts.pop(public_id, None)
            await broadcast.stop(keep_replay=bool(facts and facts.recording_consent))
        for task in (self._listener, self._announcer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._listener = self._announcer = None
        self._channel = None
        self._cases.clear()

    async def watch(self, public_id: str) -> dict[str, Any]:
        """A watch page opened: start the broadcast if it may run (HLS viewers need it too)."""
        if public_id not in self.broadcasts and public_id not in self.replays:
            await self.open(public_id)
        return self.snapshot(public_id)

    def snapshot(self, public_id: str) -> dict[str, Any]:
        broadcast = self.broadcasts.get(public_id)
        if broadcast is None:
            state = BroadcastState.ENDED if public_id in self.replays else BroadcastState.HOLD
            return {"state": str(state), "viewers": 0}
        return {"state": str(broadcast.state), "viewers": broadcast.viewer_count}

    # -- viewers ----------------------------------------------------------------------------

    async def add_viewer(self, public_id: str, offer_sdp: str) -> tuple[str, str]:
        broadcast = self.broadcasts.get(public_id) or await self.open(public_id)
        if broadcast is None or broadcast.state is BroadcastState.ENDED:
            raise NotOnAir("this session is not being broadcast")
        viewer_id, answer = await broadcast.add_viewer(offer_sdp)
        pc = broadcast.viewers[viewer_id].pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._announce(public_id)

        self._announce(public_id)
        return viewer_id, answer

    async def remove_viewer(self, public_id: str, viewer_id: str) -> None:
        broadcast = self.broadcasts.get(public_id)
        if broadcast is not None:
            await broadcast.remove_viewer(viewer_id)
            self._announce(public_id)

    # -- applying the inputs -----------------------------------------------------------------

    def _sync(self, public_id: str) -> None:
        broadcast = self.broadcasts.get(public_id)
        facts = self.facts.get(public_id)
        if broadcast is None or facts is None:
            return
        room = self.node.room(public_id) if self.node is not None else None
        if room is not None:
            broadcast.set_members(self._members(public_id, room, facts))
        caucus = room is not None and room.caucus is not None
        broadcast.set_state(broadcast_state_for(facts, caucus=caucus))
        self._announce(public_id)

    def _members(self, public_id: str, room: Any, facts: BroadcastFacts) -> list[BroadcastMember]:
        members = []
        wanted = set()
        for member_id, member in room.members.items():
            role = NODE_ROLES.get(member.role)
            if role is None:
                continue
            tracks = {}
            for kind in ("video", "audio"):
                publication = member.published.get(kind)
                if publication is None or member.muted.get(kind):
                    tracks[kind] = None
                    continue
                key = (public_id, member_id, kind)
                wanted.add(key)
                hub, tap = self._taps.get(key, (None, None))
                if hub is not publication.hub:
                    if tap is not None:
                        tap.stop()
                    tap = publication.hub.tap(queue_size=1 if kind == "video" else 10)
                    self._taps[key] = (publication.hub, tap)
                tracks[kind] = tap
            # Unknown to the case's parties (or not a party): blurred, privacy by default.
            show_face = facts.member_faces.get(str(member_id), False)
            members.append(
                BroadcastMember(
                    member_id=str(member_id),
                    role=role,
                    video=tracks["video"],
                    audio=tracks["audio"],
                    show_face=show_face,
                    name=facts.expert_name if role is Role.MEDIATOR else "",
                )
            )
        for key in [k for k in self._taps if k[0] == public_id and k not in wanted]:
            self._taps.pop(key)[1].stop()
        return members

    # -- the channel layer -------------------------------------------------------------------

    async def _follow_case(self, case_id: int) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        if self._channel is None:
            self._channel = await layer.new_channel("broadcast-station.")
            self._listener = asyncio.ensure_future(self._listen(layer))
        await layer.group_add(case_group(case_id), self._channel)

    async def _listen(self, layer: Any) -> None:
        while True:
            try:
                message = await layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("broadcast station lost a channel-layer message")
                await asyncio.sleep(0.5)
                continue
            if message.get("type") != "case.update":
                continue
            if (message.get("event") or {}).get("kind") == "broadcast_status":
                continue  # our own announcement
            for public_id in list(self._cases.get(message.get("case_id"), ())):
                try:
                    await self.refresh(public_id)
                except Exception:
                    logger.exception("could not apply an update to hearing %s", public_id)

    def _announce(self, public_id: str) -> None:
        self._announce_pending.add(public_id)
        if self._announcer is None or self._announcer.done():
            self._announcer = asyncio.ensure_future(self._announce_loop())

    async def _announce_loop(self) -> None:
        layer = get_channel_layer()
        while self._announce_pending:
            pending, self._announce_pending = self._announce_pending, set()
            for public_id in pending:
                snapshot = self.snapshot(public_id)
                key = (snapshot["state"], snapshot["viewers"])
                if self._last_announced.get(public_id) == key or layer is None:
                    continue
                self._last_announced[public_id] = key
                facts = self.facts.get(public_id)
                with contextlib.suppress(Exception):
                    await layer.group_send(
                        watch_group(public_id), {"type": "watch.state", **snapshot}
                    )
                    if facts is not None:
                        await layer.group_send(
                            case_group(facts.case_id),
                            {
                                "type": "case.update",
                                "case_id": facts.case_id,
                                "event": {"kind": "broadcast_status", **snapshot},
                            },
                        )
            await asyncio.sleep(ANNOUNCE_INTERVAL)


_station: BroadcastStation | None = None


def get_station() -> BroadcastStation:
    """The station of this process (the media node process, or the web process when embedded)."""
    global _station
    if _station is None:
        _station = BroadcastStation(
            hls_root=Path(settings.BROADCAST_HLS_ROOT),
            viewer_limit=settings.BROADCAST_VIEWER_LIMIT,
            ice_servers=_ice_servers(),
            pitch_shift=settings.BROADCAST_PITCH_SHIFT,
        )
        from streaming.node_worker import get_media_node

        _station.attach_node(get_media_node())
    return _station


def forget_station() -> None:
    """Drop a station whose event loop is gone (it cannot be shut down from another loop)."""
    global _station
    _station = None


async def reset_station() -> None:
    """Stop the process's station (tests run each scenario in a fresh event loop)."""
    global _station
    station, _station = _station, None
    if station is not None:
        await station.shutdown()


def _ice_servers() -> list[Any]:
    from aiortc import RTCIceServer

    servers = []
    for entry in settings.ICE_SERVERS:
        if isinstance(entry, str):
            servers.append(RTCIceServer(urls=entry))
        else:
            servers.append(RTCIceServer(**entry))
    return servers

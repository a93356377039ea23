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
import time
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from mediation_room.models import Hearing
from mediation_room.realtime import case_group
from streaming.broadcast.selectors import BroadcastFacts, broadcast_facts
from streaming.node.broadcast import relay
from streaming.node.broadcast.broadcast import Broadcast, BroadcastError
from streaming.node.broadcast.scene import BroadcastMember, BroadcastState, Role, Scene
from streaming.plane import watch_group, watch_layer_message, watch_state_message

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
        ice_transport_policy: str = "all",
    ) -> None:
        self.hls_root = hls_root
        self.viewer_limit = viewer_limit
        self.ice_servers = ice_servers or []
        self.ice_transport_policy = ice_transport_policy
        self.width, self.height, self.fps = width, height, fps
        self.pitch_shift = pitch_shift
        self.node: Any = None
        self.broadcasts: dict[str, Broadcast] = {}
        self.facts: dict[str, BroadcastFacts] = {}
        self.replays: dict[str, Path | None] = {}
        self._cases: dict[int, set[str]] = {}
        self._taps: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        # viewer id -> the channel of its watch socket (told when the ladder moves it)
        self._viewer_sockets: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._channel: str | None = None
        self._listener: asyncio.Task | None = None
        self._announce_pending: set[str] = set()
        self._announcer: asyncio.Task | None = None
        self._last_announced: dict[str, tuple[str, int]] = {}
        self._ending: set[str] = set()
        # rooms whose home is another node, relayed here for this node's viewers
        self.relayed: dict[str, relay.RelayedBroadcast] = {}
        self._relay_locks: dict[str, asyncio.Lock] = {}
        self._relay_sweeper: asyncio.Task | None = None

    # -- the room's media node --------------------------------------------------------------

    def attach_node(self, node: Any) -> None:
        """Follow the rooms of ``node`` (a ``streaming.node.media.node.MediaNode``): room id = hearing
        public id. Its existing event handler keeps being called first."""
        self.node = node
        previous = node.on_event

        def on_event(room_id: str, member_id: str, event: str, data: dict) -> None:
            if previous is not None:
                previous(room_id, member_id, event, data)
            self._on_node_event(room_id, event)

        node.on_event = on_event

    def _on_node_event(self, room_id: str, event: str) -> None:
        if event not in ("joined", "left", "muted", "caucus", "share"):
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
                ice_transport_policy=self.ice_transport_policy,
                hls_directory=self.hls_root / public_id if self.hls_root else None,
                keep_replay=facts.recording_consent,
            )
            await broadcast.start()
            if broadcast.video is not None:
                broadcast.video.on_pictures = lambda _count: self._announce(public_id)
            broadcast.on_layer = self._tell_layer
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
        # ended from here on, while the broadcast stops: a watch page opened meanwhile is told
        # so, and does not open it again
        self.replays[public_id] = None
        facts = self.facts.pop(public_id, None)
        for key in [k for k in self._taps if k[0] == public_id]:
            self._taps.pop(key)[1].stop()
        # Kept only if every party still consents to recording at the end.
        replay = await broadcast.stop(keep_replay=bool(facts and facts.recording_consent))
        self.replays[public_id] = replay
        self._announce(public_id)
        return replay

    async def shutdown(self) -> None:
        for relayed in list(self.relayed.values()):
            await relayed.stop()
        self.relayed.clear()
        if self._relay_sweeper is not None:
            self._relay_sweeper.cancel()
            self._relay_sweeper = None
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
            return {"state": str(state), "viewers": 0, "members": 0}
        # no member in the room yet: the watch page shows a waiting picture instead of black
        return {
            "state": str(broadcast.state),
            # its own viewers and those of the nodes it is relayed to
            "viewers": broadcast.viewer_count + broadcast.relayed_viewers,
            "members": len(broadcast.scene.members),
            # members whose picture (camera or shared screen) is in the composite: 0 with
            # members there means the session is sound only (every camera off)
            "pictures": self._pictures(broadcast),
            # a member's shared screen is in the picture (the mediator put it on air)
            "screen": broadcast.scene.on_air and any(m.screen for m in broadcast.scene.members),
        }

    @staticmethod
    def _pictures(broadcast: Broadcast) -> int:
        composed = broadcast.video.pictures if broadcast.video is not None else None
        if composed is None:  # nothing composed live yet: the members' tracks say
            return sum(1 for m in broadcast.scene.members if m.video is not None)
        return composed

    @property
    def viewer_count(self) -> int:
        """The WebRTC viewers this node serves itself, of its own rooms and of relayed ones."""
        return sum(b.viewer_count for b in list(self.broadcasts.values())) + sum(
            r.viewer_count for r in list(self.relayed.values())
        )

    # -- viewers ----------------------------------------------------------------------------

    async def add_viewer(
        self,
        public_id: str,
        offer_sdp: str,
        *,
        home: str = "",
        here: str = "",
        socket: str = "",
    ) -> tuple[str, str]:
        """Answer a viewer's offer. ``home`` is the channel of the room's node and ``here`` the
        channel this offer came on: when they differ, the viewer is served from a relay of the
        home node's stream (started now if this node has no viewer of the room yet). ``socket``:
        the channel of the viewer's watch socket, told when the ladder moves the viewer."""
        if home and here and home != here:
            return await self._add_relayed_viewer(public_id, offer_sdp, home=home, here=here)
        broadcast = self.broadcasts.get(public_id) or await self.open(public_id)
        if broadcast is None or broadcast.state is BroadcastState.ENDED:
            raise NotOnAir("this session is not being broadcast")
        viewer_id, answer = await broadcast.add_viewer(offer_sdp)
        pc = broadcast.viewers[viewer_id].pc
        if socket:
            self._viewer_sockets[viewer_id] = socket

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._viewer_sockets.pop(viewer_id, None)
                self._announce(public_id)

        self._announce(public_id)
        return viewer_id, answer

    async def remove_viewer(self, public_id: str, viewer_id: str) -> None:
        relayed = self.relayed.get(public_id)
        if relayed is not None and viewer_id in relayed.viewers:
            await relayed.remove_viewer(viewer_id)
            return
        self._viewer_sockets.pop(viewer_id, None)
        broadcast = self.broadcasts.get(public_id)
        if broadcast is not None:
            await broadcast.remove_viewer(viewer_id)
            self._announce(public_id)

    def _tell_layer(self, viewer_id: str, layer: Any) -> None:
        """The ladder moved a viewer: its page says so when the layer has no picture."""
        socket = self._viewer_sockets.get(viewer_id)
        layer_channel = get_channel_layer()
        if not socket or layer_channel is None:
            return
        message = watch_layer_message(layer.name, video=layer.video)
        task = asyncio.ensure_future(layer_channel.send(socket, message))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- relays: this node serving another node's room --------------------------------------

    async def _add_relayed_viewer(
        self, public_id: str, offer_sdp: str, *, home: str, here: str
    ) -> tuple[str, str]:
        lock = self._relay_locks.setdefault(public_id, asyncio.Lock())
        async with lock:
            relayed = self.relayed.get(public_id)
            if relayed is not None and relayed.home_channel != home:
                # the room moved to another node: renewals go there from now on
                relayed.home_channel = home
            if relayed is None:
                relayed = relay.RelayedBroadcast(
                    public_id,
                    node=here,
                    home_channel=home,
                    host=settings.MEDIA_RELAY_HOST,
                    viewer_limit=self.viewer_limit,
                    ice_servers=self.ice_servers,
                    ice_transport_policy=self.ice_transport_policy,
                    on_idle=self._relay_idle,
                )
                await relayed.start()
                self.relayed[public_id] = relayed
        try:
            return await relayed.add_viewer(offer_sdp)
        finally:
            if not relayed.viewers:
                self._relay_idle(relayed)

    def _relay_idle(self, relayed: relay.RelayedBroadcast) -> None:
        if self.relayed.get(relayed.public_id) is relayed:
            del self.relayed[relayed.public_id]
        asyncio.ensure_future(relayed.stop())

    # -- relays: this node's rooms sent to other nodes --------------------------------------

    async def relay_to(self, message: dict[str, Any]) -> tuple[bool, str]:
        """Start or renew the relay of a room's composite to a serving node
        (``broadcast.relay``); (ok, reason)."""
        public_id, node = message["public_id"], message["node"]
        broadcast = self.broadcasts.get(public_id) or await self.open(public_id)
        if broadcast is None or broadcast.state is BroadcastState.ENDED:
            return False, "this session is not being broadcast"
        host, port = message["address"]
        address = (str(host), int(port))
        ssrc = {kind: int(message["ssrc"][kind]) for kind in ("video", "audio")}
        sink = broadcast.relays.get(node)
        if sink is None or not sink.same(address, ssrc):
            sink = await relay.RelaySink(node, address, ssrc, broadcast.request_keyframe).open()
            broadcast.add_relay(node, sink)
        sink.renewed_at = time.monotonic()
        sink.viewers = max(0, int(message.get("viewers") or 0))
        self._announce(public_id)
        if self._relay_sweeper is None or self._relay_sweeper.done():
            self._relay_sweeper = asyncio.ensure_future(self._sweep_relays())
        return True, ""

    def unrelay(self, public_id: str, node: str, address: list | None = None) -> None:
        broadcast = self.broadcasts.get(public_id)
        sink = broadcast.relays.get(node) if broadcast is not None else None
        if sink is not None and (not address or tuple(address) == sink.address):
            broadcast.remove_relay(node)
            self._announce(public_id)

    async def _sweep_relays(self) -> None:
        """Stop sending to a serving node that stopped renewing (it died or lost the room)."""
        while any(b.relays for b in self.broadcasts.values()):
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for public_id, broadcast in list(self.broadcasts.items()):
                for node, sink in list(broadcast.relays.items()):
                    if now - sink.renewed_at > relay.EXPIRY_SECONDS:
                        broadcast.remove_relay(node)
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
        # a screen share is on air only once the mediator said so (and never in a caucus, when
        # the whole picture is on hold): until then that member's picture stays off air
        sharing, share_on_air = getattr(room, "share", None), getattr(room, "share_on_air", False)
        for member_id, member in room.members.items():
            role = NODE_ROLES.get(member.role)
            if role is None:
                continue
            tracks = {}
            for kind in ("video", "audio"):
                publication = member.published.get(kind)
                off_air = kind == "video" and member_id == sharing and not share_on_air
                if publication is None or member.muted.get(kind) or off_air:
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
                    screen=member_id == sharing and share_on_air,
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
                key = (
                    snapshot["state"],
                    snapshot["viewers"],
                    snapshot["members"],
                    snapshot.get("pictures", 0),
                    snapshot.get("screen", False),
                )
                if self._last_announced.get(public_id) == key or layer is None:
                    continue
                self._last_announced[public_id] = key
                facts = self.facts.get(public_id)
                with contextlib.suppress(Exception):
                    await layer.group_send(watch_group(public_id), watch_state_message(snapshot))
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

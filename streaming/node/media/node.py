"""The media node: one RTCPeerConnection per room member, selective forwarding between them.

A member's offer carries, in this order of meaning (the order of m-lines is free):

* at most one audio and one video m-line the member *sends* (``sendonly``/``sendrecv``): what the
  member publishes;
* pairs of ``recvonly`` audio + video m-lines: *slots*, each showing one other member.

Slots exist so that membership, caucuses and mutes never need a renegotiation (aiortc cannot
renegotiate reliably and does not restart ICE): the node only changes what feeds each slot.
Every slot sender has one permanent ``PacketTrack``; the node moves it between the publisher's
``EncodedForwarder``, the room's hold slate, or nothing. A published track is not decoded to be
forwarded: its encoded frames go as they are to every subscriber that negotiated the same codec,
and each subscriber's sender only packetises them. The track is decoded (once, by its receiver,
into its ``FrameHub``) only while something needs pictures: the livestream compositor, the room
recording, or a subscriber that negotiated another codec, which is then fed by an
``EncodedFanout`` encoding once per such codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from streaming.node.internals import aiortc_private

from .bundle import bundled_candidates
from .fanout import EncodedFanout, PacketTrack, route_keyframe_requests
from .forward import FANOUT_CODECS, EncodedForwarder, SlotTrack
from .hub import FrameHub, FrameTap
from .slate import SlateTrack
from .speaker import SpeakerDetector, level_meter

logger = logging.getLogger(__name__)

MAX_SLOTS = 8
MAX_OFFER_BYTES = 64 * 1024
DIRECTIONS = {"sendrecv", "sendonly", "recvonly", "inactive"}

EventHandler = Callable[[str, str, str, dict[str, Any]], None]


class OfferRejected(ValueError):
    """The SDP offer cannot be used; the message is safe to show to the member."""


@dataclass(frozen=True)
class MediaPlan:
    """What an offer asks for: m-line kinds in order, which ones are published."""

    kinds: tuple[str, ...]
    publish: tuple[bool, ...]

    @property
    def slot_count(self) -> int:
        audio = sum(
            1 for k, p in zip(self.kinds, self.publish, strict=True) if k == "audio" and not p
        )
        video = sum(
            1 for k, p in zip(self.kinds, self.publish, strict=True) if k == "video" and not p
        )
        return min(audio, video)


def parse_offer(sdp: str) -> MediaPlan:
    """Validate an offer before aiortc sees it; raise ``OfferRejected`` with a clear reason."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferRejected("empty offer")
    if len(sdp.encode()) > MAX_OFFER_BYTES:
        raise OfferRejected("offer too large")
    if not sdp.startswith("v=0"):
        raise OfferRejected("not an SDP offer")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # the parser asserts on malformed lines
        raise OfferRejected("malformed SDP") from exc
    kinds: list[str] = []
    publish: list[bool] = []
    published: set[str] = set()
    for media in description.media:
        if media.kind not in ("audio", "video"):
            raise OfferRejected(f"unsupported media {media.kind!r}")
        if media.direction not in DIRECTIONS:
            raise OfferRejected("media without a direction")
        if not media.ice.usernameFragment or not media.ice.password:
            raise OfferRejected("media without ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise OfferRejected("media without a DTLS fingerprint")
        sends = media.direction in ("sendrecv", "sendonly") and media.kind not in published
        if sends:
            published.add(media.kind)
        kinds.append(media.kind)
        publish.append(sends)
    if not kinds:
        raise OfferRejected("offer has no audio or video")
    plan = MediaPlan(tuple(kinds), tuple(publish))
    if plan.slot_count > MAX_SLOTS or len(kinds) > 2 * MAX_SLOTS + 2:
        raise OfferRejected("too many media sections")
    return plan


# In order of preference. Publishers and slots prefer the same codec, so that a publisher's
# frames are forwarded as they are; H.264 is there for clients that offer nothing else.
SLOT_CODECS = {"video": ("video/vp8", "video/h264", "video/rtx"), "audio": ("audio/opus",)}
PUBLISH_CODECS = {
    "video": ("video/vp8", "video/h264", "video/rtx"),
    "audio": ("audio/opus", "audio/pcmu", "audio/pcma"),
}


def _codecs(kind: str, wanted: dict[str, tuple[str, ...]] = SLOT_CODECS) -> list[Any]:
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    return [c for mime in wanted[kind] for c in capabilities if c.mimeType.lower() == mime]


def _negotiated_codec(transceiver: Any) -> str:
    """The codec a transceiver sends or receives: the first negotiated one (RTX aside)."""
    codecs = aiortc_private.negotiated_codecs(transceiver)
    return next((c.mimeType.lower() for c in codecs if c.mimeType.lower() != "video/rtx"), "")


@dataclass
class Slot:
    index: int
    audio_mid: str | None = None
    video_mid: str | None = None
    audio: PacketTrack | None = None
    video: PacketTrack | None = None
    audio_sender: RTCRtpSender | None = None
    video_sender: RTCRtpSender | None = None
    audio_codec: str = "audio/opus"
    video_codec: str = "video/vp8"


Feed = EncodedForwarder | EncodedFanout


@dataclass
class Publication:
    kind: str
    hub: FrameHub
    forwarder: EncodedForwarder | None = None
    # codec -> (fanout, its tap on the hub): for subscribers that negotiated another codec
    transcoders: dict[str, tuple[EncodedFanout, FrameTap]] = field(default_factory=dict)


@dataclass
class Member:
    member_id: str
    role: str
    pc: RTCPeerConnection | None = None
    slots: list[Slot] = field(default_factory=list)
    assignment: dict[str, int] = field(default_factory=dict)
    published: dict[str, Publication] = field(default_factory=dict)
    muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    receive_video: bool = True
    joined_at: float = field(default_factory=time.monotonic)
    connections: int = 0


@dataclass
class Room:
    room_id: str
    members: dict[str, Member] = field(default_factory=dict)
    caucus: frozenset[str] | None = None
    slates: dict[str, EncodedFanout] = field(default_factory=dict)
    recorder: Any = None
    speakers: SpeakerDetector | None = None
    # the member whose video is their screen now, and whether the mediator put it on air
    share: str | None = None
    share_on_air: bool = False


class MediaNode:
    """Rooms of members connected over WebRTC; a pure asyncio API used by the signaling layer."""

    def __init__(
        self,
        *,
        ice_servers: Iterable[RTCIceServer | dict[str, Any]] = (),
        video_size: tuple[int, int] = (640, 360),
        on_event: EventHandler | None = None,
        ice_transport_policy: str = "all",
    ) -> None:
        self.ice_servers = [
            s if isinstance(s, RTCIceServer) else RTCIceServer(**s) for s in ice_servers
        ]
        self.video_size = video_size
        self.on_event = on_event
        self.ice_transport_policy = RTCIceTransportPolicy(ice_transport_policy)
        self._rooms: dict[str, Room] = {}

    # -- public API ----------------------------------------------------------------------

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def members(self, room_id: str) -> dict[str, dict[str, Any]]:
        room = self._rooms.get(room_id)
        if room is None:
            return {}
        return {
            m.member_id: {
                "role": m.role,
                "muted": dict(m.muted),
                "on_hold": self._on_hold(room, m.member_id),
                "publishes": sorted(m.published),
                "connections": m.connections,
            }
            for m in room.members.values()
        }

    async def join(self, room_id: str, member_id: str, role: str, offer_sdp: str) -> str:
        """Connect a member (or replace their connection) and return the SDP answer."""
        plan = parse_offer(offer_sdp)
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = Room(room_id)
        member = room.members.get(member_id)
        if member is None:
            member = Member(member_id=member_id, role=role)
        member.role = role
        old_pc = member.pc
        try:
            pc, slots = await self._connect(room, member, offer_sdp, plan)
        except OfferRejected:
            if member_id not in room.members and not room.members:
                self._rooms.pop(room_id, None)
            raise
        member.pc = pc
        # the old connection's slot tracks must not keep their feeds busy
        _detach(member.slots)
        member.slots = slots
        member.connections += 1
        room.members[member_id] = member
        self._assign_slots(room)
        self._reconcile(room)
        if old_pc is not None:
            await old_pc.close()
        self._emit(room_id, member_id, "joined", {"role": role})
        return pc.localDescription.sdp

    async def restart_ice(self, room_id: str, member_id: str, offer_sdp: str) -> str:
        """Reconnect a member from a fresh offer, keeping their place in the room.

        aiortc cannot restart ICE on an existing transport, so this replaces the member's peer
        connection; the member's published forwarders keep their subscribers (only their
        source changes) and their slots are fed again as before.
        """
        room = self._room(room_id)
        member = room.members.get(member_id)
        if member is None:
            raise KeyError(member_id)
        return await self.join(room_id, member_id, member.role, offer_sdp)

    async def leave(self, room_id: str, member_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is None or member_id not in room.members:
            return
        member = room.members.pop(member_id)
        _detach(member.slots)
        if room.share == member_id:
            room.share, room.share_on_air = None, False
        if room.speakers is not None:
            room.speakers.forget(member_id)
        if room.caucus is not None and member_id in room.caucus:
            room.caucus = room.caucus - {member_id} or None
        for other in room.members.values():
            other.assignment.pop(member_id, None)
        self._assign_slots(room)
        # detach everyone from this member's fanouts before stopping them
        self._reconcile(room)
        await self._close_member(member)
        self._emit(room_id, member_id, "left", {})
        if not room.members:
            await self.close_room(room_id)

    async def close_room(self, room_id: str) -> None:
        room = self._rooms.pop(room_id, None)
        if room is None:
            return
        if room.recorder is not None:
            await room.recorder.stop()
            room.recorder = None
        if room.speakers is not None:
            await room.speakers.stop()
        for member in list(room.members.values()):
            for slot in member.slots:
                for track in (slot.audio, slot.video):
                    if track is not None and track.fanout is not None:
                        track.fanout.unsubscribe(track)
        for member in list(room.members.values()):
            await self._close_member(member)
        room.members.clear()
        for slate in room.slates.values():
            await slate.stop()
        room.slates.clear()

    def set_caucus(self, room_id: str, members: Iterable[str] | None) -> dict[str, bool]:
        """Open a caucus with ``members`` (None ends it); returns who is on hold."""
        room = self._room(room_id)
        if members is None:
            room.caucus = None
        else:
            caucus = frozenset(members)
            unknown = caucus - set(room.members)
            if unknown:
                raise KeyError(f"not in the room: {sorted(unknown)}")
            room.caucus = caucus
        self._reconcile(room)
        on_hold = {m: self._on_hold(room, m) for m in room.members}
        self._emit(
            room_id, "", "caucus", {"members": sorted(room.caucus or ()), "on_hold": on_hold}
        )
        return on_hold

    def set_share(self, room_id: str, member_id: str | None, *, on_air: bool = False) -> None:
        """Whose video is their screen (None: nobody's), and whether it may be on air; the
        forwarding does not change (the page sends the screen on its video sender)."""
        room = self._room(room_id)
        room.share = member_id if member_id in room.members else None
        room.share_on_air = bool(on_air and room.share is not None)
        self._emit(room_id, room.share or "", "share", {"on_air": room.share_on_air})

    def mute(
        self, room_id: str, member_id: str, *, audio: bool | None = None, video: bool | None = None
    ) -> dict[str, bool]:
        """Stop (or resume) forwarding a member's audio and/or video to everyone."""
        room = self._room(room_id)
        member = room.members[member_id]
        if audio is not None:
            member.muted["audio"] = audio
        if video is not None:
            member.muted["video"] = video
        self._reconcile(room)
        self._emit(room_id, member_id, "muted", dict(member.muted))
        return dict(member.muted)

    def set_receive(self, room_id: str, member_id: str, *, video: bool) -> None:
        """Whether a member receives video at all (an audio-only member saves the bandwidth)."""
        room = self._room(room_id)
        room.members[member_id].receive_video = video
        self._reconcile(room)

    def layout(self, room_id: str, member_id: str) -> list[dict[str, Any]]:
        """Which member each of this member's slots shows, by m-line id."""
        room = self._room(room_id)
        member = room.members[member_id]
        result = []
        for publisher_id, index in sorted(member.assignment.items(), key=lambda kv: kv[1]):
            if index >= len(member.slots):
                continue
            slot = member.slots[index]
            publisher = room.members.get(publisher_id)
            result.append(
                {
                    "member": publisher_id,
                    "role": publisher.role if publisher else "",
                    "audio_mid": slot.audio_mid,
                    "video_mid": slot.video_mid,
                }
            )
        return result

    async def stats(self, room_id: str) -> dict[str, dict[str, Any]]:
        """Connection quality per member, from RTCP reports and received frame rates."""
        room = self._room(room_id)
        result: dict[str, dict[str, Any]] = {}
        for member in list(room.members.values()):
            entry: dict[str, Any] = {
                "connection": member.pc.connectionState if member.pc else "closed",
                "connections": member.connections,
            }
            rtts: list[float] = []
            lost = received = 0
            if member.pc is not None and member.pc.connectionState != "closed":
                with contextlib.suppress(Exception):
                    report = await member.pc.getStats()
                    for item in report.values():
                        if item.type == "inbound-rtp":
                            lost += max(0, item.packetsLost or 0)
                            received += item.packetsReceived or 0
                        elif item.type == "remote-inbound-rtp" and item.roundTripTime:
                            rtts.append(item.roundTripTime)
            video = member.published.get("video")
            audio = member.published.get("audio")
            entry["video_fps_in"] = round(_source_fps(video), 1) if video else 0.0
            entry["audio_frames_in"] = _frames_in(audio) if audio else 0
            entry["rtt_ms"] = round(1000 * max(rtts), 1) if rtts else None
            entry["loss"] = round(lost / (lost + received), 4) if lost + received else 0.0
            if video and video.forwarder is not None:
                entry["forwarder"] = dict(video.forwarder.stats)
            entry["quality"] = _quality(entry)
            result[member.member_id] = entry
        return result

    def publication(self, room_id: str, member_id: str, kind: str) -> Publication | None:
        room = self._rooms.get(room_id)
        member = room.members.get(member_id) if room else None
        return member.published.get(kind) if member else None

    def room(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    async def start_recording(self, room_id: str, path: str, **options: Any) -> Any:
        """Record the room (grid of members, mixed audio) to a fragmented MP4 at ``path``."""
        from .recorder import RoomRecorder

        room = self._room(room_id)
        if room.recorder is not None:
            return room.recorder
        room.recorder = RoomRecorder(lambda: self._recording_sources(room), path, **options)
        # the composite needs every member's pictures: decode while recording
        for member in room.members.values():
            for publication in member.published.values():
                publication.hub.hold(_RECORDING)
        await room.recorder.start()
        self._emit(room_id, "", "recording", {"active": True})
        return room.recorder

    async def stop_recording(self, room_id: str) -> dict[str, Any] | None:
        """Finish the file; returns its path, duration and SHA-256, or None if not recording."""
        room = self._rooms.get(room_id)
        if room is None or room.recorder is None:
            return None
        recorder, room.recorder = room.recorder, None
        result = await recorder.stop()
        for member in room.members.values():
            for publication in member.published.values():
                publication.hub.release(_RECORDING)
        self._emit(room_id, "", "recording", {"active": False})
        return result

    async def shutdown(self) -> None:
        for room_id in list(self._rooms):
            await self.close_room(room_id)

    # -- internals -------------------------------------------------------------------------

    def _room(self, room_id: str) -> Room:
        room = self._rooms.get(room_id)
        if room is None:
            raise KeyError(room_id)
        return room

    def _emit(self, room_id: str, member_id: str, event: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(room_id, member_id, event, data)
            except Exception:
                logger.exception("media event handler failed for %s", event)

    async def _connect(
        self, room: Room, member: Member, offer_sdp: str, plan: MediaPlan
    ) -> tuple[RTCPeerConnection, list[Slot]]:
        # MAX_BUNDLE: transceivers created before the offer is applied must share the first
        # one's transport; under aiortc's default (balanced) a second video transceiver keeps a
        # transport that bundling then discards, and its sender never starts.
        pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=self.ice_servers,
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
                iceTransportPolicy=self.ice_transport_policy,
            )
        )
        slots: list[Slot] = []
        slot_transceivers: dict[str, list[Any]] = {"audio": [], "video": []}
        for kind, publishes in zip(plan.kinds, plan.publish, strict=True):
            if publishes:
                transceiver = pc.addTransceiver(kind, direction="recvonly")
                transceiver.setCodecPreferences(_codecs(kind, PUBLISH_CODECS))
                continue
            if len(slot_transceivers[kind]) >= plan.slot_count:
                pc.addTransceiver(kind, direction="inactive")
                continue
            transceiver = self._add_slot_transceiver(pc, kind)
            transceiver.setCodecPreferences(_codecs(kind))
            slot_transceivers[kind].append(transceiver)

        for index in range(plan.slot_count):
            audio_t = slot_transceivers["audio"][index]
            video_t = slot_transceivers["video"][index]
            slot = Slot(
                index=index,
                audio=audio_t.sender.track,
                video=video_t.sender.track,
                audio_sender=audio_t.sender,
                video_sender=video_t.sender,
            )
            if slot.video is not None:
                route_keyframe_requests(video_t.sender, slot.video)
            slots.append(slot)

        @pc.on("track")
        def on_track(track: Any) -> None:
            transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
            self._publish(room, member, track, transceiver)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if member.pc is pc:
                self._emit(
                    room.room_id, member.member_id, "connection", {"state": pc.connectionState}
                )

        try:
            offer = RTCSessionDescription(sdp=bundled_candidates(offer_sdp), type="offer")
            await pc.setRemoteDescription(offer)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            raise OfferRejected(f"offer not usable: {exc}") from exc
        for index, slot in enumerate(slots):
            slot.audio_mid = slot_transceivers["audio"][index].mid
            slot.video_mid = slot_transceivers["video"][index].mid
            slot.audio_codec = _negotiated_codec(slot_transceivers["audio"][index])
            slot.video_codec = _negotiated_codec(slot_transceivers["video"][index])
        return pc, slots

    def _publish(self, room: Room, member: Member, track: Any, transceiver: Any) -> None:
        publication = member.published.get(track.kind)
        if publication is None:
            name = f"{room.room_id}/{member.member_id}/{track.kind}"
            hub = FrameHub(None, kind=track.kind, name=name)
            publication = Publication(kind=track.kind, hub=hub)
            self._start_forwarding(publication, transceiver)
            member.published[track.kind] = publication
            if room.recorder is not None:
                hub.hold(_RECORDING)
        if publication.forwarder is not None:
            publication.forwarder.attach(transceiver.receiver, codec=_negotiated_codec(transceiver))
            publication.forwarder.set_decode(publication.hub.wanted)
        publication.hub.set_source(track)
        if track.kind == "audio":
            level_meter(transceiver.receiver, member.member_id, self._speakers(room))

    def _speakers(self, room: Room) -> SpeakerDetector:
        """The room's speaker detection, from the levels its members' audio packets carry."""
        if room.speakers is None:

            def eligible(member_id: str) -> bool:
                member = room.members.get(member_id)
                return (
                    member is not None
                    and not member.muted["audio"]
                    and not self._on_hold(room, member_id)
                )

            def changed(member_id: str, level: int) -> None:
                self._emit(room.room_id, member_id, "speaker", {"level": -level})

            room.speakers = SpeakerDetector(changed, eligible=eligible)
            room.speakers.start()
        return room.speakers

    def _add_slot_transceiver(self, pc: RTCPeerConnection, kind: str) -> Any:
        """A slot's sending transceiver, with the permanent track the node feeds it through."""
        return pc.addTransceiver(SlotTrack(kind), direction="sendonly")

    def _start_forwarding(self, publication: Publication, transceiver: Any) -> None:
        """A new publication's encoded frames go to its subscribers through one forwarder,
        which asks its hub to decode only while something needs pictures."""
        publication.forwarder = EncodedForwarder(
            kind=publication.kind, codec=_negotiated_codec(transceiver), name=publication.hub.name
        )
        publication.hub.on_demand = publication.forwarder.set_decode

    def _feed_slot(self, room: Room, viewer: Member, publisher: Member, slot: Slot) -> None:
        """Point ``viewer``'s ``slot``, the one showing ``publisher``, at what it carries now."""
        video, audio = self._route(room, viewer, publisher, slot)
        _feed(slot.video, video)
        _feed(slot.audio, audio)

    def _assign_slots(self, room: Room) -> None:
        for member in room.members.values():
            for publisher_id in list(member.assignment):
                if publisher_id not in room.members:
                    del member.assignment[publisher_id]
            used = set(member.assignment.values())
            for publisher_id in room.members:
                if publisher_id == member.member_id or publisher_id in member.assignment:
                    continue
                free = next((i for i in range(len(member.slots)) if i not in used), None)
                if free is None:
                    logger.warning("room %s: no free slot for a member", room.room_id)
                    break
                member.assignment[publisher_id] = free
                used.add(free)

    def _on_hold(self, room: Room, member_id: str) -> bool:
        return room.caucus is not None and member_id not in room.caucus

    def _slate(self, room: Room, codec: str) -> EncodedFanout:
        slate = room.slates.get(codec)
        if slate is None:
            width, height = self.video_size
            slate = room.slates[codec] = EncodedFanout(
                SlateTrack(width=width, height=height),
                kind="video",
                codec=FANOUT_CODECS.get(codec, "vp8"),
                name=f"{room.room_id}/slate",
            )
        return slate

    def _feed_for(self, publication: Publication, codec: str) -> Feed | None:
        """What carries ``publication`` to a subscriber that negotiated ``codec``."""
        forwarder = publication.forwarder
        if forwarder is None:
            return None
        if forwarder.codec == codec:
            return forwarder
        entry = publication.transcoders.get(codec)
        if entry is None:
            if codec not in FANOUT_CODECS:
                return None
            tap = publication.hub.tap()
            fanout = EncodedFanout(
                tap, kind=publication.kind, codec=FANOUT_CODECS[codec], name=publication.hub.name
            )
            entry = publication.transcoders[codec] = (fanout, tap)
        return entry[0]

    def _route(
        self, room: Room, viewer: Member, publisher: Member, slot: Slot
    ) -> tuple[Feed | None, Feed | None]:
        """(video, audio) that ``viewer`` gets in ``slot``, the one showing ``publisher``."""
        if room.caucus is not None and (
            viewer.member_id not in room.caucus or publisher.member_id not in room.caucus
        ):
            # on hold, or the caucus looking at someone on hold: a slate and silence
            return self._slate(room, slot.video_codec), None
        video = publisher.published.get("video")
        audio = publisher.published.get("audio")
        return (
            self._feed_for(video, slot.video_codec)
            if video and not publisher.muted["video"] and viewer.receive_video
            else None,
            self._feed_for(audio, slot.audio_codec)
            if audio and not publisher.muted["audio"]
            else None,
        )

    def _reconcile(self, room: Room) -> None:
        """Point every slot of every member at what it should carry now."""
        for member in room.members.values():
            fed: set[int] = set()
            for publisher_id, index in member.assignment.items():
                publisher = room.members.get(publisher_id)
                if publisher is None or index >= len(member.slots):
                    continue
                slot = member.slots[index]
                fed.add(index)
                self._feed_slot(room, member, publisher, slot)
            for slot in member.slots:
                if slot.index not in fed:
                    _feed(slot.video, None)
                    _feed(slot.audio, None)
        self._drop_unused_transcoders(room)

    def _drop_unused_transcoders(self, room: Room) -> None:
        """A transcoder nobody subscribes to stops, and with it the decoding it asked for."""
        for member in room.members.values():
            for publication in member.published.values():
                for codec, (fanout, tap) in list(publication.transcoders.items()):
                    if not fanout.subscribers:
                        del publication.transcoders[codec]
                        tap.stop()
                        task = asyncio.get_running_loop().create_task(fanout.stop())
                        _background.add(task)
                        task.add_done_callback(_background.discard)

    def _recording_sources(
        self, room: Room
    ) -> list[tuple[str, str, FrameHub | None, FrameHub | None]]:
        sources = []
        for member in room.members.values():
            video = member.published.get("video")
            audio = member.published.get("audio")
            sources.append(
                (
                    member.member_id,
                    member.role,
                    video.hub if video and not member.muted["video"] else None,
                    audio.hub if audio and not member.muted["audio"] else None,
                )
            )
        return sources

    async def _close_member(self, member: Member) -> None:
        if member.pc is not None:
            await member.pc.close()
            member.pc = None
        for publication in member.published.values():
            if publication.forwarder is not None:
                await publication.forwarder.stop()
            for fanout, tap in publication.transcoders.values():
                tap.stop()
                await fanout.stop()
            publication.transcoders.clear()
            await publication.hub.stop()
        member.published.clear()


_background: set[asyncio.Task[Any]] = set()
# what holds a hub (see FrameHub.hold) while its room is recorded
_RECORDING = "recording"


def _source_fps(publication: Publication) -> float:
    if publication.forwarder is not None:
        return publication.forwarder.fps()
    return publication.hub.fps()


def _frames_in(publication: Publication) -> int:
    if publication.forwarder is not None:
        return publication.forwarder.stats["frames_in"]
    return publication.hub.frames_in


def _detach(slots: list[Slot]) -> None:
    for slot in slots:
        _feed(slot.video, None)
        _feed(slot.audio, None)


def _feed(track: PacketTrack | None, fanout: Feed | None) -> None:
    if track is None:
        return
    if fanout is None:
        if track.fanout is not None:
            track.fanout.unsubscribe(track)
    elif track.fanout is not fanout:
        fanout.subscribe(track)


def _quality(entry: dict[str, Any]) -> str:
    """A coarse label for the room page: good / fair / poor."""
    if entry["connection"] not in ("connected", "connecting", "new"):
        return "poor"
    rtt = entry.get("rtt_ms") or 0
    loss = entry.get("loss") or 0
    if loss > 0.08 or rtt > 600:
        return "poor"
    if loss > 0.02 or rtt > 250:
        return "fair"
    return "good"

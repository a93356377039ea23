"""The room benchmark's baseline: a media node that forwards through aiortc's ``MediaRelay``.

Each published track is decoded once (its receiver feeds the publication's ``FrameHub``) and
every subscriber gets its own ``MediaRelay`` proxy of a tap on that hub, so the node encodes
once per subscriber, where ``MediaNode`` forwards the publisher's encoded frames as they are.
Only joining and leaving are supported: slots, once fed, keep their publisher (no caucus, no
mute), which is all bench/room.py asks of it.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection
from aiortc.contrib.media import MediaRelay

from streaming.node.media.hub import FrameTap
from streaming.node.media.node import MediaNode, Member, Publication, Room, Slot


class RelayMediaNode(MediaNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._relays: dict[str, MediaRelay] = {}  # room id -> its relay
        self._sources: dict[str, FrameTap] = {}  # publication's hub name -> the relay's source

    def set_caucus(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the relay baseline supports joining and leaving only")

    def mute(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the relay baseline supports joining and leaving only")

    def _add_slot_transceiver(self, pc: RTCPeerConnection, kind: str) -> Any:
        # no track yet: the sender gets its relay proxy when the slot is first fed
        return pc.addTransceiver(kind, direction="sendonly")

    def _start_forwarding(self, publication: Publication, transceiver: Any) -> None:
        self._sources[publication.hub.name] = publication.hub.tap()

    def _feed_slot(self, room: Room, viewer: Member, publisher: Member, slot: Slot) -> None:
        relay = self._relays.setdefault(room.room_id, MediaRelay())
        for kind, sender in (("audio", slot.audio_sender), ("video", slot.video_sender)):
            publication = publisher.published.get(kind)
            if publication is None or sender is None or sender.track is not None:
                continue
            sender.replaceTrack(relay.subscribe(self._sources[publication.hub.name]))

    async def close_room(self, room_id: str) -> None:
        await super().close_room(room_id)
        self._relays.pop(room_id, None)
        prefix = f"{room_id}/"
        for name in [n for n in self._sources if n.startswith(prefix)]:
            del self._sources[name]

"""The mediation room's signaling protocol (``/ws/room/<hearing public id>/``), version 1.

Every frame is one JSON object with a ``type``; client frames may carry ``"v": 1`` (another
version is refused) and an optional ``ref`` echoed in the reply, so the page can match answers
to requests. Frames larger than ``MAX_FRAME_BYTES`` are refused without being parsed; the
socket reads frames, and answers a bad one, as every socket does (``cloudbench.sockets``).

Client -> server
    join        {offer}                 enter the room (members wait in the lobby until admitted)
    reconnect   {offer}                 a fresh peer connection after a network drop
    leave       {}                      leave the room (the socket stays open, rejoin with join)
    media       {audio, video, receive_video?}  own microphone / camera on (true) or off;
                                        receive_video false: audio only, send me no video
    admit       {member}                expert: let a member in from the lobby
    mute        {member, audio?, video?}  expert: stop (true) or resume (false) forwarding
    remove      {member}                expert: send a member out of the room
    caucus      {member | null}         expert: private caucus (背靠背) with one member; null ends it
    share       {active}                this member starts (true) or stops sharing their screen
    share_air   {on_air}                expert: the screen share on the livestream, or off it
    ping        {}

Server -> client
    hello       {v, me, recording, admitted}
    lobby       {waiting: [member]}     expert, coordinators: who waits to be admitted
    waiting     {}                      you are in the lobby
    admitted    {}
    answer      {sdp, layout}           the SDP answer to join/reconnect, and which slot is whom
    layout      {slots: [{member, role, label, audio_mid, video_mid}]}
    members     {members: [{id, role, label, muted, self_muted, on_hold, quality}]}
    caucus      {active, members, on_hold}
    recording   {active}
    evidence    {id, title, url, content_type, role, label}
    speaker     {member, level}         the node: the loudest member speaking changed (dBov)
    share       {member | null, on_air} who shares their screen now; on_air: on the livestream
    done        {action, member?}       the node carried out the mediator's action
    removed     {message}               you were removed by the expert; the socket closes
    left        {}
    pong        {}
    error       {code, message, ref}      ref: the frame's ref, or else its type
    refused     {code, message}         you may not enter this room; the socket closes
    moved       {reason}                the room moved to another media node (failover, drain):
                                        a hello from the new node follows; offer again then

With ``?probe=1`` (the check page's connection test) the socket is checked the same way but never
enters the room: it answers ``ping`` with ``pong`` and any other frame with an ``error`` of code
``probe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from cloudbench.sockets import Limits, ProtocolError, decode
from cloudbench.sockets import error_frame as error_frame_of

VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
MAX_SDP_BYTES = 60 * 1024
MEMBER_ID_MAX = 40

EXPERT_ACTIONS = frozenset({"admit", "mute", "remove", "caucus", "share_air"})

# A member's page sends a handful of frames a minute; a burst of 20 is generous, and a socket
# that keeps flooding after being told is closed.
LIMITS = Limits(max_bytes=MAX_FRAME_BYTES, per_second=5.0, burst=20.0, flood_limit=50)


@dataclass(frozen=True)
class Message:
    type: str
    data: dict[str, Any]
    ref: str | None = None


def _sdp(frame: dict[str, Any], type_: str) -> dict[str, Any]:
    offer = frame.get("offer")
    if not isinstance(offer, str) or not offer.startswith("v=0"):
        raise ProtocolError("bad_offer", _("The offer is not an SDP description."), ref=type_)
    if len(offer.encode()) > MAX_SDP_BYTES:
        raise ProtocolError("too_large", _("The offer is too large."), ref=type_)
    return {"offer": offer}


def _member(frame: dict[str, Any], type_: str, *, nullable: bool = False) -> dict[str, Any]:
    member = frame.get("member")
    if member is None and nullable:
        return {"member": None}
    if not isinstance(member, str) or not 0 < len(member) <= MEMBER_ID_MAX:
        raise ProtocolError("bad_member", _("Unknown room member."), ref=type_)
    return {"member": member}


def _flags(frame: dict[str, Any], type_: str, *, required: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("audio", "video"):
        value = frame.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, bool):
            raise ProtocolError(
                "bad_value", _("%(key)s must be true or false.") % {"key": key}, ref=type_
            )
        out[key] = value
    if not out:
        raise ProtocolError("bad_value", _("Say what to mute: audio or video."), ref=type_)
    return out


def _receive_video(frame: dict[str, Any], type_: str) -> dict[str, Any]:
    value = frame.get("receive_video")
    if value is None:
        return {}
    if not isinstance(value, bool):
        raise ProtocolError("bad_value", _("receive_video must be true or false."), ref=type_)
    return {"receive_video": value}


def _empty(frame: dict[str, Any], type_: str) -> dict[str, Any]:
    return {}


def _switch(key: str) -> Any:
    def read(frame: dict[str, Any], type_: str) -> dict[str, Any]:
        value = frame.get(key)
        if not isinstance(value, bool):
            raise ProtocolError(
                "bad_value", _("%(key)s must be true or false.") % {"key": key}, ref=type_
            )
        return {key: value}

    return read


SCHEMAS: dict[str, Any] = {
    "join": _sdp,
    "reconnect": _sdp,
    "leave": _empty,
    "media": lambda f, t: {**_flags(f, t, required=True), **_receive_video(f, t)},
    "admit": _member,
    "mute": lambda f, t: {**_member(f, t), **_flags(f, t, required=False)},
    "remove": _member,
    "caucus": lambda f, t: _member(f, t, nullable=True),
    "share": _switch("active"),
    "share_air": _switch("on_air"),
    "ping": _empty,
}
MESSAGE_TYPES = frozenset(SCHEMAS)


def parse(text: str | None) -> Message:
    """Validate one client frame as text; raise ``ProtocolError`` for anything not in the
    protocol."""
    return read_message(decode(text, None, limits=LIMITS, types=MESSAGE_TYPES))


def read_message(frame: dict[str, Any]) -> Message:
    """Validate one decoded client frame (its ``type`` is one of ``MESSAGE_TYPES``)."""
    type_ = frame["type"]
    if frame.get("v", VERSION) != VERSION:
        raise ProtocolError("unsupported_version", _("Unsupported protocol version."), ref=type_)
    ref = frame.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 40):
        raise ProtocolError("bad_ref", _("ref must be a short string."), ref=type_)
    try:
        data = SCHEMAS[type_](frame, type_)
    except ProtocolError as exc:
        exc.ref = ref or type_
        raise
    return Message(type=type_, data=data, ref=ref)


def error_frame(error: ProtocolError) -> dict[str, Any]:
    return error_frame_of(error.code, error.message, error.ref)


def refused_frame(code: str, message: str) -> dict[str, Any]:
    return {"type": "refused", "code": code, "message": message}


# =================================================================================================
# Watch protocol: residents watching the livestream (``/ws/watch/<hearing public id>/``).
# Its own socket and its own version; handled by ``streaming.broadcast.consumers.WatchConsumer``.
#
# Wire messages of the watch WebSocket (``/ws/watch/<hearing public id>/``), version 1.
#
# Client -> server
#     {"type": "watch.offer", "sdp": "<SDP offer, receive-only audio + video>"}
#     {"type": "watch.leave"}                          stop the WebRTC stream (the socket stays)
#     {"type": "ping"}
#
# Server -> client
#     {"type": "watch.state", "state": "live"|"hold"|"ended", "viewers": N, "members": M,
#      "pictures": P, "screen": bool, "hls": "<url>"}
#                                               M: members in the picture (0: nobody there yet);
#                                               P: of them, those whose camera or screen is on
#                                               air (0 with M > 0: sound only);
#                                               screen: a member's shared screen is on air
#     {"type": "watch.answer", "sdp": "<SDP answer>"}
#     {"type": "watch.layer", "layer": "<name>", "video": bool}
#                                               the ladder moved this viewer; video false: the
#                                               audio-only layer (the page says sound only)
#     {"type": "watch.fallback", "reason": "viewer_limit"|"unavailable", "hls": "<url>"}
#     {"type": "pong"}
#     {"type": "error", "code": "...", "message": "...", "ref": "<the message's type>"}
#
# Anything else, or a message of the wrong shape or size, gets an ``error`` frame and changes nothing.
# =================================================================================================


WATCH_PROTOCOL_VERSION = 1
WATCH_MESSAGE_TYPES = frozenset({"watch.offer", "watch.leave", "ping"})
# A watch page sends an offer, a leave and a ping now and then: a burst of 20 is generous, and
# a socket that keeps flooding after being told is closed.
WATCH_LIMITS = Limits(max_bytes=64 * 1024, per_second=2.0, burst=20.0, flood_limit=50)


@dataclass(frozen=True)
class WatchOffer:
    sdp: str


@dataclass(frozen=True)
class WatchLeave:
    pass


@dataclass(frozen=True)
class WatchPing:
    pass


WatchMessage = WatchOffer | WatchLeave | WatchPing


def read_watch_message(frame: dict[str, Any]) -> WatchMessage:
    """Validate one decoded message from a viewer (its ``type`` is a watch message type)."""
    kind = frame["type"]
    if kind == "watch.offer":
        sdp = frame.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0") or set(frame) != {"type", "sdp"}:
            raise ProtocolError("bad_offer", _("The offer is not an SDP description."), ref=kind)
        return WatchOffer(sdp=sdp)
    if kind == "watch.leave" and set(frame) == {"type"}:
        return WatchLeave()
    if kind == "ping" and set(frame) == {"type"}:
        return WatchPing()
    raise ProtocolError("unknown_type", _("Unknown message type."), ref=kind)

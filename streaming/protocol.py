"""The mediation room's signaling protocol (``/ws/room/<hearing public id>/``), version 1.

Every frame is one JSON object with a ``type``; client frames may carry ``"v": 1`` (another
version is refused) and an optional ``ref`` echoed in the reply, so the page can match answers
to requests. Frames larger than ``MAX_FRAME_BYTES`` are refused without being parsed.

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
    done        {action, member?}       the node carried out the mediator's action
    removed     {message}               you were removed by the expert; the socket closes
    left        {}
    pong        {}
    error       {code, message, ref_type}
    refused     {code, message}         you may not enter this room; the socket closes
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
MAX_SDP_BYTES = 60 * 1024
MEMBER_ID_MAX = 40

EXPERT_ACTIONS = frozenset({"admit", "mute", "remove", "caucus"})


class ProtocolError(ValueError):
    """A frame that cannot be accepted; ``code`` and ``message`` go into the error frame."""

    def __init__(self, code: str, message: str, *, ref_type: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref_type = ref_type


@dataclass(frozen=True)
class Message:
    type: str
    data: dict[str, Any]
    ref: str | None = None


def _sdp(frame: dict[str, Any], type_: str) -> dict[str, Any]:
    offer = frame.get("offer")
    if not isinstance(offer, str) or not offer.startswith("v=0"):
        raise ProtocolError("bad_offer", _("The offer is not an SDP description."), ref_type=type_)
    if len(offer.encode()) > MAX_SDP_BYTES:
        raise ProtocolError("too_large", _("The offer is too large."), ref_type=type_)
    return {"offer": offer}


def _member(frame: dict[str, Any], type_: str, *, nullable: bool = False) -> dict[str, Any]:
    member = frame.get("member")
    if member is None and nullable:
        return {"member": None}
    if not isinstance(member, str) or not 0 < len(member) <= MEMBER_ID_MAX:
        raise ProtocolError("bad_member", _("Unknown room member."), ref_type=type_)
    return {"member": member}


def _flags(frame: dict[str, Any], type_: str, *, required: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("audio", "video"):
        value = frame.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, bool):
            raise ProtocolError(
                "bad_value", _("%(key)s must be true or false.") % {"key": key}, ref_type=type_
            )
        out[key] = value
    if not out:
        raise ProtocolError("bad_value", _("Say what to mute: audio or video."), ref_type=type_)
    return out


def _receive_video(frame: dict[str, Any], type_: str) -> dict[str, Any]:
    value = frame.get("receive_video")
    if value is None:
        return {}
    if not isinstance(value, bool):
        raise ProtocolError("bad_value", _("receive_video must be true or false."), ref_type=type_)
    return {"receive_video": value}


def _empty(frame: dict[str, Any], type_: str) -> dict[str, Any]:
    return {}


SCHEMAS = {
    "join": _sdp,
    "reconnect": _sdp,
    "leave": _empty,
    "media": lambda f, t: {**_flags(f, t, required=True), **_receive_video(f, t)},
    "admit": _member,
    "mute": lambda f, t: {**_member(f, t), **_flags(f, t, required=False)},
    "remove": _member,
    "caucus": lambda f, t: _member(f, t, nullable=True),
    "ping": _empty,
}


def parse(text: str | bytes | None) -> Message:
    """Validate one client frame; raise ``ProtocolError`` for anything not in the protocol."""
    if text is None:
        raise ProtocolError("bad_frame", _("Frames must be JSON text."))
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", _("The message is too large."))
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: a few kilobytes of "[[[[..." nest deeper than the decoder goes
        raise ProtocolError("bad_json", _("The message is not valid JSON.")) from exc
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", _("A message must be a JSON object."))
    type_ = frame.get("type")
    if not isinstance(type_, str) or type_ not in SCHEMAS:
        raise ProtocolError("unknown_type", _("Unknown message type."))
    version = frame.get("v", VERSION)
    if version != VERSION:
        raise ProtocolError(
            "unsupported_version", _("Unsupported protocol version."), ref_type=type_
        )
    ref = frame.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 40):
        raise ProtocolError("bad_ref", _("ref must be a short string."), ref_type=type_)
    return Message(type=type_, data=SCHEMAS[type_](frame, type_), ref=ref)


def error_frame(error: ProtocolError) -> dict[str, Any]:
    return {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "ref_type": error.ref_type,
    }


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
#     {"type": "watch.state", "state": "live"|"hold"|"ended", "viewers": N, "hls": "<url>"}
#     {"type": "watch.answer", "sdp": "<SDP answer>"}
#     {"type": "watch.fallback", "reason": "viewer_limit"|"unavailable", "hls": "<url>"}
#     {"type": "pong"}
#     {"type": "error", "code": "...", "message": "..."}
#
# Anything else, or a message of the wrong shape or size, gets an ``error`` frame and changes nothing.
# =================================================================================================


WATCH_PROTOCOL_VERSION = 1
MAX_WATCH_MESSAGE_CHARS = 64 * 1024


class WatchProtocolError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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


def parse_watch_message(content: object, *, size: int) -> WatchMessage:
    """Validate one decoded JSON message from a viewer (``size`` is its raw length)."""
    if size > MAX_WATCH_MESSAGE_CHARS:
        raise WatchProtocolError("too_large", "Message too large.")
    if not isinstance(content, dict):
        raise WatchProtocolError("bad_message", "A message is a JSON object.")
    kind = content.get("type")
    if kind == "watch.offer":
        sdp = content.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0") or set(content) != {"type", "sdp"}:
            raise WatchProtocolError("bad_offer", "watch.offer needs an SDP offer in 'sdp'.")
        return WatchOffer(sdp=sdp)
    if kind == "watch.leave" and set(content) == {"type"}:
        return WatchLeave()
    if kind == "ping" and set(content) == {"type"}:
        return WatchPing()
    raise WatchProtocolError("unknown_type", "Unknown or malformed message.")


def watch_error_frame(code: str, message: str) -> dict:
    return {"type": "error", "code": code, "message": message}

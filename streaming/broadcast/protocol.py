"""Wire messages of the watch WebSocket (``/ws/watch/<hearing public id>/``), version 1.

Client -> server
    {"type": "watch.offer", "sdp": "<SDP offer, receive-only audio + video>"}
    {"type": "watch.leave"}                          stop the WebRTC stream (the socket stays)
    {"type": "ping"}

Server -> client
    {"type": "watch.state", "state": "live"|"hold"|"ended", "viewers": N, "hls": "<url>"}
    {"type": "watch.answer", "sdp": "<SDP answer>"}
    {"type": "watch.fallback", "reason": "viewer_limit"|"unavailable", "hls": "<url>"}
    {"type": "pong"}
    {"type": "error", "code": "...", "message": "..."}

Anything else, or a message of the wrong shape or size, gets an ``error`` frame and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

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
class Ping:
    pass


WatchMessage = WatchOffer | WatchLeave | Ping


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
        return Ping()
    raise WatchProtocolError("unknown_type", "Unknown or malformed message.")


def error_frame(code: str, message: str) -> dict:
    return {"type": "error", "code": code, "message": message}

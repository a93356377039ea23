"""WebSocket messages of mediation_room, validated on the way in. Unknown or malformed messages
get an error frame, never a crash or a silent drop.

Agreement channel (/ws/case/<tracking_number>/agreement/), version 1:
  client → server  {"type": "ping"}                 → {"type": "pong"}
                   {"type": "refresh"}              → {"type": "draft", ...}
  server → client  {"type": "draft", "v": 1, "agreement": code, "state", "state_label",
                    "document": {...}, "comments": [...], "signatures": [...]}
                   {"type": "empty", "v": 1}        (no agreement yet)
                   {"type": "error", "code", "message"}
"""

from __future__ import annotations

import json
from typing import Any

AGREEMENT_PROTOCOL_VERSION = 1
MAX_CLIENT_MESSAGE_BYTES = 2048

# type -> allowed keys besides "type" (none carry data today).
AGREEMENT_CLIENT_MESSAGES: dict[str, frozenset[str]] = {
    "ping": frozenset(),
    "refresh": frozenset(),
}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_agreement_message(text: str | None) -> dict[str, Any]:
    """Decode and validate one client message of the agreement channel."""
    if text is None:
        raise ProtocolError("bad_frame", "text frames only")
    if len(text.encode("utf-8", "replace")) > MAX_CLIENT_MESSAGE_BYTES:
        raise ProtocolError("too_large", "message too large")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested deep
        raise ProtocolError("bad_json", "not JSON") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_message", "an object with a string 'type' is expected")
    allowed = AGREEMENT_CLIENT_MESSAGES.get(message["type"])
    if allowed is None:
        raise ProtocolError("unknown_type", f"unknown message type {message['type'][:40]!r}")
    extra = set(message) - {"type"} - allowed
    if extra:
        raise ProtocolError("bad_message", f"unexpected fields: {', '.join(sorted(extra))[:80]}")
    return message


def error_frame(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def draft_frame(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    if snapshot is None:
        return {"type": "empty", "v": AGREEMENT_PROTOCOL_VERSION}
    return {"type": "draft", "v": AGREEMENT_PROTOCOL_VERSION, **snapshot}

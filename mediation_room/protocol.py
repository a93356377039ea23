"""WebSocket messages of mediation_room, validated on the way in. Unknown or malformed messages
get an error frame, never a crash or a silent drop.

Agreement channel (/ws/case/<tracking_number>/agreement/), version 1:
  client → server  {"type": "ping"}                 → {"type": "pong"}
                   {"type": "refresh"}              → {"type": "draft", ...}
  server → client  {"type": "draft", "v": 1, "agreement": code, "state", "state_label",
                    "document": {...}, "comments": [...], "signatures": [...]}
                   {"type": "empty", "v": 1}        (no agreement yet)
                   {"type": "error", "code", "message", "ref"}
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from cloudbench.sockets import Limits, ProtocolError

AGREEMENT_PROTOCOL_VERSION = 1
MAX_CLIENT_MESSAGE_BYTES = 2048

# type -> allowed keys besides "type" (none carry data today).
AGREEMENT_CLIENT_MESSAGES: dict[str, frozenset[str]] = {
    "ping": frozenset(),
    "refresh": frozenset(),
}
MESSAGE_TYPES = frozenset(AGREEMENT_CLIENT_MESSAGES)
# The page sends a ping now and then and a refresh after reconnecting; each refresh reads the
# database, so a socket that floods is told, then closed.
LIMITS = Limits(max_bytes=MAX_CLIENT_MESSAGE_BYTES, per_second=1.0, burst=10.0, flood_limit=30)


def read_agreement_message(message: dict[str, Any]) -> dict[str, Any]:
    """Validate one decoded client message of the agreement channel (its ``type`` is known)."""
    extra = set(message) - {"type"} - AGREEMENT_CLIENT_MESSAGES[message["type"]]
    if extra:
        raise ProtocolError(
            "bad_message",
            _("Unexpected fields: %(fields)s") % {"fields": ", ".join(sorted(extra))[:80]},
            ref=message["type"],
        )
    return message


def draft_frame(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    if snapshot is None:
        return {"type": "empty", "v": AGREEMENT_PROTOCOL_VERSION}
    return {"type": "draft", "v": AGREEMENT_PROTOCOL_VERSION, **snapshot}

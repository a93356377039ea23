"""The audience WebSocket protocol (`/ws/live/<hearing public id>/`), version 1.

Connect with `?after=<last seq seen>` to resume: the server sends the welcome, then every event
after that number from the database, then live events, with no gap and no repeat. Without it
(a fresh viewer; the page shows recent comments) only live events follow the welcome.

Every frame is a JSON object with `"v": 1` and a `"type"`. What a client may send:

    {"v":1, "type":"resume",  "after": <last seq seen, 0 for none>}
    {"v":1, "type":"comment", "client_id": "<8-64 chars [A-Za-z0-9_-]>", "text": "<1-500 chars>"}
    {"v":1, "type":"vote",    "poll": "<poll public id>", "option": <option position>}
    {"v":1, "type":"ping"}

What the server sends:

    {"v":1, "type":"welcome", "room": ..., "seq": <room's last seq>, "can_comment": bool, ...}
    {"v":1, "type":"events", "events": [{"seq": n, "kind": "...", ...}, ...]}   (one or a batch)
    {"v":1, "type":"comment.ack", "client_id": ..., "state": "visible"|"held", "id": n}
    {"v":1, "type":"vote.ack", "poll": ..., "option": n}
    {"type":"error", "code": "...", "message": "...", "ref": <client_id, poll or type>}
    {"v":1, "type":"pong"}

Event kinds inside "events": comment, comment.removed, poll.opened, poll.tally, poll.closed,
room.settings. Every event carries the room's sequence number; a client that sees a gap asks
`/live/<room>/events?after=<last seq>` over HTTP.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from cloudbench.sockets import Limits, ProtocolError

VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
MAX_COMMENT_CHARS = 500
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
POLL_ID_RE = re.compile(r"^[A-Za-z0-9]{1,16}$")
MESSAGE_TYPES = frozenset({"resume", "comment", "vote", "ping"})


def limits() -> Limits:
    """VOTING_CONNECTION_MESSAGE_LIMIT messages per socket (the comment benchmark's posters talk
    faster than people); a socket that keeps flooding after being told is closed."""
    hits, seconds = settings.VOTING_CONNECTION_MESSAGE_LIMIT
    return Limits(max_bytes=MAX_FRAME_BYTES, per_second=hits / seconds, burst=hits, flood_limit=50)


@dataclass(frozen=True)
class Resume:
    after: int


@dataclass(frozen=True)
class PostComment:
    client_id: str
    text: str


@dataclass(frozen=True)
class CastVote:
    poll: str
    option: int


@dataclass(frozen=True)
class Ping:
    pass


Message = Resume | PostComment | CastVote | Ping


def _int(data: dict[str, Any], name: str, *, lo: int, hi: int, ref: str) -> int:
    value = data.get(name)
    # bool is an int in Python; a client sending true is wrong, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(
            "invalid", _("“%(field)s” must be a whole number.") % {"field": name}, ref=ref
        )
    return value


def _str(data: dict[str, Any], name: str, *, pattern: re.Pattern | None, ref: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise ProtocolError(
            "invalid", _("“%(field)s” is missing or malformed.") % {"field": name}, ref=ref
        )
    return value


def read_message(data: dict[str, Any]) -> Message:
    """Validate one decoded frame (its ``type`` is one of ``MESSAGE_TYPES``); raise
    ProtocolError with a message safe to show."""
    kind = data["type"]
    ref = kind
    if data.get("v", VERSION) != VERSION:
        raise ProtocolError("version", _("Unsupported protocol version."), ref=ref)
    if kind == "resume":
        return Resume(after=_int(data, "after", lo=0, hi=2**62, ref=ref))
    if kind == "comment":
        client_id = _str(data, "client_id", pattern=CLIENT_ID_RE, ref=ref)
        text_value = data.get("text")
        if not isinstance(text_value, str):
            raise ProtocolError("invalid", _("The comment has no text."), ref=client_id)
        cleaned = clean_comment_text(text_value)
        if not cleaned:
            raise ProtocolError("invalid", _("The comment is empty."), ref=client_id)
        if len(cleaned) > MAX_COMMENT_CHARS:
            raise ProtocolError(
                "invalid",
                _("A comment may have at most %(n)d characters.") % {"n": MAX_COMMENT_CHARS},
                ref=client_id,
            )
        return PostComment(client_id=client_id, text=cleaned)
    if kind == "vote":
        return CastVote(
            poll=_str(data, "poll", pattern=POLL_ID_RE, ref=ref),
            option=_int(data, "option", lo=0, hi=100, ref=ref),
        )
    return Ping()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean_comment_text(text: str) -> str:
    """One line of plain text: control and direction-override characters removed, space collapsed.
    Markup is left as typed; every page and the live panel show it as text, never as HTML."""
    text = _CONTROL.sub("", text.replace("\r", " ").replace("\n", " ").replace("\t", " "))
    return re.sub(r" {2,}", " ", text).strip()


def frame(kind: str, **fields: Any) -> str:
    return json.dumps({"v": VERSION, "type": kind, **fields}, ensure_ascii=False)


def events_frame(events: list[dict[str, Any]]) -> str:
    """The one encoding of a batch of events, shared by every connection in the room."""
    return frame("events", events=events)

"""The one base of the project's WebSocket consumers: the room, watch, live-room and agreement
sockets (docs/protocols.md).

The base reads every client frame the same way: it counts the frame against the socket's
message budget (warning now and then, closing a socket that keeps flooding), refuses a frame
over the protocol's size before decoding it, decodes JSON with a nesting limit, checks that it
is an object whose ``type`` the protocol knows, and hands it to the consumer's
``receive_frame``. Whatever is wrong with a frame, at any step, the client gets one kind of
error frame::

    {"type": "error", "code": "<machine code>", "message": "<for people>", "ref": "<what it answers>"}

``ref`` names the client frame the error answers: the reference the client gave it where the
protocol has one (a room frame's ``ref``, a comment's ``client_id``, a vote's ``poll``),
otherwise its ``type``; empty when the frame could not be read that far.

Each protocol declares its ``limits`` and ``message_types``; nothing else about reading frames
differs between the sockets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils.translation import gettext as _

from accounts.ratelimit import MessageBudget

# Close codes: the pages show the reason and do not reconnect (4409 and 4410 say why the
# member is gone; 1000 and the 1xxx codes of a dropped network are the ones to retry).
CLOSE_REFUSED = 4403  # may not use this socket: signed out, not a member, not public
CLOSE_NOT_FOUND = 4404  # no such session, or not public to this viewer
CLOSE_SUPERSEDED = 4409  # the same member opened the room elsewhere
CLOSE_REMOVED = 4410  # the mediator removed this member
CLOSE_FLOOD = 4429  # kept flooding after being told

# No protocol nests deeper than a few levels; a frame of "[[[[..." is refused before decoding.
MAX_DEPTH = 16


class ProtocolError(ValueError):
    """A client frame that cannot be accepted: it becomes an error frame, never a crash."""

    def __init__(self, code: str, message: str, *, ref: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = str(message)
        self.ref = ref


@dataclass(frozen=True)
class Limits:
    """What one socket of a protocol may send: frames of at most ``max_bytes`` (UTF-8), at
    ``per_second`` on average with bursts of ``burst``; after ``flood_limit`` refused frames
    the socket is closed with ``CLOSE_FLOOD``."""

    max_bytes: int
    per_second: float
    burst: float
    flood_limit: int
    max_depth: int = MAX_DEPTH


def error_frame(code: str, message: str, ref: str = "") -> dict[str, str]:
    """The one error frame of every socket (and of the media node's answers on the room's)."""
    return {"type": "error", "code": code, "message": str(message), "ref": ref or ""}


def _too_deep(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _depth in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


def decode(
    text_data: str | None, bytes_data: bytes | None, *, limits: Limits, types: frozenset[str]
) -> dict[str, Any]:
    """One client frame as a dict with a known ``type``, or ``ProtocolError``."""
    if text_data is None:
        if bytes_data is not None and len(bytes_data) > limits.max_bytes:
            raise ProtocolError("too_large", _("The message is too large."))
        raise ProtocolError("bad_frame", _("Frames must be JSON text."))
    # a character is at least a byte: the cheap test first
    if (
        len(text_data) > limits.max_bytes
        or len(text_data.encode("utf-8", "surrogatepass")) > limits.max_bytes
    ):
        raise ProtocolError("too_large", _("The message is too large."))
    try:
        frame = json.loads(text_data)
    except RecursionError:  # "[[[[...": deeper than the decoder goes
        raise ProtocolError("too_deep", _("The message is nested too deeply.")) from None
    except ValueError:
        raise ProtocolError("bad_json", _("The message is not valid JSON.")) from None
    if _too_deep(frame, limits.max_depth):
        raise ProtocolError("too_deep", _("The message is nested too deeply."))
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", _("A message must be a JSON object."))
    kind = frame.get("type")
    if not isinstance(kind, str) or kind not in types:
        ref = kind if isinstance(kind, str) and len(kind) <= 40 else ""
        raise ProtocolError("unknown_type", _("Unknown message type."), ref=ref)
    return frame


class ProtocolConsumer(AsyncWebsocketConsumer):
    """Base of the project's sockets. A protocol sets ``limits`` and ``message_types``, says in
    ``serving()`` whether it reads frames now (after a refusal it does not), and handles each
    valid frame in ``receive_frame``, raising ``ProtocolError`` for one it refuses."""

    limits: ClassVar[Limits]
    message_types: ClassVar[frozenset[str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = MessageBudget(per_second=self.limits.per_second, burst=self.limits.burst)

    def query_param(self, name: str, default: str = "") -> str:
        """The first ``name=`` value of the socket's query string (``default`` without one)."""
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(name)
        return values[0] if values else default

    def serving(self) -> bool:
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.serving():
            return
        if not self.budget.take():
            await self.flooded()
            return
        try:
            frame = decode(text_data, bytes_data, limits=self.limits, types=self.message_types)
            await self.receive_frame(frame)
        except ProtocolError as exc:
            await self.send_error(exc.code, exc.message, ref=exc.ref)

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        raise NotImplementedError

    async def flooded(self) -> None:
        """Say so once in a while (not once per dropped frame), and give up on a flood."""
        if self.budget.should_warn:
            await self.send_error(
                "rate_limited", _("Too many messages. Please wait a few seconds.")
            )
        if self.budget.rejected >= self.limits.flood_limit:
            await self.close(code=CLOSE_FLOOD)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False))

    async def send_error(self, code: str, message: str, *, ref: str = "") -> None:
        await self.send_frame(error_frame(code, message, ref))

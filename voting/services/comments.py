"""Posting a live comment: the checks, the word filter, the store and its broadcast."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.ratelimit import allow
from cloudbench.errors import NotPermitted
from mediation_room.models import Hearing

from .. import broadcast, wordfilter
from ..errors import VotingError
from ..models import (
    Comment,
    Room,
)
from ..protocol import MAX_COMMENT_CHARS, clean_comment_text
from .rooms import comment_event, room_events_append, room_offset_ms, room_seqs_reserve

# Comments per user across all their connections: (hits, seconds). The benchmark's posters talk
# faster than people (settings.VOTING_USER_COMMENT_LIMIT).
USER_COMMENT_LIMIT = tuple(settings.VOTING_USER_COMMENT_LIMIT)


@dataclass(frozen=True)
class CommentResult:
    comment: Comment
    created: bool


_PRECHECK_SQL = """
SELECT
    (SELECT id FROM voting_comment WHERE room_id = %s AND author_id = %s AND client_id = %s),
    EXISTS (SELECT 1 FROM voting_commentban WHERE user_id = %s),
    EXISTS (SELECT 1 FROM voting_roommute WHERE room_id = %s AND user_id = %s)
"""


def _precheck(room_id: int, user_id: int, client_id: str) -> tuple[int | None, bool, bool]:
    """In one round trip: the comment already stored under this client id (if any), whether the
    user is banned, whether they are muted in this room."""
    with connection.cursor() as cursor:
        cursor.execute(_PRECHECK_SQL, [room_id, user_id, client_id, user_id, room_id, user_id])
        existing, banned, muted = cursor.fetchone()
    return existing, bool(banned), bool(muted)


def _refuse_if_cannot_comment(room: Room, *, banned: bool, muted: bool) -> None:
    if banned:
        raise NotPermitted(_("You are barred from commenting."), code="banned")
    if muted:
        raise NotPermitted(_("A moderator has muted you in this room."), code="muted")
    if not room.comments_open or room.hearing.state not in (
        Hearing.State.SCHEDULED,
        Hearing.State.LIVE,
    ):
        raise VotingError(_("Comments are closed for this session."), code="closed")


def comment_post(*, room: Room, author: User, client_id: str, text: str) -> CommentResult:
    """Post a comment to a live room.

    Idempotent per (room, author, client_id): a resend returns the stored comment and broadcasts
    nothing. Refused for banned or muted users, over the rate limit, or in slow mode; held for
    review (not broadcast) in review-all mode or when it contains a sensitive word. A shown comment
    becomes a `comment` event with the room's next sequence number."""
    if not author.is_authenticated:
        raise NotPermitted(_("Sign in to comment."), code="sign_in")
    existing_id, banned, muted = _precheck(room.pk, author.pk, client_id)
    if existing_id is not None:
        return CommentResult(Comment.objects.get(pk=existing_id), created=False)
    try:
        comment = _comment_store(room, author, client_id, text, banned=banned, muted=muted)
        return CommentResult(comment, created=True)
    except IntegrityError:
        # The same client id raced in on another connection; that one won. Its transaction was
        # rolled back whole, so no sequence number was used up.
        existing = Comment.objects.filter(room=room, author=author, client_id=client_id).first()
        if existing is None:
            raise
        return CommentResult(existing, created=False)


# A busy room's settings are read by every comment; each process keeps them for a second (a
# moderator's change reaches the other processes within that second, this one at once).
ROOM_SNAPSHOT_TTL = 1.0


_room_snapshots: dict[int, tuple[float, Room]] = {}


def _room_snapshot(room_id: int) -> Room:
    now = time.monotonic()
    cached = _room_snapshots.get(room_id)
    if cached and cached[0] > now:
        return cached[1]
    room = Room.objects.select_related("hearing").get(pk=room_id)
    if len(_room_snapshots) > 1000:
        _room_snapshots.clear()
    _room_snapshots[room_id] = (now + ROOM_SNAPSHOT_TTL, room)
    return room


def room_snapshot_forget(room_id: int) -> None:
    _room_snapshots.pop(room_id, None)


# The whole write of a shown comment in one round trip: take the room's next sequence number
# (the UPDATE holds the row lock until commit, so numbers commit in order), store the comment
# and its event. The commit does not wait for the WAL flush: with the lock held until commit,
# the flush would bound a busy room to a few dozen comments a second, and a database crash may
# lose the last fraction of a second of chat, never its order or consistency (the counter, the
# comment and its event commit or vanish together).
_STORE_SHOWN_SQL = """
WITH s AS (SELECT set_config('synchronous_commit', 'off', true) AS v),
r AS (
    UPDATE voting_room SET last_seq = last_seq + 1
    WHERE id = %(room)s AND EXISTS (SELECT 1 FROM s)
    RETURNING last_seq
),
c AS (
    INSERT INTO voting_comment (created_at, updated_at, room_id, author_id, client_id, nickname,
                                text, state, hold_reason, offset_ms, seq)
    SELECT now(), now(), %(room)s, %(author)s, %(client_id)s, %(nick)s, %(text)s, 'visible', '',
           %(t)s, r.last_seq
    FROM r
    RETURNING id, seq
)
INSERT INTO voting_roomevent (room_id, seq, kind, payload, created_at)
SELECT %(room)s, c.seq, 'comment',
       jsonb_build_object('seq', c.seq, 'kind', 'comment', 'at', %(at)s::text, 'id', c.id,
                          'nick', %(nick)s::text, 'text', %(text)s::text, 't', %(t)s::bigint),
       now()
FROM c
RETURNING seq, (payload->>'id')::bigint
"""


def _comment_store(
    room: Room, author: User, client_id: str, text: str, *, banned: bool, muted: bool
) -> Comment:
    room = _room_snapshot(room.pk)
    _refuse_if_cannot_comment(room, banned=banned, muted=muted)
    text = clean_comment_text(text)
    if not text or len(text) > MAX_COMMENT_CHARS:
        raise VotingError(_("A comment has 1 to 500 characters."), code="invalid")
    limit, period = USER_COMMENT_LIMIT
    if not allow(f"voting:comment:{author.pk}", limit=limit, period=period):
        raise VotingError(
            _("You are commenting too fast. Please wait a little and try again."),
            code="rate_limited",
        )
    if room.slow_mode_seconds and not cache.add(
        f"voting:slow:{room.pk}:{author.pk}", 1, timeout=room.slow_mode_seconds
    ):
        raise VotingError(
            _("Slow mode is on: one comment every %(n)d seconds.") % {"n": room.slow_mode_seconds},
            code="slow_mode",
        )
    state, hold_reason = Comment.State.VISIBLE, ""
    if wordfilter.find(text):
        state, hold_reason = Comment.State.HELD, "words"
    elif room.review_all:
        state, hold_reason = Comment.State.HELD, "review_all"
    nickname = str(author.nickname)[:40]
    offset = room_offset_ms(room)
    if state == Comment.State.VISIBLE and connection.vendor == "postgresql":
        return _store_shown(room, author, client_id, nickname, text, offset)
    with transaction.atomic():
        seq = room_seqs_reserve(room.pk, 1) if state == Comment.State.VISIBLE else None
        comment = Comment.objects.create(
            room=room,
            author=author,
            client_id=client_id,
            nickname=nickname,
            text=text,
            state=state,
            hold_reason=hold_reason,
            offset_ms=offset,
            seq=seq,
        )
        if seq is not None:
            room_events_append(room, [("comment", comment_event(comment))], last_seq=seq)
    return comment


def _store_shown(
    room: Room, author: User, client_id: str, nickname: str, text: str, offset: int
) -> Comment:
    """A shown comment in one statement. Outside a transaction the statement commits by itself,
    so the room's row lock is held only while PostgreSQL runs it, never across a round trip to
    this process (whose threads may wait for the interpreter lock while a big room's frame goes
    out): that round trip, not the insert, would bound how many comments a room takes a second.
    Inside a caller's transaction it runs in a savepoint, so a duplicate client id rolls back
    alone."""
    at = timezone.now().isoformat()
    params = {
        "room": room.pk,
        "author": author.pk,
        "client_id": client_id,
        "nick": nickname,
        "text": text,
        "t": offset,
        "at": at,
    }
    nested = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with nested, connection.cursor() as cursor:
        cursor.execute(_STORE_SHOWN_SQL, params)
        seq, comment_id = cursor.fetchone()
    event = {
        "seq": seq,
        "kind": "comment",
        "at": at,
        "id": comment_id,
        "nick": nickname,
        "text": text,
        "t": offset,
    }
    room_id = room.pk
    transaction.on_commit(lambda: broadcast.publish(room_id, [event]))
    return Comment(
        pk=comment_id,
        room_id=room.pk,
        author=author,
        client_id=client_id,
        nickname=nickname,
        text=text,
        state=Comment.State.VISIBLE,
        offset_ms=offset,
        seq=seq,
    )

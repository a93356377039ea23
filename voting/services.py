"""Every write of the audience side: comments and moderation, polls, the bench panel, ratings,
consultations.

Each public function is keyword-only and atomic, checks who may act, logs what it did, and
broadcasts only after commit (`transaction.on_commit`)."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership, Role, User
from accounts.ratelimit import allow
from accounts.selectors import communities_for_coordinator, is_coordinator
from accounts.services import notify_person
from mediation_room.errors import CaseError, NotPermitted
from mediation_room.models import Case, Hearing, Party, Status
from mediation_room.selectors import case_role_for_user
from mediation_room.services import case_event_record, consents_all_granted

from . import broadcast, wordfilter
from .models import (
    Comment,
    CommentBan,
    Consultation,
    ConsultationOption,
    ConsultationRemark,
    ConsultationVote,
    MediationRating,
    ModerationAction,
    Panel,
    PanelEvaluation,
    Panelist,
    PanelVolunteer,
    Poll,
    PollOption,
    PollVote,
    Room,
    RoomEvent,
    SensitiveWord,
    Verdict,
)
from .protocol import MAX_COMMENT_CHARS, clean_comment_text

# Per user across all their connections, and per connection (checked in the consumer):
# (hits, seconds). Settings may override them (the benchmark's posters talk faster than people).
USER_COMMENT_LIMIT = tuple(getattr(settings, "VOTING_USER_COMMENT_LIMIT", (10, 30)))
CONNECTION_MESSAGE_LIMIT = tuple(getattr(settings, "VOTING_CONNECTION_MESSAGE_LIMIT", (30, 10)))
PANEL_MIN, PANEL_MAX = 7, 15
TALLY_INTERVAL = 1.0

MODERATOR_CASE_ROLES = {"expert", "coordinator", "admin"}
POLL_CASE_ROLES = {"expert", "coordinator", "admin"}


class VotingError(CaseError):
    """A request the audience side refuses; the message is safe to show the user."""


# --- rooms and events ------------------------------------------------------------------------------


def room_for_hearing(hearing: Hearing) -> Room:
    room = Room.objects.filter(hearing=hearing).first()
    if room is not None:
        return room
    try:
        with transaction.atomic():
            return Room.objects.create(hearing=hearing)
    except IntegrityError:  # created concurrently
        return Room.objects.get(hearing=hearing)


def _next_seqs(room_id: int, count: int) -> int:
    """Advance the room's counter by `count` and return the new last value. The UPDATE takes the
    row lock, held until commit, so sequence numbers commit in order (one round trip)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE voting_room SET last_seq = last_seq + %s WHERE id = %s RETURNING last_seq",
            [count, room_id],
        )
        return cursor.fetchone()[0]


def _append_events(
    room: Room, items: list[tuple[str, dict[str, Any]]], *, last_seq: int | None = None
) -> list[dict[str, Any]]:
    """Give each event the room's next sequence number, store it, and broadcast it on commit.

    Must run inside the caller's transaction. `last_seq` is for a caller that already advanced
    the counter by len(items) (to put the number on its own row too)."""
    if last_seq is None:
        last_seq = _next_seqs(room.pk, len(items))
    now = timezone.now().isoformat()
    events = []
    rows = []
    seq = last_seq - len(items)
    for kind, payload in items:
        seq += 1
        event = {"seq": seq, "kind": kind, "at": now, **payload}
        events.append(event)
        rows.append(RoomEvent(room_id=room.pk, seq=seq, kind=kind, payload=event))
    RoomEvent.objects.bulk_create(rows)
    room_id = room.pk
    transaction.on_commit(lambda: broadcast.publish(room_id, events))
    return events


def is_room_moderator(room: Room, user: User) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser or user.has_role(Role.MODERATOR):
        return True
    return case_role_for_user(room.hearing.case, user) in MODERATOR_CASE_ROLES


def room_is_public(room: Room) -> bool:
    return consents_all_granted(room.hearing.case, "livestream")


def _offset_ms(room: Room) -> int:
    start = room.hearing.started_at or room.created_at
    return max(0, int((timezone.now() - start).total_seconds() * 1000))


def comment_event(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.pk,
        "nick": comment.nickname,
        "text": comment.text,
        "t": comment.offset_ms,
    }


# --- comments --------------------------------------------------------------------------------------


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


def _forget_room_snapshot(room_id: int) -> None:
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
    offset = _offset_ms(room)
    if state == Comment.State.VISIBLE and connection.vendor == "postgresql":
        return _store_shown(room, author, client_id, nickname, text, offset)
    with transaction.atomic():
        seq = _next_seqs(room.pk, 1) if state == Comment.State.VISIBLE else None
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
            _append_events(room, [("comment", comment_event(comment))], last_seq=seq)
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


def _require_moderator(room: Room, user: User) -> None:
    if not is_room_moderator(room, user):
        raise NotPermitted(_("Only the room's moderators may do this."))


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise VotingError(_("Please give a reason."), code="reason_required")
    return reason[:200]


def _log(
    *,
    room: Room | None,
    moderator: User,
    kind: str,
    reason: str,
    target: User | None = None,
    comment: Comment | None = None,
    data: dict | None = None,
) -> ModerationAction:
    return ModerationAction.objects.create(
        room=room,
        moderator=moderator,
        kind=kind,
        reason=reason,
        target_user=target,
        comment=comment,
        data=data or {},
    )


@transaction.atomic
def comment_approve(*, comment: Comment, moderator: User, reason: str = "") -> Comment:
    """Show a held comment: it is broadcast now, with a new sequence number."""
    comment = Comment.objects.select_for_update().select_related("room__hearing").get(pk=comment.pk)
    _require_moderator(comment.room, moderator)
    if comment.state != Comment.State.HELD:
        raise VotingError(_("This comment is not waiting for review."), code="not_held")
    comment.state = Comment.State.VISIBLE
    (event,) = _append_events(comment.room, [("comment", comment_event(comment))])
    comment.seq = event["seq"]
    comment.save(update_fields=["state", "seq", "updated_at"])
    _log(
        room=comment.room,
        moderator=moderator,
        kind=ModerationAction.Kind.APPROVE,
        reason=(reason or "").strip()[:200] or _("Approved"),
        target=comment.author,
        comment=comment,
    )
    return comment


@transaction.atomic
def comment_reject(*, comment: Comment, moderator: User, reason: str) -> Comment:
    comment = Comment.objects.select_for_update().select_related("room__hearing").get(pk=comment.pk)
    _require_moderator(comment.room, moderator)
    reason = _reason(reason)
    if comment.state != Comment.State.HELD:
        raise VotingError(_("This comment is not waiting for review."), code="not_held")
    comment.state = Comment.State.REJECTED
    comment.save(update_fields=["state", "updated_at"])
    _log(
        room=comment.room,
        moderator=moderator,
        kind=ModerationAction.Kind.REJECT,
        reason=reason,
        target=comment.author,
        comment=comment,
    )
    return comment


@transaction.atomic
def comment_delete(*, comment: Comment, moderator: User, reason: str) -> Comment:
    """Remove a shown comment from every viewer's screen (a `comment.removed` event)."""
    comment = Comment.objects.select_for_update().select_related("room__hearing").get(pk=comment.pk)
    _require_moderator(comment.room, moderator)
    reason = _reason(reason)
    was_visible = comment.state == Comment.State.VISIBLE
    if comment.state == Comment.State.DELETED:
        return comment
    comment.state = Comment.State.DELETED
    comment.save(update_fields=["state", "updated_at"])
    if was_visible:
        _append_events(comment.room, [("comment.removed", {"id": comment.pk})])
    _log(
        room=comment.room,
        moderator=moderator,
        kind=ModerationAction.Kind.DELETE,
        reason=reason,
        target=comment.author,
        comment=comment,
    )
    return comment


@transaction.atomic
def user_mute(*, room: Room, user: User, moderator: User, reason: str) -> None:
    _require_moderator(room, moderator)
    reason = _reason(reason)
    if user.pk == moderator.pk:
        raise VotingError(_("You cannot mute yourself."), code="self")
    _item, created = room.mutes.get_or_create(
        user=user, defaults={"by": moderator, "reason": reason}
    )
    if created:
        _log(room=room, moderator=moderator, kind="mute", reason=reason, target=user)


@transaction.atomic
def user_unmute(*, room: Room, user: User, moderator: User, reason: str) -> None:
    _require_moderator(room, moderator)
    reason = _reason(reason)
    if room.mutes.filter(user=user).delete()[0]:
        _log(room=room, moderator=moderator, kind="unmute", reason=reason, target=user)


def may_edit_words(user: User) -> bool:
    """Coordinators, platform moderators and admins keep the sensitive-word list and bans."""
    return bool(
        user.is_authenticated
        and (user.is_superuser or user.has_role(Role.MODERATOR) or is_coordinator(user))
    )


def _require_platform_moderator(user: User) -> None:
    if not may_edit_words(user):
        raise NotPermitted(_("Only coordinators and moderators may do this."))


@transaction.atomic
def user_ban(*, user: User, moderator: User, reason: str, room: Room | None = None) -> None:
    """Bar a user from commenting anywhere until the ban is lifted."""
    if room is not None:
        _require_moderator(room, moderator)
    else:
        _require_platform_moderator(moderator)
    reason = _reason(reason)
    if user.pk == moderator.pk:
        raise VotingError(_("You cannot ban yourself."), code="self")
    _item, created = CommentBan.objects.get_or_create(
        user=user, defaults={"by": moderator, "reason": reason}
    )
    if created:
        _log(room=room, moderator=moderator, kind="ban", reason=reason, target=user)


@transaction.atomic
def user_unban(*, user: User, moderator: User, reason: str) -> None:
    _require_platform_moderator(moderator)
    reason = _reason(reason)
    if CommentBan.objects.filter(user=user).delete()[0]:
        _log(room=None, moderator=moderator, kind="unban", reason=reason, target=user)


@transaction.atomic
def room_settings_update(
    *,
    room: Room,
    moderator: User,
    slow_mode_seconds: int,
    review_all: bool,
    comments_open: bool,
    reason: str = "",
) -> Room:
    _require_moderator(room, moderator)
    if not 0 <= slow_mode_seconds <= 600:
        raise VotingError(_("Slow mode is between 0 and 600 seconds."), code="invalid")
    room = Room.objects.select_for_update().select_related("hearing").get(pk=room.pk)
    room.slow_mode_seconds = slow_mode_seconds
    room.review_all = review_all
    room.comments_open = comments_open
    room.save(update_fields=["slow_mode_seconds", "review_all", "comments_open", "updated_at"])
    transaction.on_commit(lambda: _forget_room_snapshot(room.pk))
    settings_payload = {
        "slow_mode_seconds": slow_mode_seconds,
        "review_all": review_all,
        "comments_open": comments_open,
    }
    _append_events(room, [("room.settings", settings_payload)])
    _log(
        room=room,
        moderator=moderator,
        kind="settings",
        reason=(reason or "").strip()[:200] or _("Room settings"),
        data=settings_payload,
    )
    return room


def _refresh_words() -> None:
    wordfilter.reset()
    wordfilter.bump_version()


@transaction.atomic
def sensitive_word_add(*, word: str, actor: User, reason: str = "") -> SensitiveWord:
    """Coordinators and admins edit the list; every process picks the change up within seconds."""
    _require_platform_moderator(actor)
    word = (word or "").strip()
    if not wordfilter.normalise(word):
        raise VotingError(_("Enter a word or phrase with letters or digits."), code="invalid")
    if len(word) > 60:
        raise VotingError(_("At most 60 characters."), code="invalid")
    item, created = SensitiveWord.objects.get_or_create(word=word, defaults={"added_by": actor})
    if created:
        _log(
            room=None,
            moderator=actor,
            kind="word_add",
            reason=reason[:200] or word,
            data={"word": word},
        )
        transaction.on_commit(_refresh_words)
    return item


@transaction.atomic
def sensitive_word_remove(*, word_id: int, actor: User, reason: str = "") -> None:
    _require_platform_moderator(actor)
    item = SensitiveWord.objects.filter(pk=word_id).first()
    if item is None:
        return
    _log(
        room=None,
        moderator=actor,
        kind="word_remove",
        reason=reason[:200] or item.word,
        data={"word": item.word},
    )
    item.delete()
    transaction.on_commit(_refresh_words)


# --- polls -------------------------------------------------------------------------------------------


def poll_counts(poll: Poll) -> list[int]:
    counts = dict(
        PollVote.objects.filter(poll=poll).values_list("option__position").annotate(n=Count("pk"))
    )
    return [counts.get(option.position, 0) for option in poll.options.all()]


def poll_payload(poll: Poll, *, with_counts: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "poll": poll.public_id,
        "question": poll.question,
        "options": [{"n": o.position, "text": o.text} for o in poll.options.all()],
        "state": poll.state,
        "results": poll.results,
    }
    if with_counts:
        counts = poll_counts(poll)
        payload["counts"] = counts
        payload["total"] = sum(counts)
    return payload


@transaction.atomic
def poll_open(
    *, room: Room, actor: User, question: str, options: list[str], results: str = Poll.Results.LIVE
) -> Poll:
    """The case's mediator or a coordinator asks the audience; a `poll.opened` event follows."""
    room = Room.objects.select_related("hearing__case").get(pk=room.pk)
    if case_role_for_user(room.hearing.case, actor) not in POLL_CASE_ROLES:
        raise NotPermitted(_("Only the mediator or a coordinator may open a poll."))
    question = clean_comment_text(question or "")
    texts = [clean_comment_text(o or "") for o in options]
    texts = [t for t in texts if t]
    if not question or len(question) > 200:
        raise VotingError(_("Write a question of at most 200 characters."), code="invalid")
    if not 2 <= len(texts) <= 6 or any(len(t) > 80 for t in texts):
        raise VotingError(_("Give 2 to 6 options of at most 80 characters."), code="invalid")
    if results not in Poll.Results.values:
        raise VotingError(_("Unknown results setting."), code="invalid")
    poll = Poll.objects.create(room=room, question=question, created_by=actor, results=results)
    PollOption.objects.bulk_create(
        PollOption(poll=poll, position=i, text=t) for i, t in enumerate(texts)
    )
    _append_events(room, [("poll.opened", poll_payload(poll, with_counts=poll.results_visible))])
    return poll


@transaction.atomic
def poll_close(*, poll: Poll, actor: User) -> Poll:
    poll = Poll.objects.select_for_update().select_related("room__hearing__case").get(pk=poll.pk)
    if case_role_for_user(poll.room.hearing.case, actor) not in POLL_CASE_ROLES:
        raise NotPermitted(_("Only the mediator or a coordinator may close a poll."))
    if poll.state == Poll.State.CLOSED:
        return poll
    poll.state = Poll.State.CLOSED
    poll.closed_at = timezone.now()
    poll.save(update_fields=["state", "closed_at", "updated_at"])
    _append_events(poll.room, [("poll.closed", poll_payload(poll, with_counts=True))])
    return poll


def poll_lookup(*, room: Room, poll_public_id: str) -> Poll:
    poll = Poll.objects.filter(room=room, public_id=poll_public_id).first()
    if poll is None:
        raise VotingError(_("There is no such poll in this room."), code="no_poll")
    return poll


@transaction.atomic
def vote_cast(*, poll: Poll, user: User, option_position: int) -> PollVote:
    """One vote per user per poll (a database constraint; this check only words the refusal).
    Tallies go out at most once a second per poll, not once per vote."""
    if not user.is_authenticated:
        raise NotPermitted(_("Sign in to vote."), code="sign_in")
    poll = Poll.objects.get(pk=poll.pk)
    if poll.state != Poll.State.OPEN:
        raise VotingError(_("This poll is closed."), code="poll_closed")
    option = PollOption.objects.filter(poll=poll, position=option_position).first()
    if option is None:
        raise VotingError(_("That is not one of this poll's options."), code="no_option")
    try:
        with transaction.atomic():
            vote = PollVote.objects.create(poll=poll, option=option, user=user)
    except IntegrityError:
        raise VotingError(_("You have already voted in this poll."), code="already_voted") from None
    if poll.results == Poll.Results.LIVE:
        poll_id = poll.pk
        transaction.on_commit(lambda: _schedule_tally(poll_id))
    return vote


def _schedule_tally(poll_id: int) -> None:
    # The first vote of a window claims it (an atomic add in Redis, shared by every process) and
    # schedules one tally read just after the window ends, so later votes of the window are in it.
    if not cache.add(f"voting:tally:{poll_id}", 1, timeout=int(TALLY_INTERVAL)):
        return
    if broadcast.call_later(TALLY_INTERVAL + 0.05, poll_tally_publish, poll_id):
        return
    from .tasks import publish_poll_tally

    publish_poll_tally.apply_async(args=[poll_id], countdown=TALLY_INTERVAL + 0.05)


@transaction.atomic
def poll_tally_publish(poll_id: int) -> None:
    poll = Poll.objects.select_related("room").filter(pk=poll_id).first()
    if poll is None or poll.state != Poll.State.OPEN or not poll.results_visible:
        return
    counts = poll_counts(poll)
    _append_events(
        poll.room,
        [("poll.tally", {"poll": poll.public_id, "counts": counts, "total": sum(counts)})],
    )


# --- bench panel (板凳评议团) -------------------------------------------------------------------------


def draw_keys(seed: str, codes: list[str]) -> list[tuple[str, str]]:
    """The published rule: each eligible code's key is SHA-256(seed + ":" + code) in hex; the panel
    is the `size` codes with the smallest keys. Anyone can recompute it from the seed and list."""
    return sorted(
        (hashlib.sha256(f"{seed}:{code}".encode()).hexdigest(), code) for code in sorted(codes)
    )


def draw(seed: str, codes: list[str], size: int) -> list[str]:
    return [code for _key, code in draw_keys(seed, codes)[:size]]


def commitment_of(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


@transaction.atomic
def volunteer_set(*, user: User, community_id: int, active: bool) -> PanelVolunteer | None:
    """A verified resident offers (or stops offering) to sit on their community's panels."""
    membership = Membership.objects.filter(
        user=user, community_id=community_id, verified_at__isnull=False
    ).first()
    if membership is None:
        raise NotPermitted(
            _("Only residents verified as members of this community may volunteer."),
            code="not_member",
        )
    volunteer = PanelVolunteer.objects.filter(user=user, community_id=community_id).first()
    if volunteer is None:
        if not active:
            return None
        return PanelVolunteer.objects.create(user=user, community_id=community_id)
    volunteer.active = active
    volunteer.save(update_fields=["active", "updated_at"])
    return volunteer


def eligible_volunteers(case: Case) -> list[PanelVolunteer]:
    """The community's active, verified volunteers with no conflict: not a party (by account or
    by number), not the mediator, not living in a party's household."""
    party_users = set(case.parties.exclude(user=None).values_list("user_id", flat=True))
    party_phones = set(case.parties.values_list("phone", flat=True))
    party_users |= set(User.objects.filter(phone__in=party_phones).values_list("pk", flat=True))
    households = set(
        Membership.objects.filter(community=case.community, user_id__in=party_users)
        .exclude(household="")
        .values_list("household", flat=True)
    )
    verified = Membership.objects.filter(community=case.community, verified_at__isnull=False)
    conflicted = (
        set(verified.filter(household__in=households).values_list("user_id", flat=True))
        | party_users
    )
    if case.expert_id:
        conflicted.add(case.expert_id)
    return list(
        PanelVolunteer.objects.filter(
            community=case.community,
            active=True,
            user_id__in=verified.values("user_id"),
        )
        .exclude(user_id__in=conflicted)
        .order_by("code")
    )


def _require_case_coordinator(case: Case, actor: User) -> None:
    if case_role_for_user(case, actor) not in ("coordinator", "admin"):
        raise NotPermitted(_("Only the community's coordinators may do this."))


@transaction.atomic
def panel_commit(*, case: Case, actor: User, size: int = 9) -> Panel:
    """Freeze the eligible list and publish SHA-256 of a fresh secret seed (before the draw).

    Refused unless every party agreed to the livestream, or with fewer eligible volunteers than
    the panel size."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    _require_case_coordinator(case, actor)
    if Panel.objects.filter(case=case).exists():
        raise VotingError(_("This case already has a panel."), code="exists")
    if not consents_all_granted(case, "livestream"):
        raise VotingError(
            _("A bench panel is drawn only for sessions every party agreed to stream."),
            code="not_streamed",
        )
    if not PANEL_MIN <= size <= PANEL_MAX:
        raise VotingError(
            _("A panel has %(lo)d to %(hi)d members.") % {"lo": PANEL_MIN, "hi": PANEL_MAX},
            code="invalid",
        )
    eligible = eligible_volunteers(case)
    if len(eligible) < size:
        raise VotingError(
            _(
                "Only %(n)d eligible volunteers in %(community)s, fewer than the %(size)d "
                "needed. Invite more residents to volunteer, or draw a smaller panel (at least %(lo)d)."
            )
            % {"n": len(eligible), "community": case.community, "size": size, "lo": PANEL_MIN},
            code="too_few",
        )
    seed = secrets.token_hex(32)
    panel = Panel.objects.create(
        case=case,
        size=size,
        seed=seed,
        commitment=commitment_of(seed),
        eligible_codes=sorted(v.code for v in eligible),
        committed_at=timezone.now(),
    )
    case_event_record(
        case=case,
        actor=actor,
        kind="panel_committed",
        note=_("Bench panel draw announced; commitment %(c)s") % {"c": panel.commitment[:16]},
        data={"panel": panel.public_id, "commitment": panel.commitment, "size": size},
        public=True,
    )
    return panel


@transaction.atomic
def panel_draw(*, panel: Panel, actor: User) -> Panel:
    """Draw by the published rule from the frozen list, reveal the seed, notify the panelists."""
    panel = Panel.objects.select_for_update().select_related("case").get(pk=panel.pk)
    _require_case_coordinator(panel.case, actor)
    if panel.state != Panel.State.COMMITTED:
        raise VotingError(_("This panel has already been drawn."), code="drawn")
    codes = draw(panel.seed, panel.eligible_codes, panel.size)
    volunteers = {v.code: v for v in PanelVolunteer.objects.filter(code__in=codes)}
    Panelist.objects.bulk_create(
        Panelist(
            panel=panel,
            volunteer=volunteers[code],
            user_id=volunteers[code].user_id,
            position=i + 1,
        )
        for i, code in enumerate(codes)
    )
    panel.drawn_codes = codes
    panel.seed_revealed = True
    panel.state = Panel.State.DRAWN
    panel.drawn_at = timezone.now()
    panel.save(update_fields=["drawn_codes", "seed_revealed", "state", "drawn_at", "updated_at"])
    case_event_record(
        case=panel.case,
        actor=actor,
        kind="panel_drawn",
        note=_("Bench panel of %(n)d drawn; seed revealed") % {"n": len(codes)},
        data={"panel": panel.public_id, "seed": panel.seed, "drawn": codes},
        public=True,
    )
    link = reverse("voting:panel_evaluate", args=[panel.public_id])
    for volunteer in volunteers.values():
        notify_person(
            kind="panel_drawn",
            body=_(
                "You have been drawn for the bench panel (板凳评议团) of case %(tn)s. "
                "Please watch the session and give your evaluation."
            )
            % {"tn": panel.case.tracking_number},
            dedupe_key=f"panel:{panel.pk}:{volunteer.user_id}",
            user=volunteer.user,
            link=link,
            case_ref=panel.case.tracking_number,
        )
    return panel


@transaction.atomic
def panel_evaluate(*, panel: Panel, user: User, verdict: str, reason: str) -> PanelEvaluation:
    """A drawn panelist's reasoned verdict, once; when the last one is in, the summary is
    attached to the case."""
    panelist = Panelist.objects.filter(panel=panel, user=user).first()
    if panelist is None:
        raise NotPermitted(_("Only the drawn panelists evaluate this case."))
    if verdict not in Verdict.values:
        raise VotingError(_("Choose fair, basically fair or unfair."), code="invalid")
    reason = (reason or "").strip()
    if not 4 <= len(reason) <= 300:
        raise VotingError(
            _("Give your reason in a sentence (4 to 300 characters)."), code="invalid"
        )
    try:
        with transaction.atomic():
            evaluation = PanelEvaluation.objects.create(
                panelist=panelist, verdict=verdict, reason=reason
            )
    except IntegrityError:
        raise VotingError(_("You have already given your evaluation."), code="already") from None
    panel = Panel.objects.select_for_update().select_related("case").get(pk=panel.pk)
    done = PanelEvaluation.objects.filter(panelist__panel=panel).count()
    if done == panel.panelists.count() and panel.state == Panel.State.DRAWN:
        _panel_summary_record(panel, actor=None)
    return evaluation


def panel_summary(panel: Panel) -> dict[str, Any]:
    rows = list(
        PanelEvaluation.objects.filter(panelist__panel=panel)
        .order_by("panelist__position")
        .values("panelist__position", "verdict", "reason")
    )
    counts = {v: 0 for v in Verdict.values}
    for row in rows:
        counts[row["verdict"]] += 1
    return {
        "panel": panel.public_id,
        "size": panel.size,
        "evaluated": len(rows),
        "counts": counts,
        # Positions, never names: "panelist 3 said …".
        "reasons": [
            {"n": r["panelist__position"], "verdict": r["verdict"], "reason": r["reason"]}
            for r in rows
        ],
    }


def _panel_summary_record(panel: Panel, *, actor: User | None) -> None:
    summary = panel_summary(panel)
    panel.state = Panel.State.SUMMARISED
    panel.save(update_fields=["state", "updated_at"])
    c = summary["counts"]
    case_event_record(
        case=panel.case,
        actor=actor,
        kind="panel_summary",
        note=_("Bench panel: %(f)d fair, %(m)d basically fair, %(u)d unfair")
        % {"f": c["fair"], "m": c["mostly_fair"], "u": c["unfair"]},
        data=summary,
        public=True,
    )


@transaction.atomic
def panel_summary_publish(*, panel: Panel, actor: User) -> None:
    """A coordinator closes the panel with the evaluations given so far."""
    panel = Panel.objects.select_for_update().select_related("case").get(pk=panel.pk)
    _require_case_coordinator(panel.case, actor)
    if panel.state != Panel.State.DRAWN:
        raise VotingError(_("The panel is not drawn, or its summary is already out."), code="state")
    _panel_summary_record(panel, actor=actor)


# --- the parties' rating of a mediation (可评价) ---------------------------------------------------------

RATEABLE = {Status.AGREED, Status.NOT_AGREED, Status.FOLLOWED_UP, Status.CLOSED}


@transaction.atomic
def rating_give(*, case: Case, user: User, score: int, comment: str = "") -> MediationRating:
    """Each party rates the mediation once, after the session; it feeds the mediator's record."""
    party = Party.objects.filter(case=case, user=user).first()
    if party is None:
        raise NotPermitted(_("Only the parties rate the mediation."))
    if case.status not in RATEABLE or case.expert_id is None:
        raise VotingError(_("You can rate the mediation after the session."), code="too_early")
    if not isinstance(score, int) or not 1 <= score <= 5:
        raise VotingError(_("Choose 1 to 5 stars."), code="invalid")
    try:
        with transaction.atomic():
            rating = MediationRating.objects.create(
                case=case,
                party=party,
                expert_id=case.expert_id,
                score=score,
                comment=(comment or "").strip()[:500],
            )
    except IntegrityError:
        raise VotingError(_("You have already rated this mediation."), code="already") from None
    case_event_record(
        case=case,
        actor=user,
        kind="rating_given",
        note=_("A party rated the mediation %(n)d/5") % {"n": score},
        data={"score": score, "role": party.role},
    )
    return rating


# --- community consultations (民主协商议事) ---------------------------------------------------------


@transaction.atomic
def consultation_post(
    *,
    actor: User,
    community_id: int,
    title: str,
    body: str,
    options: list[str],
    deadline: datetime,
    quorum: int,
    hearing: Hearing | None = None,
) -> Consultation:
    if not communities_for_coordinator(actor).filter(pk=community_id).exists():
        raise NotPermitted(_("Only the community's coordinators post consultations."))
    title, body = (title or "").strip(), (body or "").strip()
    texts = [t.strip() for t in options if t and t.strip()]
    if not title or len(title) > 120 or not body or len(body) > 4000:
        raise VotingError(_("Give the matter a title and details."), code="invalid")
    if not 2 <= len(texts) <= 8 or any(len(t) > 80 for t in texts):
        raise VotingError(_("Give 2 to 8 options of at most 80 characters."), code="invalid")
    if deadline <= timezone.now():
        raise VotingError(_("The deadline must be in the future."), code="invalid")
    if quorum < 1:
        raise VotingError(_("The quorum is at least 1 vote."), code="invalid")
    consultation = Consultation.objects.create(
        community_id=community_id,
        title=title,
        body=body,
        created_by=actor,
        hearing=hearing,
        deadline=deadline,
        quorum=quorum,
    )
    ConsultationOption.objects.bulk_create(
        ConsultationOption(consultation=consultation, position=i, text=t)
        for i, t in enumerate(texts)
    )
    return consultation


def _verified_member(user: User, community_id: int) -> bool:
    return Membership.objects.filter(
        user=user, community_id=community_id, verified_at__isnull=False
    ).exists()


@transaction.atomic
def consultation_vote(
    *, consultation: Consultation, user: User, option_position: int
) -> ConsultationVote:
    """Verified residents of the community vote once, before the deadline."""
    if not user.is_authenticated or not _verified_member(user, consultation.community_id):
        raise NotPermitted(_("Only verified residents of this community may vote."))
    consultation = Consultation.objects.get(pk=consultation.pk)
    if consultation.state != Consultation.State.OPEN or consultation.deadline <= timezone.now():
        raise VotingError(_("Voting has closed."), code="closed")
    option = consultation.options.filter(position=option_position).first()
    if option is None:
        raise VotingError(_("That is not one of the options."), code="no_option")
    try:
        with transaction.atomic():
            return ConsultationVote.objects.create(
                consultation=consultation, option=option, user=user
            )
    except IntegrityError:
        raise VotingError(_("You have already voted."), code="already_voted") from None


def consultation_tally(consultation: Consultation) -> dict[str, Any]:
    counts = dict(consultation.votes.values_list("option__position").annotate(n=Count("pk")))
    options = [
        {"n": o.position, "text": o.text, "votes": counts.get(o.position, 0)}
        for o in consultation.options.all()
    ]
    total = sum(o["votes"] for o in options)
    electorate = Membership.objects.filter(
        community_id=consultation.community_id, verified_at__isnull=False
    ).count()
    top = max((o["votes"] for o in options), default=0)
    leaders = [o for o in options if o["votes"] == top and top > 0]
    quorum_met = total >= consultation.quorum
    return {
        "options": options,
        "total": total,
        "electorate": electorate,
        "quorum": consultation.quorum,
        "quorum_met": quorum_met,
        "winner": leaders[0]["text"] if quorum_met and len(leaders) == 1 else None,
        "tie": quorum_met and len(leaders) > 1,
    }


@transaction.atomic
def consultation_publish(*, consultation: Consultation, actor: User | None) -> Consultation:
    """After the deadline: freeze and publish the result (valid only if the quorum was met).
    `actor` None is the scheduled task."""
    consultation = Consultation.objects.select_for_update().get(pk=consultation.pk)
    if (
        actor is not None
        and not communities_for_coordinator(actor).filter(pk=consultation.community_id).exists()
    ):
        raise NotPermitted(_("Only the community's coordinators publish results."))
    if consultation.state == Consultation.State.PUBLISHED:
        return consultation
    if consultation.deadline > timezone.now():
        raise VotingError(_("Voting is still open until the deadline."), code="open")
    consultation.result = consultation_tally(consultation)
    consultation.state = Consultation.State.PUBLISHED
    consultation.published_at = timezone.now()
    consultation.save(update_fields=["result", "state", "published_at", "updated_at"])
    return consultation


@transaction.atomic
def consultation_remark(*, consultation: Consultation, user: User, text: str) -> ConsultationRemark:
    if not user.is_authenticated or not _verified_member(user, consultation.community_id):
        raise NotPermitted(_("Only verified residents of this community take part."))
    if CommentBan.objects.filter(user=user).exists():
        raise NotPermitted(_("You are barred from commenting."), code="banned")
    text = (text or "").strip()
    if not text or len(text) > 1000:
        raise VotingError(_("Write 1 to 1000 characters."), code="invalid")
    if not allow(f"voting:remark:{user.pk}", limit=5, period=60):
        raise VotingError(
            _("You are commenting too fast. Please wait a little and try again."),
            code="rate_limited",
        )
    return ConsultationRemark.objects.create(
        consultation=consultation,
        author=user,
        nickname=str(user.nickname)[:40],
        text=text,
        held=bool(wordfilter.find(text)),
    )


def consultations_publish_due() -> int:
    """Publish every consultation whose deadline has passed (the periodic task)."""
    due = Consultation.objects.filter(
        state=Consultation.State.OPEN, deadline__lte=timezone.now()
    ).values_list("pk", flat=True)
    count = 0
    for pk in list(due):
        consultation_publish(consultation=Consultation(pk=pk), actor=None)
        count += 1
    return count

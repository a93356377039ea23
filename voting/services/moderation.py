"""Moderation: approving, rejecting and deleting comments, mutes and bans, room settings, the sensitive-word list."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import User
from cloudbench.errors import NotPermitted

from .. import wordfilter
from ..errors import VotingError
from ..models import (
    Comment,
    CommentBan,
    ModerationAction,
    Room,
    SensitiveWord,
)
from ..selectors import is_room_moderator, may_edit_words
from .comments import room_snapshot_forget
from .rooms import comment_event, room_events_append


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
    (event,) = room_events_append(comment.room, [("comment", comment_event(comment))])
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
        room_events_append(comment.room, [("comment.removed", {"id": comment.pk})])
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
    transaction.on_commit(lambda: room_snapshot_forget(room.pk))
    settings_payload = {
        "slow_mode_seconds": slow_mode_seconds,
        "review_all": review_all,
        "comments_open": comments_open,
    }
    room_events_append(room, [("room.settings", settings_payload)])
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

"""Live polls: opening and closing them, votes, the tally sent to the room."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from cloudbench.errors import NotPermitted
from mediation_room.selectors import case_role_for_user

from .. import broadcast
from ..errors import VotingError
from ..models import (
    Poll,
    PollOption,
    PollVote,
    Room,
)
from ..protocol import clean_comment_text
from ..selectors import poll_counts
from .rooms import room_events_append

TALLY_INTERVAL = 1.0
POLL_CASE_ROLES = {"expert", "coordinator", "admin"}


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
    room_events_append(
        room, [("poll.opened", poll_payload(poll, with_counts=poll.results_visible))]
    )
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
    room_events_append(poll.room, [("poll.closed", poll_payload(poll, with_counts=True))])
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
    from ..tasks import publish_poll_tally

    publish_poll_tally.apply_async(args=[poll_id], countdown=TALLY_INTERVAL + 0.05)


@transaction.atomic
def poll_tally_publish(poll_id: int) -> None:
    poll = Poll.objects.select_related("room").filter(pk=poll_id).first()
    if poll is None or poll.state != Poll.State.OPEN or not poll.results_visible:
        return
    counts = poll_counts(poll)
    room_events_append(
        poll.room,
        [("poll.tally", {"poll": poll.public_id, "counts": counts, "total": sum(counts)})],
    )

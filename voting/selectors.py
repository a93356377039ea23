"""Reads of the audience side, for views, consumers and other apps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Avg, Count, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from accounts.models import Membership, Role, User
from accounts.selectors import is_coordinator
from mediation_room.models import Case, ConsentKind, Hearing
from mediation_room.selectors import case_role_for_user
from mediation_room.services import consents_all_granted

from .errors import VotingError
from .models import (
    Comment,
    Consultation,
    MediationRating,
    ModerationAction,
    Panel,
    PanelEvaluation,
    PanelVolunteer,
    Poll,
    PollVote,
    Room,
    RoomEvent,
    Verdict,
)

EVENTS_PAGE = 500


def expert_rating(user_id: int) -> tuple[float | None, int]:
    """The parties' average rating (1–5) of this mediator's sessions, and how many ratings."""
    row = MediationRating.objects.filter(expert_id=user_id).aggregate(
        avg=Avg("score"), n=Count("pk")
    )
    avg = row["avg"]
    return (round(float(avg), 2) if avg is not None else None, row["n"])


def hearing_by_public_id(public_id: str) -> Hearing:
    hearing = (
        Hearing.objects.select_related("case__community__street")
        .filter(public_id=public_id)
        .first()
    )
    if hearing is None:
        raise Http404
    return hearing


def room_last_seq(room_id: int) -> int:
    """The sequence number of the room's latest event (0 before the first)."""
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first() or 0


def room_is_public_by_id(room_id: int) -> bool:
    """Whether every party of the room's case has its livestream consent granted now."""
    case_id = Room.objects.filter(pk=room_id).values_list("hearing__case_id", flat=True).first()
    if case_id is None:
        return False
    return consents_all_granted(Case(pk=case_id), ConsentKind.LIVESTREAM)


def events_after(room: Room, after: int, *, limit: int = EVENTS_PAGE) -> list[dict[str, Any]]:
    """Events with seq > after, in order. Sequence numbers commit in order, so this is always a
    gap-free run."""
    return list(
        RoomEvent.objects.filter(room=room, seq__gt=after)
        .order_by("seq")
        .values_list("payload", flat=True)[:limit]
    )


def recent_comments(room: Room, *, limit: int = 50) -> list[Comment]:
    rows = list(
        Comment.objects.filter(room=room, state=Comment.State.VISIBLE).order_by("-seq")[:limit]
    )
    rows.reverse()
    return rows


def held_comments(room: Room) -> QuerySet[Comment]:
    return Comment.objects.filter(room=room, state=Comment.State.HELD).select_related("author")


def moderation_log(room: Room, *, limit: int = 100) -> QuerySet[ModerationAction]:
    return room.actions.select_related("moderator", "target_user")[:limit]


def open_polls(room: Room) -> QuerySet[Poll]:
    return room.polls.filter(state=Poll.State.OPEN).prefetch_related("options")


def replay_comments(room: Room) -> QuerySet[Comment]:
    """Shown comments with their time in the session, for a replay."""
    return Comment.objects.filter(room=room, state=Comment.State.VISIBLE).order_by(
        "offset_ms", "pk"
    )


def volunteer_communities(user: User) -> list[dict[str, Any]]:
    """The user's verified communities and whether they volunteer in each."""
    memberships = Membership.objects.filter(user=user, verified_at__isnull=False).select_related(
        "community__street"
    )
    active = {v.community_id: v for v in PanelVolunteer.objects.filter(user=user)}
    return [
        {"community": m.community, "volunteer": active.get(m.community_id)} for m in memberships
    ]


def panel_for_case(case: Case) -> Panel | None:
    return Panel.objects.filter(case=case).first()


def panel_by_public_id(public_id: str) -> Panel:
    panel = Panel.objects.select_related("case__community").filter(public_id=public_id).first()
    if panel is None:
        raise Http404
    return panel


def consultations_for(user: User) -> QuerySet[Consultation]:
    """Consultations of the user's verified communities, plus those a coordinator answers for."""
    from accounts.selectors import communities_for_coordinator

    if not user.is_authenticated:
        return Consultation.objects.none()
    mine = Membership.objects.filter(user=user, verified_at__isnull=False).values("community_id")
    coordinated = communities_for_coordinator(user).values("pk")
    return (
        (
            Consultation.objects.filter(community_id__in=mine)
            | Consultation.objects.filter(community_id__in=coordinated)
        )
        .select_related("community__street")
        .distinct()
    )


def replay_timeline(hearing: Hearing, *, started_at: datetime) -> list[dict[str, Any]]:
    """What the audience said and decided during a hearing, each at its second in the replay
    (counted from ``started_at``, when the replay's picture began): the shown comments, the
    closed polls with their results, and the bench panel's evaluations (by seat, never by name).
    Anything before the picture began is at 0."""

    def at(moment: datetime) -> float:
        return round(max(0.0, (moment - started_at).total_seconds()), 1)

    room = Room.objects.filter(hearing=hearing).first()
    items: list[dict[str, Any]] = []
    if room is not None:
        for comment in replay_comments(room).only("nickname", "text", "created_at"):
            items.append(
                {
                    "t": at(comment.created_at),
                    "kind": "comment",
                    "who": comment.nickname,
                    "text": comment.text,
                }
            )
        polls = room.polls.filter(state=Poll.State.CLOSED).prefetch_related("options")
        counts: dict[int, dict[int, int]] = {}
        for poll_id, position, n in (
            PollVote.objects.filter(poll__in=polls)
            .values_list("poll_id", "option__position")
            .annotate(n=Count("pk"))
        ):
            counts.setdefault(poll_id, {})[position] = n
        for poll in polls:
            mine = counts.get(poll.pk, {})
            items.append(
                {
                    "t": at(poll.closed_at or poll.created_at),
                    "kind": "poll",
                    "text": poll.question,
                    "rows": [
                        {"text": o.text, "count": mine.get(o.position, 0)}
                        for o in poll.options.all()
                    ],
                }
            )
    evaluations = PanelEvaluation.objects.filter(panelist__panel__case_id=hearing.case_id)
    for evaluation in evaluations.select_related("panelist").order_by("created_at", "pk"):
        items.append(
            {
                "t": at(evaluation.created_at),
                "kind": "panel",
                "seat": evaluation.panelist.position,
                "verdict": str(evaluation.get_verdict_display()),
                "text": evaluation.reason,
            }
        )
    items.sort(key=lambda item: item["t"])
    return items


MODERATOR_CASE_ROLES = {"expert", "coordinator", "admin"}


def is_room_moderator(room: Room, user: User) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser or user.has_role(Role.MODERATOR):
        return True
    return case_role_for_user(room.hearing.case, user) in MODERATOR_CASE_ROLES


def room_is_public(room: Room) -> bool:
    return consents_all_granted(room.hearing.case, "livestream")


def may_edit_words(user: User) -> bool:
    """Coordinators, platform moderators and admins keep the sensitive-word list and bans."""
    return bool(
        user.is_authenticated
        and (user.is_superuser or user.has_role(Role.MODERATOR) or is_coordinator(user))
    )


def poll_counts(poll: Poll) -> list[int]:
    counts = dict(
        PollVote.objects.filter(poll=poll).values_list("option__position").annotate(n=Count("pk"))
    )
    return [counts.get(option.position, 0) for option in poll.options.all()]


def poll_lookup(*, room: Room, poll_public_id: str) -> Poll:
    poll = Poll.objects.filter(room=room, public_id=poll_public_id).first()
    if poll is None:
        raise VotingError(_("There is no such poll in this room."), code="no_poll")
    return poll


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

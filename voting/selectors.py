"""Reads of the audience side, for views, consumers and other apps."""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count, QuerySet
from django.http import Http404

from accounts.models import Membership, User
from mediation_room.models import Case, ConsentKind, Hearing
from mediation_room.services import consents_all_granted

from .models import (
    Comment,
    Consultation,
    MediationRating,
    ModerationAction,
    Panel,
    PanelVolunteer,
    Poll,
    Room,
    RoomEvent,
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

"""Reads for supervision: who answers for a case, the overdue list, notices."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from accounts.models import CoordinatorPost, User
from accounts.selectors import communities_for_coordinator

from ..models import TERMINAL, Case, Status, SupervisionAlert, SupervisionNotice

# Stages in which the mediator is the one expected to move the case; in every other stage it is
# the community's coordinators.
EXPERT_STAGES = frozenset({Status.MATCHED, Status.SCHEDULED, Status.IN_SESSION})


def case_coordinators(case: Case) -> list[User]:
    """The coordinators posted to the case's community; the street's when the community has none."""
    posts = CoordinatorPost.objects.filter(community_id=case.community_id).select_related("user")
    users = [p.user for p in posts]
    return users or street_coordinators(case)


def street_coordinators(case: Case) -> list[User]:
    """The street-level coordinators (CoordinatorPost with no community) above the case."""
    posts = CoordinatorPost.objects.filter(
        street_id=case.community.street_id, community__isnull=True
    ).select_related("user")
    return [p.user for p in posts]


def stage_owners(case: Case) -> list[User]:
    """Who must move the case out of its current stage."""
    if case.status in EXPERT_STAGES and case.expert_id:
        return [case.expert]
    return case_coordinators(case)


def notice_recipients(case: Case) -> list[User]:
    """People a supervision notice about the case may be addressed to."""
    people: dict[int, User] = {}
    if case.expert_id:
        people[case.expert_id] = case.expert
    for user in case_coordinators(case) + street_coordinators(case):
        people.setdefault(user.pk, user)
    return list(people.values())


def hearing_recipients(case: Case) -> list[tuple[User | None, str, str]]:
    """(user, phone, key) for every party and the mediator of a case."""
    out: list[tuple[User | None, str, str]] = [
        (p.user, p.phone, f"party{p.pk}") for p in case.parties.select_related("user")
    ]
    if case.expert_id:
        out.append((case.expert, case.expert.phone or "", f"expert{case.expert_id}"))
    return out


def overdue_cases(user: User, *, now: datetime | None = None) -> QuerySet[Case]:
    """The coordinator's supervision list: their communities' active cases past the stage
    deadline, most late first, each annotated with `escalated` (already sent to the street)."""
    now = now or timezone.now()
    escalated = SupervisionAlert.objects.filter(
        case=OuterRef("pk"),
        stage_entered_at=OuterRef("status_changed_at"),
        level=SupervisionAlert.Level.ESCALATED,
    )
    return (
        Case.objects.filter(community__in=communities_for_coordinator(user), stage_deadline__lt=now)
        .exclude(status__in=TERMINAL)
        .select_related("community__street", "expert")
        .annotate(escalated=Exists(escalated))
        .order_by("stage_deadline", "pk")
    )


def lateness(deadline: datetime, now: datetime | None = None) -> timedelta:
    return (now or timezone.now()) - deadline


def notices_to_user(user: User) -> QuerySet[SupervisionNotice]:
    """Notices addressed to the user, unanswered first (they stay until answered)."""
    return (
        SupervisionNotice.objects.filter(to_user=user)
        .select_related("case", "issued_by")
        .order_by(F("answered_at").desc(nulls_first=True), "due")
    )


def open_notices_for_coordinator(user: User) -> QuerySet[SupervisionNotice]:
    """Unanswered notices about the coordinator's communities' cases."""
    return (
        SupervisionNotice.objects.filter(
            case__community__in=communities_for_coordinator(user), answered_at__isnull=True
        )
        .select_related("case", "to_user", "issued_by")
        .order_by("due", "pk")
    )


def access_notice_for_user(user: User, pk: int) -> SupervisionNotice | None:
    """The notice if the user is its addressee, issuer or a coordinator of the case."""
    notice = (
        SupervisionNotice.objects.select_related("case__community", "to_user", "issued_by")
        .filter(pk=pk)
        .first()
    )
    if notice is None or not user.is_authenticated:
        return None
    if user.pk in (notice.to_user_id, notice.issued_by_id):
        return notice
    if communities_for_coordinator(user).filter(pk=notice.case.community_id).exists():
        return notice
    return None

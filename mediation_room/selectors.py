"""Reads about cases, and the one gatekeeper that decides who may see a case."""

from __future__ import annotations

from django.db.models import Case as SqlCase
from django.db.models import IntegerField, Q, QuerySet, Value, When
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from accounts.selectors import communities_for_coordinator

from .models import Case, CaseEvent, Hearing, Party, Status


def case_roles_for_user(case: Case, user: User) -> set[str]:
    """Every role the user holds in this case: applicant, respondent, expert, coordinator, admin."""
    if not user or not user.is_authenticated:
        return set()
    roles: set[str] = set()
    for role in Party.objects.filter(case=case, user=user).values_list("role", flat=True):
        roles.add(role)
    if case.expert_id and case.expert_id == user.pk:
        roles.add("expert")
    if user.is_superuser:
        roles.update({"admin", "coordinator"})
    elif communities_for_coordinator(user).filter(pk=case.community_id).exists():
        roles.add("coordinator")
    return roles


def case_role_for_user(case: Case, user: User) -> str | None:
    """The single role that decides what the user sees (a party first, then mediator, then staff)."""
    roles = case_roles_for_user(case, user)
    for role in ("applicant", "respondent", "expert", "coordinator", "admin"):
        if role in roles:
            return role
    return None


def access_case_for_user(user: User, tracking_number: str) -> tuple[Case, str]:
    """The case and the user's role in it, or 404 (never 403: a stranger learns nothing, not even
    that the number exists)."""
    case = (
        Case.objects.select_related("community__street", "expert", "reporter")
        .filter(tracking_number=tracking_number)
        .first()
    )
    if case is None:
        raise Http404
    role = case_role_for_user(case, user)
    if role is None:
        raise Http404
    return case, role


def access_hearing_for_user(user: User, public_id: str) -> tuple[Hearing, str]:
    hearing = (
        Hearing.objects.select_related("case__community__street", "case__expert")
        .filter(public_id=public_id)
        .first()
    )
    if hearing is None:
        raise Http404
    role = case_role_for_user(hearing.case, user)
    if role is None:
        raise Http404
    return hearing, role


def cases_for_party(user: User) -> QuerySet[Case]:
    return (
        Case.objects.filter(Q(parties__user=user) | Q(expert=user))
        .select_related("community__street")
        .distinct()
        .order_by("-created_at")
    )


def case_board(
    user: User,
    *,
    status: str | None = None,
    category: str | None = None,
    community_id: int | None = None,
) -> QuerySet[Case]:
    """The coordinator's board: their communities' cases, overdue first, then oldest deadline."""
    now = timezone.now()
    qs = Case.objects.filter(community__in=communities_for_coordinator(user)).select_related(
        "community__street", "expert"
    )
    if status:
        qs = qs.filter(status=status)
    if category:
        qs = qs.filter(category=category)
    if community_id:
        qs = qs.filter(community_id=community_id)
    overdue = SqlCase(
        When(stage_deadline__lt=now, then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    return qs.annotate(overdue_rank=overdue).order_by(
        "overdue_rank", "stage_deadline", "-created_at"
    )


def case_lookup(tracking_number: str, last_four: str) -> Case | None:
    """Public lookup (可查询): the case when the tracking number and the last four digits of one of
    its parties' numbers match; None otherwise (the same answer for both mistakes)."""
    if not (tracking_number and last_four and len(last_four) == 4 and last_four.isdigit()):
        return None
    case = Case.objects.filter(tracking_number=tracking_number.strip().upper()).first()
    if case is None:
        return None
    if not case.parties.filter(phone__endswith=last_four).exists():
        return None
    return case


def public_timeline(case: Case) -> QuerySet[CaseEvent]:
    """Stage changes only, for the lookup page: no notes, no actors, no personal data."""
    return case.events.filter(public=True).only("kind", "from_status", "to_status", "created_at")


def audit_trail(case: Case) -> QuerySet[CaseEvent]:
    return case.events.select_related("actor").all()


def open_hearing(case: Case) -> Hearing | None:
    return case.hearings.filter(state__in=[Hearing.State.SCHEDULED, Hearing.State.LIVE]).first()


def status_counts(user: User) -> dict[str, int]:
    from django.db.models import Count

    rows = (
        Case.objects.filter(community__in=communities_for_coordinator(user))
        .values("status")
        .annotate(n=Count("pk"))
    )
    counts = {s.value: 0 for s in Status}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts

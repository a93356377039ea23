"""Reads for the expert pool: the public directory, an expert's record, the dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from accounts.models import User
from mediation_room.models import Case, Hearing, Status

from .models import ExpertProfile, Invitation, InvitationState


def directory(
    *, kind: str = "", specialty: str = "", community_id: int | None = None
) -> QuerySet[ExpertProfile]:
    """Active experts for the public directory, filtered; communities prefetched (one query)."""
    qs = ExpertProfile.objects.filter(active=True).prefetch_related("communities")
    if kind:
        qs = qs.filter(kind=kind)
    if specialty:
        qs = qs.filter(specialties__contains=f",{specialty},")
    if community_id:
        qs = qs.filter(communities__id=community_id)
    return qs.order_by("public_name", "pk")


def profile_by_public_id(public_id: str) -> ExpertProfile | None:
    return (
        ExpertProfile.objects.filter(public_id=public_id, active=True)
        .select_related("home_community")
        .prefetch_related("communities__street")
        .first()
    )


@dataclass(frozen=True)
class Figures:
    """An expert's public record. Outcomes are read from the audit trail, so a case that has since
    been followed up or closed still counts as agreed or not."""

    taken: int = 0
    concluded: int = 0
    agreed: int = 0
    rating_sum: int = 0
    rating_count: int = 0

    @property
    def agreement_rate(self) -> int | None:
        return round(100 * self.agreed / self.concluded) if self.concluded else None

    @property
    def rating_average(self) -> float | None:
        return round(self.rating_sum / self.rating_count, 1) if self.rating_count else None


def figures_for(profiles: list[ExpertProfile]) -> dict[int, Figures]:
    """Figures keyed by profile id, for any number of experts in one query."""
    by_user = {p.user_id: p for p in profiles}
    if not by_user:
        return {}
    rows = (
        Case.objects.filter(expert_id__in=list(by_user))
        .values("expert_id")
        .annotate(
            taken=Count("pk", distinct=True),
            agreed=Count("pk", distinct=True, filter=Q(events__to_status=Status.AGREED)),
            concluded=Count(
                "pk",
                distinct=True,
                filter=Q(events__to_status__in=[Status.AGREED, Status.NOT_AGREED]),
            ),
        )
    )
    counted = {row["expert_id"]: row for row in rows}
    out = {}
    for user_id, p in by_user.items():
        row = counted.get(user_id, {})
        out[p.pk] = Figures(
            taken=row.get("taken", 0),
            concluded=row.get("concluded", 0),
            agreed=row.get("agreed", 0),
            rating_sum=p.rating_sum,
            rating_count=p.rating_count,
        )
    return out


def profile_for_user(user: User) -> ExpertProfile | None:
    if not user.is_authenticated:
        return None
    return ExpertProfile.objects.filter(user_id=user.pk).first()


def pending_invitations(profile: ExpertProfile) -> QuerySet[Invitation]:
    return (
        Invitation.objects.filter(
            expert=profile, state=InvitationState.PENDING, expires_at__gt=timezone.now()
        )
        .select_related("case__community__street")
        .order_by("expires_at")
    )


def expert_cases(user: User) -> QuerySet[Case]:
    return (
        Case.objects.filter(expert_id=user.pk)
        .select_related("community__street")
        .order_by("-status_changed_at")
    )


def expert_schedule(user: User) -> QuerySet[Hearing]:
    return (
        Hearing.objects.filter(
            case__expert_id=user.pk,
            state__in=[Hearing.State.SCHEDULED, Hearing.State.LIVE],
            ends_at__gte=timezone.now(),
        )
        .select_related("case")
        .order_by("starts_at")
    )


def case_invitations(case: Case) -> QuerySet[Invitation]:
    return case.expert_invitations.select_related("expert", "invited_by").order_by("-created_at")


def invitation_for_expert(user: User, invitation_id: int) -> Invitation | None:
    """The invitation when it is addressed to this user; None for anyone else's or a forged id."""
    if not user.is_authenticated:
        return None
    return (
        Invitation.objects.filter(pk=invitation_id, expert__user_id=user.pk)
        .select_related("case", "expert")
        .first()
    )

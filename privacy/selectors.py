"""Reads of the personal-data pages: the access log as a party and as a reviewer sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from accounts.selectors import communities_for_coordinator, is_coordinator
from mediation_room.models import Case

from .models import AccessLog, ConsentReceipt, LegalHold

REVIEW_PAGE_SIZE = 50


def staff_opens_of_case(case: Case) -> QuerySet[AccessLog]:
    """What the case's parties see: every opening by someone who is not a party of the case."""
    return (
        AccessLog.objects.filter(case=case)
        .exclude(role__in=AccessLog.PARTY_ROLES)
        .select_related("actor")
    )


def may_review_access_log(user: User) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or is_coordinator(user)))


@dataclass(frozen=True)
class LogFilters:
    case: str = ""
    kind: str = ""
    staff_only: bool = False
    since: date | None = None
    until: date | None = None


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def access_log_for_reviewer(user: User, filters: LogFilters) -> QuerySet[AccessLog]:
    """The log of the cases a coordinator oversees (all cases for an administrator)."""
    rows = AccessLog.objects.select_related("actor", "case")
    if not user.is_superuser:
        rows = rows.filter(case__community__in=communities_for_coordinator(user))
    if filters.case:
        rows = rows.filter(case__tracking_number=filters.case.strip())
    if filters.kind:
        rows = rows.filter(kind=filters.kind)
    if filters.staff_only:
        rows = rows.exclude(role__in=AccessLog.PARTY_ROLES)
    if filters.since:
        rows = rows.filter(at__gte=_day_start(filters.since))
    if filters.until:
        rows = rows.filter(at__lt=_day_start(filters.until) + timezone.timedelta(days=1))
    return rows.order_by("-at", "-pk")


def active_holds(case: Case) -> QuerySet[LegalHold]:
    return case.legal_holds.filter(lifted_at__isnull=True)


def recordings_of(hearing) -> QuerySet:
    """The recordings kept of a hearing, in the order they were made."""
    from streaming.models import Recording

    return Recording.objects.filter(hearing=hearing).order_by("started_at", "pk")


def consent_receipts_of(user: User) -> QuerySet[ConsentReceipt]:
    """The receipts of the person's own consents, newest first."""
    return (
        ConsentReceipt.objects.filter(party__user=user)
        .select_related("party__case")
        .order_by("-at", "-pk")
    )

"""The seam between agreements (and anything else that finds a problem) and supervision (督办).

`open_supervision` is the one call other code makes; its body here is the minimal version: an
audited CaseEvent and a notice to the case's coordinators. The supervision module may replace the
body (e.g. to create a supervision item with its own deadline) without changing the callers."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import notify_person

from .models import Case, CaseEvent


def coordinators_for_case(case: Case) -> QuerySet[User]:
    """Coordinators posted to the case's street (street level) or to its community."""
    community = case.community
    return User.objects.filter(
        Q(posts__street_id=community.street_id, posts__community__isnull=True)
        | Q(posts__community=community),
        is_active=True,
    ).distinct()


@transaction.atomic
def open_supervision(case: Case, reason: str) -> CaseEvent:
    """Open a supervision item on the case; call inside the caller's transaction. Not idempotent
    by itself: callers open one item per problem they detect (they hold the state that says so)."""
    from .services import case_event_record

    event = case_event_record(
        case=case, actor=None, kind="supervision_opened", note=reason, data={"reason": reason}
    )
    for coordinator in coordinators_for_case(case):
        notify_person(
            kind="supervision_opened",
            body=_("[Cloud Bench] Case %(number)s needs supervision: %(reason)s")
            % {"number": case.tracking_number, "reason": reason},
            dedupe_key=f"supervision:{event.pk}:{coordinator.pk}",
            user=coordinator,
            link=f"{settings.SITE_URL}/cases/{case.tracking_number}/",
            case_ref=case.tracking_number,
        )
    return event

"""The seam between agreements (and anything else that finds a problem) and supervision (督办).

`open_supervision` is the one call other code makes: it records a "supervision_opened" CaseEvent
and issues a supervision notice (督办单) that the case's coordinator must answer."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import User

from .models import Case, SupervisionNotice


def coordinators_for_case(case: Case) -> QuerySet[User]:
    """Coordinators posted to the case's street (street level) or to its community."""
    community = case.community
    return User.objects.filter(
        Q(posts__street_id=community.street_id, posts__community__isnull=True)
        | Q(posts__community=community),
        is_active=True,
    ).distinct()


def open_supervision(case: Case, reason: str) -> SupervisionNotice | None:
    """Open supervision of `case` for `reason` (for instance, a term of an agreement was not
    fulfilled on time); call inside the caller's transaction or on its own. Records a
    "supervision_opened" CaseEvent and sends the case's coordinator a supervision notice (SMS +
    in-app) that they must answer. Opening it again for the same reason changes nothing and
    returns the same notice. Returns None when the case's community has no coordinator at all
    (the event is still recorded)."""
    from .supervision.services import supervision_open

    return supervision_open(case=case, reason=reason)

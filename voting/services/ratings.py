"""The parties' rating of a mediation (可评价)."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.models import User
from cloudbench.errors import NotPermitted
from mediation_room.models import Case, Party, Status
from mediation_room.services import case_event_record

from ..errors import VotingError
from ..models import (
    MediationRating,
)

RATEABLE = {Status.AGREED, Status.NOT_AGREED, Status.FOLLOWED_UP, Status.CLOSED}


@transaction.atomic
def rating_give(*, case: Case, user: User, score: int, comment: str = "") -> MediationRating:
    """Each party rates the mediation once, after the session; it feeds the mediator's record."""
    party = Party.objects.filter(case=case, user=user).first()
    if party is None:
        raise NotPermitted(_("Only the parties rate the mediation."))
    if case.status not in RATEABLE or case.expert_id is None:
        raise VotingError(_("You can rate the mediation after the session."), code="too_early")
    if not isinstance(score, int) or not 1 <= score <= 5:
        raise VotingError(_("Choose 1 to 5 stars."), code="invalid")
    try:
        with transaction.atomic():
            rating = MediationRating.objects.create(
                case=case,
                party=party,
                expert_id=case.expert_id,
                score=score,
                comment=(comment or "").strip()[:500],
            )
    except IntegrityError:
        raise VotingError(_("You have already rated this mediation."), code="already") from None
    case_event_record(
        case=case,
        actor=user,
        kind="rating_given",
        note=_("A party rated the mediation %(n)d/5") % {"n": score},
        data={"score": score, "role": party.role},
    )
    return rating

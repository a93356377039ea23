"""Community consultations (民主协商议事): posting, votes, remarks and publishing the result."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from accounts.ratelimit import allow
from accounts.selectors import communities_for_coordinator
from cloudbench.errors import NotPermitted
from mediation_room.models import Hearing

from .. import wordfilter
from ..errors import VotingError
from ..models import (
    CommentBan,
    Consultation,
    ConsultationOption,
    ConsultationRemark,
    ConsultationVote,
)
from ..selectors import consultation_tally


@transaction.atomic
def consultation_post(
    *,
    actor: User,
    community_id: int,
    title: str,
    body: str,
    options: list[str],
    deadline: datetime,
    quorum: int,
    hearing: Hearing | None = None,
) -> Consultation:
    if not communities_for_coordinator(actor).filter(pk=community_id).exists():
        raise NotPermitted(_("Only the community's coordinators post consultations."))
    title, body = (title or "").strip(), (body or "").strip()
    texts = [t.strip() for t in options if t and t.strip()]
    if not title or len(title) > 120 or not body or len(body) > 4000:
        raise VotingError(_("Give the matter a title and details."), code="invalid")
    if not 2 <= len(texts) <= 8 or any(len(t) > 80 for t in texts):
        raise VotingError(_("Give 2 to 8 options of at most 80 characters."), code="invalid")
    if deadline <= timezone.now():
        raise VotingError(_("The deadline must be in the future."), code="invalid")
    if quorum < 1:
        raise VotingError(_("The quorum is at least 1 vote."), code="invalid")
    consultation = Consultation.objects.create(
        community_id=community_id,
        title=title,
        body=body,
        created_by=actor,
        hearing=hearing,
        deadline=deadline,
        quorum=quorum,
    )
    ConsultationOption.objects.bulk_create(
        ConsultationOption(consultation=consultation, position=i, text=t)
        for i, t in enumerate(texts)
    )
    return consultation


def _verified_member(user: User, community_id: int) -> bool:
    return Membership.objects.filter(
        user=user, community_id=community_id, verified_at__isnull=False
    ).exists()


@transaction.atomic
def consultation_vote(
    *, consultation: Consultation, user: User, option_position: int
) -> ConsultationVote:
    """Verified residents of the community vote once, before the deadline."""
    if not user.is_authenticated or not _verified_member(user, consultation.community_id):
        raise NotPermitted(_("Only verified residents of this community may vote."))
    consultation = Consultation.objects.get(pk=consultation.pk)
    if consultation.state != Consultation.State.OPEN or consultation.deadline <= timezone.now():
        raise VotingError(_("Voting has closed."), code="closed")
    option = consultation.options.filter(position=option_position).first()
    if option is None:
        raise VotingError(_("That is not one of the options."), code="no_option")
    try:
        with transaction.atomic():
            return ConsultationVote.objects.create(
                consultation=consultation, option=option, user=user
            )
    except IntegrityError:
        raise VotingError(_("You have already voted."), code="already_voted") from None


@transaction.atomic
def consultation_publish(*, consultation: Consultation, actor: User | None) -> Consultation:
    """After the deadline: freeze and publish the result (valid only if the quorum was met).
    `actor` None is the scheduled task."""
    consultation = Consultation.objects.select_for_update().get(pk=consultation.pk)
    if (
        actor is not None
        and not communities_for_coordinator(actor).filter(pk=consultation.community_id).exists()
    ):
        raise NotPermitted(_("Only the community's coordinators publish results."))
    if consultation.state == Consultation.State.PUBLISHED:
        return consultation
    if consultation.deadline > timezone.now():
        raise VotingError(_("Voting is still open until the deadline."), code="open")
    consultation.result = consultation_tally(consultation)
    consultation.state = Consultation.State.PUBLISHED
    consultation.published_at = timezone.now()
    consultation.save(update_fields=["result", "state", "published_at", "updated_at"])
    return consultation


@transaction.atomic
def consultation_remark(*, consultation: Consultation, user: User, text: str) -> ConsultationRemark:
    if not user.is_authenticated or not _verified_member(user, consultation.community_id):
        raise NotPermitted(_("Only verified residents of this community take part."))
    if CommentBan.objects.filter(user=user).exists():
        raise NotPermitted(_("You are barred from commenting."), code="banned")
    text = (text or "").strip()
    if not text or len(text) > 1000:
        raise VotingError(_("Write 1 to 1000 characters."), code="invalid")
    if not allow(f"voting:remark:{user.pk}", limit=5, period=60):
        raise VotingError(
            _("You are commenting too fast. Please wait a little and try again."),
            code="rate_limited",
        )
    return ConsultationRemark.objects.create(
        consultation=consultation,
        author=user,
        nickname=str(user.nickname)[:40],
        text=text,
        held=bool(wordfilter.find(text)),
    )


def consultations_publish_due() -> int:
    """Publish every consultation whose deadline has passed (the periodic task)."""
    due = Consultation.objects.filter(
        state=Consultation.State.OPEN, deadline__lte=timezone.now()
    ).values_list("pk", flat=True)
    count = 0
    for pk in list(due):
        consultation_publish(consultation=Consultation(pk=pk), actor=None)
        count += 1
    return count

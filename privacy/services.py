"""Writes about personal data that are not retention or export: legal holds.

Each is atomic, checks who may act and writes its CaseEvent."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from mediation_room.errors import CaseError, NotPermitted
from mediation_room.models import Case
from mediation_room.selectors import case_roles_for_user
from mediation_room.services import case_event_record

from .models import LegalHold


def _require_coordinator(case: Case, actor: User) -> None:
    if not case_roles_for_user(case, actor) & {"coordinator", "admin"}:
        raise NotPermitted(_("Only the case's coordinators can place or lift a legal hold."))


@transaction.atomic
def legal_hold_place(
    *, case: Case, actor: User | None, reason: str, kind: str = LegalHold.Kind.COORDINATOR
) -> LegalHold:
    """A coordinator of the case (or, with ``actor=None`` and kind judicial, the platform when it
    sees a judicial confirmation requested) stops retention for the case until the hold is
    lifted. Placing a kind of hold that is already active returns the active one."""
    if actor is not None:
        _require_coordinator(case, actor)
    reason = " ".join(reason.split())[:300]
    if not reason:
        raise CaseError(_("Say why the case is held."), code="reason_required")
    active = LegalHold.objects.filter(case=case, kind=kind, lifted_at__isnull=True).first()
    if active is not None:
        return active
    hold = LegalHold.objects.create(case=case, kind=kind, reason=reason, placed_by=actor)
    case_event_record(
        case=case,
        actor=actor,
        kind="legal_hold_placed",
        note=reason,
        data={"hold": hold.pk, "kind": kind},
    )
    return hold


@transaction.atomic
def legal_hold_lift(*, case: Case, hold_id: int, actor: User, note: str) -> LegalHold:
    """A coordinator of the case lifts a hold, saying why; retention resumes at its next run."""
    _require_coordinator(case, actor)
    hold = LegalHold.objects.select_for_update().filter(case=case, pk=hold_id).first()
    if hold is None:
        raise CaseError(_("No such hold on this case."), code="not_found")
    if hold.lifted_at is not None:
        return hold
    note = " ".join(note.split())[:300]
    if not note:
        raise CaseError(_("Say why the hold ends."), code="note_required")
    hold.lifted_at, hold.lifted_by, hold.lift_note = timezone.now(), actor, note
    hold.save(update_fields=["lifted_at", "lifted_by", "lift_note", "updated_at"])
    case_event_record(
        case=case,
        actor=actor,
        kind="legal_hold_lifted",
        note=note,
        data={"hold": hold.pk, "kind": hold.kind},
    )
    return hold

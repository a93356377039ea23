"""Reads for the mediation room: who may enter, what they are called there, what is kept."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.http import Http404
from django.utils.translation import gettext as _

from accounts.models import User
from cloudbench.errors import DomainError
from mediation_room.models import CaseEvent, ConsentKind, Hearing
from mediation_room.selectors import access_hearing_for_user, case_role_for_user
from mediation_room.services import consents_all_granted

from .models import Evidence, Recording

# Who may enter a room: the case's parties, its matched expert and its coordinators.
ROOM_ROLES = ("applicant", "respondent", "expert", "coordinator")
OPEN_STATES = (Hearing.State.SCHEDULED, Hearing.State.LIVE)


def role_label(role: str) -> str:
    """How a member is shown in the room: by role, never by name."""
    return {
        "expert": _("Mediator"),
        "applicant": _("Applicant (party A)"),
        "respondent": _("Respondent (party B)"),
        "coordinator": _("Coordinator"),
    }.get(role, role)


class RoomRefused(DomainError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True)
class RoomAccess:
    """JSON-safe facts about one member's access to one room."""

    public_id: str
    hearing_id: int
    case_id: int
    role: str
    member_id: str
    label: str
    record: bool
    # admitted earlier in this hearing: a member coming back (a dropped network, a restarted
    # server that forgot the lobby) goes straight in, without the mediator admitting them again
    admitted: bool = False


def room_member_id(public_id: str, user_id: int) -> str:
    """A member's id in one room: stable across reconnects, not the user's id, not guessable."""
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"room:{public_id}:{user_id}".encode(), hashlib.sha256).hexdigest()[:16]


def room_access_for_user(user: User, public_id: str) -> RoomAccess:
    """The user's place in the hearing's room, or ``RoomRefused`` saying why not.

    A stranger is told the same as for a room that does not exist."""
    if not user or not user.is_authenticated:
        raise RoomRefused("login_required", _("Sign in to enter the mediation room."))
    try:
        hearing, role = access_hearing_for_user(user, public_id)
    except Http404 as exc:
        raise RoomRefused("forbidden", _("You are not a member of this mediation room.")) from exc
    if role not in ROOM_ROLES:
        raise RoomRefused("forbidden", _("You are not a member of this mediation room."))
    if hearing.state not in OPEN_STATES:
        raise RoomRefused("closed", _("This hearing has ended or was cancelled."))
    member_id = room_member_id(hearing.public_id, user.pk)
    return RoomAccess(
        public_id=hearing.public_id,
        hearing_id=hearing.pk,
        case_id=hearing.case_id,
        role=role,
        member_id=member_id,
        label=str(role_label(role)),
        record=consents_all_granted(hearing.case, ConsentKind.RECORDING),
        admitted=member_was_admitted(hearing, member_id),
    )


def member_was_admitted(hearing: Hearing, member_id: str) -> bool:
    """Whether the audit trail's last word on this member in this hearing is an admission."""
    last = (
        CaseEvent.objects.filter(
            case_id=hearing.case_id,
            kind__in=("room_member_admitted", "room_member_removed"),
            data__hearing=hearing.public_id,
            data__member=member_id,
        )
        .order_by("-created_at", "-pk")
        .values_list("kind", flat=True)
        .first()
    )
    return last == "room_member_admitted"


def room_state_from_trail(public_id: str) -> dict:
    """What a media node that takes over a hearing's room (its node died, or drained) starts from:
    the members admitted and removed (each member's last admission or removal in the audit
    trail), the private caucus if the last caucus event started one, and recording consent. From
    the database, never from the node that held the room before."""
    hearing = Hearing.objects.select_related("case").filter(public_id=public_id).first()
    if hearing is None:
        return {"admitted": [], "removed": [], "caucus": None, "record": False}
    last: dict[str, str] = {}
    caucus = None
    events = CaseEvent.objects.filter(
        case_id=hearing.case_id,
        kind__in=(
            "room_member_admitted",
            "room_member_removed",
            "room_caucus_started",
            "room_caucus_ended",
        ),
        data__hearing=hearing.public_id,
    ).order_by("created_at", "pk")
    for kind, data, actor_id in events.values_list("kind", "data", "actor_id"):
        if kind in ("room_member_admitted", "room_member_removed") and data.get("member"):
            last[data["member"]] = kind
        elif kind == "room_caucus_started" and data.get("member") and actor_id:
            caucus = sorted({room_member_id(hearing.public_id, actor_id), data["member"]})
        elif kind == "room_caucus_ended":
            caucus = None
    return {
        "admitted": sorted(m for m, k in last.items() if k == "room_member_admitted"),
        "removed": sorted(m for m, k in last.items() if k == "room_member_removed"),
        "caucus": caucus,
        "record": consents_all_granted(hearing.case, ConsentKind.RECORDING),
    }


def recorded_files(public_id: str) -> set[str]:
    """The files (relative to MEDIA_ROOT) of the hearing's stored recordings."""
    return set(
        Recording.objects.filter(hearing__public_id=public_id).values_list("file", flat=True)
    )


def recording_consent(public_id: str) -> bool:
    hearing = Hearing.objects.select_related("case").get(public_id=public_id)
    return consents_all_granted(hearing.case, ConsentKind.RECORDING)


def hearing_recordings(hearing: Hearing) -> list[Recording]:
    return list(Recording.objects.filter(hearing=hearing))


def case_evidence(hearing: Hearing) -> list[Evidence]:
    return list(Evidence.objects.filter(case_id=hearing.case_id).order_by("created_at"))


def hearing_for_room_files(user: User, public_id: str) -> Hearing:
    """The hearing whose evidence and recordings ``user`` may see (parties, the expert,
    coordinators; also after the hearing ended), or 404."""
    hearing = Hearing.objects.filter(public_id=public_id).select_related("case").first()
    if hearing is None or not user.is_authenticated:
        raise Http404
    if case_role_for_user(hearing.case, user) not in ROOM_ROLES:
        raise Http404
    return hearing

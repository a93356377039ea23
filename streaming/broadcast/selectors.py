"""Reads behind the livestream: what a hearing's broadcast may show, and what is on in a community."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import QuerySet

from mediation_room.models import CaseEvent, ConsentKind, Hearing
from mediation_room.services import consents_all_granted
from streaming.selectors import room_member_id

# The broadcast picture is drawn in Chinese whatever the viewer's language (it is one picture
# for every viewer), so the banner has its own names for the categories.
CATEGORY_BANNER = {
    "unpaid_wages": "劳资纠纷",
    "neighbours": "邻里纠纷",
    "property": "物业纠纷",
    "family": "婚姻家庭纠纷",
    "consumer": "消费纠纷",
    "housing_land": "房屋土地纠纷",
    "other": "其他纠纷",
}

PAUSE_KINDS = ("broadcast_paused", "broadcast_resumed")


@dataclass(frozen=True)
class BroadcastFacts:
    """Everything the media node needs from the database about one hearing's broadcast.

    JSON-safe values only: it is read in a worker thread and used by the media node.
    """

    public_id: str
    case_id: int
    hearing_state: str
    category: str
    community: str
    livestream_consent: bool
    recording_consent: bool
    paused: bool
    expert_user_id: int | None
    expert_name: str
    # room member id (as the media node knows them) -> the party chose to show their face
    member_faces: dict[str, bool] = field(default_factory=dict)

    @property
    def public(self) -> bool:
        """Residents may watch: every party agreed to the livestream."""
        return self.livestream_consent

    @property
    def finished(self) -> bool:
        return self.hearing_state in (Hearing.State.ENDED, Hearing.State.CANCELLED)


def broadcast_paused(hearing: Hearing) -> bool:
    last = (
        CaseEvent.objects.filter(
            case_id=hearing.case_id, kind__in=PAUSE_KINDS, data__hearing=hearing.public_id
        )
        .order_by("-created_at", "-pk")
        .values_list("kind", flat=True)
        .first()
    )
    return last == "broadcast_paused"


def broadcast_facts(public_id: str) -> BroadcastFacts | None:
    hearing = (
        Hearing.objects.select_related("case__community", "case__expert")
        .filter(public_id=public_id)
        .first()
    )
    if hearing is None:
        return None
    case = hearing.case
    expert = case.expert
    return BroadcastFacts(
        public_id=hearing.public_id,
        case_id=case.pk,
        hearing_state=hearing.state,
        category=CATEGORY_BANNER.get(case.category, ""),
        community=case.community.name,
        livestream_consent=consents_all_granted(case, ConsentKind.LIVESTREAM),
        recording_consent=consents_all_granted(case, ConsentKind.RECORDING),
        paused=broadcast_paused(hearing),
        expert_user_id=expert.pk if expert else None,
        expert_name=expert.display_name if expert else "",
        member_faces={
            room_member_id(hearing.public_id, p.user_id): p.show_face
            for p in case.parties.all()
            if p.user_id is not None
        },
    )


def watchable_hearings(*, community_ids: list[int] | None = None) -> QuerySet[Hearing]:
    """Live and upcoming hearings, live first, for the home page; privacy is checked per row by
    the caller with :func:`hearing_is_public` (consent is per party, not a column)."""
    qs = Hearing.objects.filter(
        state__in=[Hearing.State.LIVE, Hearing.State.SCHEDULED]
    ).select_related("case__community")
    if community_ids is not None:
        qs = qs.filter(case__community_id__in=community_ids)
    return qs.order_by("-state", "starts_at")


def public_hearings(hearings) -> list[Hearing]:
    """The hearings whose every party agreed to the livestream (two queries in all)."""
    from mediation_room.models import Consent, Party

    hearings = list(hearings)
    case_ids = {h.case_id for h in hearings}
    parties: dict[int, set[int]] = {}
    for case_id, party_id in Party.objects.filter(case_id__in=case_ids).values_list(
        "case_id", "pk"
    ):
        parties.setdefault(case_id, set()).add(party_id)
    granted = set(
        Consent.objects.filter(
            party__case_id__in=case_ids, kind=ConsentKind.LIVESTREAM, granted=True
        ).values_list("party_id", flat=True)
    )
    return [h for h in hearings if parties.get(h.case_id) and parties[h.case_id] <= granted]

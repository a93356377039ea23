"""Reads behind the livestream: what a hearing's broadcast may show, and what is on in a community."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from mediation_room.models import CaseEvent, ConsentKind, Hearing
from mediation_room.services import consents_all_granted
from streaming.plane import HLS_MASTER_PLAYLIST
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


def showcase_hearing_id() -> str | None:
    """The demo's showcase (``DEMO_SHOWCASE``): the first live hearing, by creation, that every
    party agreed to livestream. The demo's printout names it; its room gets synthetic members."""
    for hearing in Hearing.objects.filter(state=Hearing.State.LIVE).order_by("pk"):
        if consents_all_granted(hearing.case, ConsentKind.LIVESTREAM):
            return hearing.public_id
    return None


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


# --- replays -------------------------------------------------------------------------------------

REPLAY_PLAYLIST = "live.m3u8"


@dataclass(frozen=True)
class Replay:
    """A finished public hearing's HLS replay on disk, and when its picture began."""

    public_id: str
    category: str
    community: str
    started_at: datetime
    duration: float
    ended_at: datetime | None


def playlist_facts(text: str) -> tuple[datetime | None, float, bool]:
    """The first segment's wall-clock time (EXT-X-PROGRAM-DATE-TIME, written by the HLS
    writer), the playlist's length in seconds, and whether it is complete (EXT-X-ENDLIST)."""
    start = None
    duration = 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:") and start is None:
            value = line.split(":", 1)[1].strip()
            for parse in (datetime.fromisoformat, _strptime_hls):
                try:
                    start = parse(value)
                    break
                except ValueError:
                    continue
        elif line.startswith("#EXTINF:"):
            try:
                duration += float(line[8:].split(",", 1)[0])
            except ValueError:
                pass
    return start, duration, "#EXT-X-ENDLIST" in text


def _strptime_hls(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def replay_directory(public_id: str) -> Path:
    return settings.BROADCAST_HLS_ROOT / public_id


def replay_playlist_name(public_id: str) -> str:
    """What a replay player loads: the master playlist of the ladder's renditions, or the single
    playlist of a replay written before the ladder."""
    if (replay_directory(public_id) / HLS_MASTER_PLAYLIST).exists():
        return HLS_MASTER_PLAYLIST
    return REPLAY_PLAYLIST


def replay_for(public_id: str) -> Replay | None:
    """The replay of a finished hearing that every party let be streamed and recorded, or None
    (not finished, a consent missing or withdrawn, no complete playlist on disk)."""
    facts = broadcast_facts(public_id)
    if facts is None or not (facts.finished and facts.public and facts.recording_consent):
        return None
    try:
        text = (replay_directory(public_id) / REPLAY_PLAYLIST).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    start, duration, complete = playlist_facts(text)
    if start is None or not complete or duration <= 0:
        return None
    ended_at = (
        Hearing.objects.filter(public_id=public_id).values_list("ended_at", flat=True).first()
    )
    return Replay(
        public_id=public_id,
        category=facts.category,
        community=facts.community,
        started_at=start,
        duration=duration,
        ended_at=ended_at,
    )

"""Every write to the expert pool: profiles, availability, conflicts, invitations, ratings.

Lock order, wherever both are taken: the case row first, then the invitation row. Notifications
and the lapse task go out only after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Community, CoordinatorPost, Role, User
from accounts.phones import normalize_mobile
from accounts.services import notify_person, role_grant
from cloudbench.errors import DomainError
from mediation_room.errors import NotPermitted
from mediation_room.models import Case, Category, Hearing, Party, Status
from mediation_room.selectors import case_roles_for_user
from mediation_room.services import case_event_record, case_match, hearing_schedule

from . import matching
from .models import (
    AvailabilityException,
    AvailabilitySlot,
    DeclaredConflict,
    ExpertKind,
    ExpertProfile,
    Invitation,
    InvitationState,
    pack_codes,
)

MAX_REASON = 500
MAX_SLOTS = 40
MAX_EXCEPTIONS = 100
HEARING_LENGTH = timedelta(hours=1)


class ExpertError(DomainError):
    """A request about the expert pool that cannot be carried out; the message is safe to show."""


class InvitationError(ExpertError):
    """An invitation step that cannot be carried out; the message is safe to show."""


def invitation_ttl() -> timedelta:
    """How long an expert has to answer (EXPERT_INVITATION_TTL_MINUTES, default two hours)."""
    return timedelta(minutes=settings.EXPERT_INVITATION_TTL_MINUTES)


def _site(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _coordinators_of(case: Case) -> list[User]:
    posts = CoordinatorPost.objects.filter(
        Q(street_id=case.community.street_id, community__isnull=True)
        | Q(community_id=case.community_id)
    ).select_related("user")
    return list({p.user_id: p.user for p in posts}.values())


def _profile_of(user: User) -> ExpertProfile:
    profile = (
        ExpertProfile.objects.filter(user_id=user.pk).first() if user.is_authenticated else None
    )
    if profile is None:
        raise NotPermitted(_("Only a member of the expert pool can do this."))
    return profile


# --- invitations --------------------------------------------------------------------------------------


def exclusion_reason(case: Case, profile: ExpertProfile) -> str | None:
    """Why this expert may not be offered this case, in words; None when they may. Mirrors the
    exclusions in `matching.rank_candidates` (a test holds the two together)."""
    parties = list(Party.objects.filter(case=case).values_list("user_id", "phone"))
    party_users = {u for u, _p in parties if u}
    party_phones = {p for _u, p in parties}
    user = profile.user
    if not profile.active or not user.is_active:
        return _("This expert is not taking cases at the moment.")
    if user.pk in party_users or (user.phone and user.phone in party_phones):
        return _("This expert is a party of the case.")
    if profile.conflicts.filter(Q(user_id__in=party_users) | Q(phone__in=party_phones)).exists():
        return _("This expert declared a conflict of interest with a party.")
    if case.category == Category.NEIGHBOURS and profile.home_community_id:
        homes = {case.community_id} | set(
            Community.objects.filter(memberships__user_id__in=party_users).values_list(
                "pk", flat=True
            )
        )
        if profile.home_community_id in homes:
            return _("This expert lives in the same community as a party of a neighbour dispute.")
    earlier = (
        case.expert_invitations.filter(expert=profile, state__in=matching.EXCLUDING_STATES)
        .values_list("state", flat=True)
        .first()
    )
    if earlier:
        return _("This expert was already asked about this case (%(state)s).") % {
            "state": InvitationState(earlier).label
        }
    load = (
        Case.objects.filter(expert_id=user.pk, status__in=matching.ACTIVE_STATUSES).count()
        + Invitation.objects.filter(expert=profile, state=InvitationState.PENDING).count()
    )
    if load >= profile.load_cap:
        return _("This expert already has as many cases as they can take.")
    return None


@transaction.atomic
def invitation_send(
    *,
    case: Case,
    actor: User | None,
    expert: ExpertProfile | None = None,
    ttl: timedelta | None = None,
) -> Invitation:
    """Offer an accepted case to one expert: the one a coordinator picked, or (expert=None) the top
    of the ranking. actor=None is the platform itself (after a lapse or an automatic decline).

    Locks the case. Raises NotPermitted for anyone but a coordinator of the case, InvitationError
    when the case is not waiting for a mediator, an invitation is already pending, or the expert
    is excluded. Emits an `invitation_sent` CaseEvent, an SMS and in-app notice to the expert, and
    (after commit) the lapse task due at `expires_at`."""
    case = Case.objects.select_for_update().select_related("community").get(pk=case.pk)
    if actor is not None and not case_roles_for_user(case, actor) & {"coordinator", "admin"}:
        raise NotPermitted(_("Only a coordinator of this community can invite an expert."))
    if case.status != Status.ACCEPTED or case.expert_id:
        raise InvitationError(
            _("Only an accepted case without a mediator can be offered to an expert."),
            code="bad_state",
        )
    if case.expert_invitations.filter(state=InvitationState.PENDING).exists():
        raise InvitationError(
            _("An expert is already considering this case; withdraw that invitation first."),
            code="pending_exists",
        )
    if expert is None:
        ranked = matching.rank_candidates(case, limit=1)
        if not ranked:
            raise InvitationError(
                _("No expert in the pool is eligible and free for this case."),
                code="no_candidate",
            )
        profile = ExpertProfile.objects.select_related("user").get(pk=ranked[0].profile_id)
        rank, score = 1, ranked[0].score
    else:
        profile = ExpertProfile.objects.select_related("user").filter(pk=expert.pk).first()
        if profile is None:
            raise InvitationError(_("No such expert."), code="unknown_expert")
        ranked = matching.rank_candidates(case, only_profile_ids=[profile.pk], limit=1)
        if not ranked:
            raise InvitationError(
                exclusion_reason(case, profile) or _("This expert cannot take this case."),
                code="excluded",
            )
        rank, score = None, ranked[0].score
    now = timezone.now()
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                case=case,
                expert=profile,
                invited_by=actor,
                rank=rank,
                score=score,
                expires_at=now + (ttl or invitation_ttl()),
            )
    except IntegrityError as exc:
        raise InvitationError(
            _("An expert is already considering this case."), code="pending_exists"
        ) from exc
    case_event_record(
        case=case,
        actor=actor,
        kind="invitation_sent",
        note=profile.public_name,
        data={
            "invitation_id": invitation.pk,
            "expert_id": profile.user_id,
            "automatic": expert is None,
            "score": score,
            "expires_at": invitation.expires_at.isoformat(),
        },
    )
    notify_person(
        kind="expert_invitation",
        body=_(
            "[Cloud Bench] You are invited to mediate case %(number)s (%(category)s, %(community)s)."
            " Please answer by %(deadline)s:"
        )
        % {
            "number": case.tracking_number,
            "category": case.get_category_display(),
            "community": case.community.name,
            "deadline": timezone.localtime(invitation.expires_at).strftime("%H:%M"),
        },
        dedupe_key=f"expert-invitation:{invitation.pk}",
        user=profile.user,
        link=_site(reverse("experts:dashboard")),
        case_ref=case.tracking_number,
    )
    from .tasks import lapse_invitation

    invitation_id, eta = invitation.pk, invitation.expires_at
    transaction.on_commit(lambda: lapse_invitation.apply_async(args=[invitation_id], eta=eta))
    return invitation


def _lock_for_answer(invitation: Invitation, actor: User) -> tuple[Case, Invitation]:
    """Lock the case, then the invitation; only the invited expert may answer."""
    row = Invitation.objects.filter(pk=invitation.pk).values("case_id", "expert__user_id").first()
    if row is None or not actor.is_authenticated or row["expert__user_id"] != actor.pk:
        raise NotPermitted(_("This invitation is not addressed to you."))
    case = Case.objects.select_for_update().select_related("community").get(pk=row["case_id"])
    invitation = (
        Invitation.objects.select_for_update().select_related("expert").get(pk=invitation.pk)
    )
    if invitation.state != InvitationState.PENDING:
        raise InvitationError(
            _("This invitation was already answered or has ended: %(state)s.")
            % {"state": invitation.get_state_display()},
            code="already_answered",
        )
    if invitation.expires_at <= timezone.now():
        raise InvitationError(
            _("This invitation has expired; the case is being offered to someone else."),
            code="expired",
        )
    return case, invitation


@dataclass
class Acceptance:
    invitation: Invitation
    case: Case
    hearing: Hearing | None
    fit: str  # "both", "expert", "parties" or "none": how well the hearing time suits everyone


@transaction.atomic
def invitation_accept(*, invitation: Invitation, actor: User) -> Acceptance:
    """The invited expert takes the case. Two accepts racing for one case: the case row lock
    makes them queue, the second finds the invitation answered (or the case matched) and gets an
    InvitationError; the unique index on accepted invitations is the last line.

    The case becomes matched (`case_match`, via_invitation=True) and the first hearing is set at
    the earliest time that suits the parties and the expert (`hearing_schedule`, which texts every
    party and the mediator the time and the join link)."""
    case, invitation = _lock_for_answer(invitation, actor)
    if case.status != Status.ACCEPTED or case.expert_id:
        raise InvitationError(_("This case already has a mediator."), code="taken")
    now = timezone.now()
    invitation.state = InvitationState.ACCEPTED
    invitation.responded_at = now
    try:
        with transaction.atomic():
            invitation.save(update_fields=["state", "responded_at", "updated_at"])
    except IntegrityError as exc:
        raise InvitationError(_("This case already has a mediator."), code="taken") from exc
    case_event_record(
        case=case,
        actor=actor,
        kind="invitation_accepted",
        note=invitation.expert.public_name,
        data={"invitation_id": invitation.pk, "expert_id": actor.pk},
    )
    case = case_match(case=case, expert=actor, actor=actor, via_invitation=True)
    hearing, fit = _schedule_first_hearing(case=case, profile=invitation.expert, now=now)
    if invitation.invited_by_id:
        notify_person(
            kind="expert_invitation_accepted",
            body=_("[Cloud Bench] %(name)s accepted case %(number)s.")
            % {"name": invitation.expert.public_name, "number": case.tracking_number},
            dedupe_key=f"expert-invitation-accepted:{invitation.pk}",
            user=invitation.invited_by,
            link=_site(reverse("frontend:case_detail", args=[case.tracking_number])),
            case_ref=case.tracking_number,
            in_app=True,
        )
    return Acceptance(invitation=invitation, case=case, hearing=hearing, fit=fit)


def _schedule_first_hearing(
    *, case: Case, profile: ExpertProfile, now: datetime
) -> tuple[Hearing | None, str]:
    tz = ZoneInfo(settings.TIME_ZONE)
    horizon = 14
    today = timezone.localtime(now, tz).date()
    slots = [
        matching.Window(s.weekday, s.start_time, s.end_time)
        for s in AvailabilitySlot.objects.filter(profile=profile)
    ]
    exceptions = [
        matching.DatedException(e.date, e.available, e.start_time, e.end_time)
        for e in AvailabilityException.objects.filter(
            profile=profile, date__gte=today, date__lte=today + timedelta(days=horizon)
        )
    ]
    busy = list(
        Hearing.objects.filter(
            case__expert_id=profile.user_id,
            state__in=[Hearing.State.SCHEDULED, Hearing.State.LIVE],
            ends_at__gte=now,
        ).values_list("starts_at", "ends_at")
    )
    found = matching.first_hearing_slot(
        now=now,
        tz=tz,
        party_windows=matching.parse_preferred_times(case.preferred_times).windows,
        expert_slots=slots,
        exceptions=exceptions,
        busy=busy,
        duration=HEARING_LENGTH,
        horizon_days=horizon,
    )
    if found is None:
        case_event_record(
            case=case,
            actor=None,
            kind="hearing_time_needed",
            note=_("Neither the parties nor the expert gave a time; set the hearing by hand."),
        )
        notify_person(
            kind="hearing_time_needed",
            body=_("[Cloud Bench] Please set a time for the hearing of case %(number)s.")
            % {"number": case.tracking_number},
            dedupe_key=f"hearing-time-needed:{case.pk}:{profile.pk}",
            user=profile.user,
            link=_site(reverse("frontend:case_detail", args=[case.tracking_number])),
            case_ref=case.tracking_number,
        )
        return None, "none"
    starts_at, ends_at, fit = found
    hearing = hearing_schedule(case=case, actor=None, starts_at=starts_at, ends_at=ends_at)
    case_event_record(
        case=case, actor=None, kind="hearing_time_chosen", data={"fit": fit, "hearing": hearing.pk}
    )
    return hearing, fit


@transaction.atomic
def invitation_decline(*, invitation: Invitation, actor: User, reason: str) -> Invitation:
    """The invited expert says no, with a reason the coordinator reads. When the platform made the
    invitation by itself, it asks the next candidate straight away; otherwise the coordinator who
    invited is told and chooses."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Please say why, in a few words.")})
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": _("At most 500 characters, please.")})
    case, invitation = _lock_for_answer(invitation, actor)
    invitation.state = InvitationState.DECLINED
    invitation.responded_at = timezone.now()
    invitation.reason = reason
    invitation.save(update_fields=["state", "responded_at", "reason", "updated_at"])
    case_event_record(
        case=case,
        actor=actor,
        kind="invitation_declined",
        note=reason,
        data={"invitation_id": invitation.pk, "expert_id": actor.pk},
    )
    if invitation.invited_by_id is None:
        _invite_next(case)
    else:
        notify_person(
            kind="expert_invitation_declined",
            body=_("[Cloud Bench] %(name)s declined case %(number)s: %(reason)s")
            % {
                "name": invitation.expert.public_name,
                "number": case.tracking_number,
                "reason": reason,
            },
            dedupe_key=f"expert-invitation-declined:{invitation.pk}",
            user=invitation.invited_by,
            link=_site(reverse("experts:candidates", args=[case.tracking_number])),
            case_ref=case.tracking_number,
        )
    return invitation


@transaction.atomic
def invitation_cancel(*, invitation: Invitation, actor: User, reason: str = "") -> Invitation:
    """A coordinator withdraws a pending invitation (e.g. to ask someone else now)."""
    row = Invitation.objects.filter(pk=invitation.pk).values("case_id").first()
    if row is None:
        raise InvitationError(_("No such invitation."), code="unknown")
    case = Case.objects.select_for_update().get(pk=row["case_id"])
    if not case_roles_for_user(case, actor) & {"coordinator", "admin"}:
        raise NotPermitted(_("Only a coordinator of this community can withdraw an invitation."))
    invitation = (
        Invitation.objects.select_for_update().select_related("expert__user").get(pk=invitation.pk)
    )
    if invitation.state != InvitationState.PENDING:
        raise InvitationError(_("Only a pending invitation can be withdrawn."), code="not_pending")
    invitation.state = InvitationState.CANCELLED
    invitation.responded_at = timezone.now()
    invitation.reason = (reason or "").strip()[:MAX_REASON]
    invitation.save(update_fields=["state", "responded_at", "reason", "updated_at"])
    case_event_record(
        case=case,
        actor=actor,
        kind="invitation_cancelled",
        note=invitation.reason,
        data={"invitation_id": invitation.pk, "expert_id": invitation.expert.user_id},
    )
    notify_person(
        kind="expert_invitation_cancelled",
        body=_("[Cloud Bench] The invitation to case %(number)s was withdrawn.")
        % {"number": case.tracking_number},
        dedupe_key=f"expert-invitation-cancelled:{invitation.pk}",
        user=invitation.expert.user,
        case_ref=case.tracking_number,
        in_app=True,
    )
    return invitation


def invitation_lapse(*, invitation_id: int) -> str:
    """Called by the Celery task at `expires_at`: an unanswered invitation lapses and the next
    candidate is invited, once. Safe to run twice, early, or concurrently: under the locks only a
    pending, expired invitation moves, and only that move invites someone."""
    with transaction.atomic():
        row = Invitation.objects.filter(pk=invitation_id).values("case_id").first()
        if row is None:
            return "missing"
        case = Case.objects.select_for_update().select_related("community").get(pk=row["case_id"])
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("expert__user")
            .get(pk=invitation_id)
        )
        if invitation.state != InvitationState.PENDING:
            return f"already_{invitation.state}"
        if invitation.expires_at > timezone.now():
            return "not_due"
        invitation.state = InvitationState.LAPSED
        invitation.save(update_fields=["state", "updated_at"])
        case_event_record(
            case=case,
            actor=None,
            kind="invitation_lapsed",
            note=invitation.expert.public_name,
            data={"invitation_id": invitation.pk, "expert_id": invitation.expert.user_id},
        )
        notify_person(
            kind="expert_invitation_lapsed",
            body=_("[Cloud Bench] Your invitation to case %(number)s expired without an answer.")
            % {"number": case.tracking_number},
            dedupe_key=f"expert-invitation-lapsed:{invitation.pk}",
            user=invitation.expert.user,
            case_ref=case.tracking_number,
        )
        return "lapsed_next_invited" if _invite_next(case) else "lapsed_no_candidate"


def _invite_next(case: Case) -> Invitation | None:
    """The platform invites the top remaining candidate; when there is none, the coordinators are
    told. Runs inside the caller's transaction, with the case locked."""
    if case.status != Status.ACCEPTED:
        return None
    try:
        with transaction.atomic():
            return invitation_send(case=case, actor=None)
    except InvitationError as exc:
        case_event_record(case=case, actor=None, kind="invitation_no_candidate", note=exc.message)
        for coordinator in _coordinators_of(case):
            notify_person(
                kind="expert_no_candidate",
                body=_("[Cloud Bench] No expert is left to invite for case %(number)s.")
                % {"number": case.tracking_number},
                dedupe_key=f"expert-no-candidate:{case.pk}:{coordinator.pk}:"
                f"{case.expert_invitations.count()}",
                user=coordinator,
                link=_site(reverse("experts:candidates", args=[case.tracking_number])),
                case_ref=case.tracking_number,
            )
        return None


def invitations_lapse_due(*, limit: int = 500) -> int:
    """Sweep for pending invitations past their time (a lost task, a worker that was down)."""
    due = Invitation.objects.filter(
        state=InvitationState.PENDING, expires_at__lte=timezone.now()
    ).values_list("pk", flat=True)[:limit]
    return sum(invitation_lapse(invitation_id=pk).startswith("lapsed") for pk in list(due))


# --- ratings -----------------------------------------------------------------------------------------


def expert_rating_record(*, expert: User, stars: int) -> None:
    """Add one rating (1-5 stars) to the expert's record. For the voting app: call it once per
    rating it stores, inside the same transaction, so the figure and the ratings never disagree.
    The average shown is rating_sum / rating_count."""
    if not isinstance(stars, int) or not 1 <= stars <= 5:
        raise ValidationError({"stars": _("A rating is 1 to 5 stars.")})
    updated = ExpertProfile.objects.filter(user_id=expert.pk).update(
        rating_sum=F("rating_sum") + stars, rating_count=F("rating_count") + 1
    )
    if not updated:
        raise NotPermitted(_("Only a member of the expert pool can be rated."))


# --- availability and conflicts ---------------------------------------------------------------------


def profile_week_hours_refresh(profile: ExpertProfile) -> None:
    """Fold the profile's weekly slots into its hour bits (the ranking reads only those)."""
    lo, hi = matching.week_hours(
        matching.Window(s.weekday, s.start_time, s.end_time) for s in profile.slots.all()
    )
    ExpertProfile.objects.filter(pk=profile.pk).update(week_hours_lo=lo, week_hours_hi=hi)


@transaction.atomic
def availability_slot_add(
    *, actor: User, weekday: int, start_time: time, end_time: time
) -> AvailabilitySlot:
    """The expert adds a weekly window to their own availability."""
    profile = _profile_of(actor)
    if weekday not in range(7):
        raise ValidationError({"weekday": _("Choose a day of the week.")})
    if end_time <= start_time:
        raise ValidationError({"end_time": _("The end must be after the start.")})
    if profile.slots.count() >= MAX_SLOTS:
        raise ValidationError({"weekday": _("That is already a lot of slots; remove some first.")})
    if profile.slots.filter(
        weekday=weekday, start_time__lt=end_time, end_time__gt=start_time
    ).exists():
        raise ValidationError({"start_time": _("This overlaps a slot you already have.")})
    slot = AvailabilitySlot.objects.create(
        profile=profile, weekday=weekday, start_time=start_time, end_time=end_time
    )
    profile_week_hours_refresh(profile)
    return slot


@transaction.atomic
def availability_slot_remove(*, actor: User, slot_id: int) -> None:
    profile = _profile_of(actor)
    deleted, _rows = AvailabilitySlot.objects.filter(pk=slot_id, profile=profile).delete()
    if not deleted:
        raise NotPermitted(_("No such slot of yours."))
    profile_week_hours_refresh(profile)


@transaction.atomic
def availability_exception_add(
    *,
    actor: User,
    day: date,
    available: bool,
    start_time: time | None = None,
    end_time: time | None = None,
    note: str = "",
) -> AvailabilityException:
    """The expert marks a date as away (whole day or between two times) or adds an extra window."""
    profile = _profile_of(actor)
    if day < timezone.localdate():
        raise ValidationError({"date": _("Choose today or a later date.")})
    if (start_time is None) != (end_time is None):
        raise ValidationError({"end_time": _("Give both times, or neither for the whole day.")})
    if start_time is not None and end_time <= start_time:
        raise ValidationError({"end_time": _("The end must be after the start.")})
    if available and start_time is None:
        raise ValidationError({"start_time": _("An extra window needs its times.")})
    if profile.exceptions.count() >= MAX_EXCEPTIONS:
        raise ValidationError({"date": _("Too many dated changes; remove old ones first.")})
    return AvailabilityException.objects.create(
        profile=profile,
        date=day,
        available=available,
        start_time=start_time,
        end_time=end_time,
        note=(note or "").strip()[:100],
    )


@transaction.atomic
def availability_exception_remove(*, actor: User, exception_id: int) -> None:
    profile = _profile_of(actor)
    deleted, _rows = AvailabilityException.objects.filter(pk=exception_id, profile=profile).delete()
    if not deleted:
        raise NotPermitted(_("No such date of yours."))


@transaction.atomic
def conflict_declare(*, actor: User, phone: str, note: str = "") -> DeclaredConflict:
    """The expert names a person they must never mediate for, by mobile number."""
    profile = _profile_of(actor)
    try:
        phone = normalize_mobile(phone)
    except ValidationError as exc:
        raise ValidationError({"phone": exc.messages}) from exc
    existing = User.objects.filter(phone=phone).first()
    conflict, _created = DeclaredConflict.objects.get_or_create(
        profile=profile,
        phone=phone,
        defaults={"user": existing, "note": (note or "").strip()[:100]},
    )
    return conflict


# --- profiles --------------------------------------------------------------------------------------


@dataclass
class ProfileData:
    phone: str
    public_name: str
    kind: str
    specialties: list[str]
    communities: list[Community]
    home_community: Community | None
    languages: list[str]
    bio: str = ""
    load_cap: int = 5
    active: bool = True


def expert_profile_upsert(*, actor: User | None, data: ProfileData) -> tuple[ExpertProfile, bool]:
    """Create or update the expert with this mobile number (a coordinator's import, or the demo
    with actor=None). The person gets the expert role. Returns (profile, created)."""
    from accounts.selectors import is_coordinator

    if actor is not None and not is_coordinator(actor):
        raise NotPermitted(_("Only a coordinator can add experts to the pool."))
    phone = normalize_mobile(data.phone)
    if data.kind not in ExpertKind.values:
        raise ValidationError({"kind": _("Unknown kind of expert.")})
    unknown = set(data.specialties) - set(Category.values)
    if unknown:
        raise ValidationError({"specialties": _("Unknown specialty.")})
    if not 1 <= data.load_cap <= 50:
        raise ValidationError({"load_cap": _("Between 1 and 50 cases at once.")})
    name = (data.public_name or "").strip()
    if not name or len(name) > 40:
        raise ValidationError({"public_name": _("A public name of 1 to 40 characters.")})
    with transaction.atomic():
        user = User.objects.select_for_update().filter(phone=phone).first()
        if user is None:
            user = User.objects.create_user(
                username=f"expert{phone.lstrip('+')}",
                phone=phone,
                phone_verified=False,
                display_name=name,
            )
            user.set_unusable_password()
            user.save(update_fields=["password"])
        role_grant(user=user, role=Role.EXPERT)
        fields = {
            "public_name": name,
            "kind": data.kind,
            "specialties": pack_codes(data.specialties),
            "home_community": data.home_community,
            "languages": pack_codes(data.languages),
            "bio": (data.bio or "").strip()[:1000],
            "load_cap": data.load_cap,
            "active": data.active,
        }
        profile, created = ExpertProfile.objects.update_or_create(user=user, defaults=fields)
        profile.communities.set(data.communities)
    return profile, created


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] | None = None


def experts_import(*, actor: User, name: str, content: bytes) -> ImportReport:
    """A coordinator imports experts from a CSV or XLSX file. Each row is written in its own
    transaction: a bad row is reported as (line, reason) and changes nothing, good rows are kept.
    Raises importing.ImportRefused for a file that is too big or not a spreadsheet, NotPermitted
    for anyone but a coordinator. Numbers never appear in the report."""
    from accounts.selectors import is_coordinator

    from . import importing

    if not is_coordinator(actor):
        raise NotPermitted(_("Only a coordinator can add experts to the pool."))
    rows = importing.read_rows(name, content)
    communities = importing.community_index()
    report = ImportReport(errors=[])
    seen: dict[str, int] = {}
    for row in rows:
        try:
            data = importing.parse_row(row, communities)
            if data.phone in seen:
                raise ValidationError(
                    _("The same mobile number as line %(line)d.") % {"line": seen[data.phone]}
                )
            seen[data.phone] = row.line
            with transaction.atomic():
                _profile, created = expert_profile_upsert(actor=actor, data=data)
        except ValidationError as exc:
            report.errors.append((row.line, " ".join(exc.messages)))
            continue
        except IntegrityError:
            report.errors.append((row.line, _("This row conflicts with existing data.")))
            continue
        if created:
            report.created += 1
        else:
            report.updated += 1
    return report

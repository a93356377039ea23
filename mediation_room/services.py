"""Every write to a case: registration, consent, each lifecycle transition, hearings.

Each public function is atomic, checks who may act, writes its CaseEvent in the same transaction,
and sends notifications and realtime updates only after commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Community, User
from accounts.phones import normalize_mobile
from accounts.services import notify_person
from privacy.consents import consent_receipt_record

from . import lifecycle
from .errors import CaseError, NotPermitted, TransitionNotAllowed
from .models import (
    Case,
    CaseEvent,
    CaseNumber,
    Category,
    Consent,
    ConsentKind,
    Hearing,
    Party,
    PartyRole,
    Status,
)
from .realtime import publish_case_update
from .selectors import case_roles_for_user
from .supervision.figures import figures_record_transition

MAX_DESCRIPTION = 4000
MAX_NAME = 40
MAX_NOTE = 500


# --- events --------------------------------------------------------------------------------------


def case_event_record(
    *,
    case: Case,
    actor: User | None,
    kind: str,
    note: str = "",
    data: dict[str, Any] | None = None,
    from_status: str = "",
    to_status: str = "",
    public: bool = False,
) -> CaseEvent:
    """Append one event to the case's audit trail (call inside the caller's transaction)."""
    event = CaseEvent.objects.create(
        case=case,
        actor=actor if actor is not None and actor.is_authenticated else None,
        kind=kind,
        note=note[:MAX_NOTE],
        data=data or {},
        from_status=from_status,
        to_status=to_status,
        public=public,
        created_at=timezone.now(),
    )
    publish_case_update(
        case.pk, {"kind": kind, "from": from_status, "to": to_status, "event_id": event.pk}
    )
    return event


def _locked(case: Case) -> Case:
    return Case.objects.select_for_update().get(pk=case.pk)


def _transition(
    *,
    case: Case,
    to_status: str,
    actor: User | None,
    note: str = "",
    data: dict[str, Any] | None = None,
    kind: str = "transition",
    vouched_role: str | None = None,
    from_states: frozenset[str] | None = None,
) -> Case:
    """Move a locked case to `to_status` if the actor holds a role allowed to make that move.

    `vouched_role` is for services that have already established the actor's standing by other
    means (an expert accepting their own invitation)."""
    case = _locked(case)
    from_status = case.status
    allowed = lifecycle.allowed_roles(from_status, to_status)
    if from_states is not None and from_status not in from_states:
        allowed = frozenset()
    if not allowed:
        raise TransitionNotAllowed(
            _("A case that is “%(from)s” cannot become “%(to)s”.")
            % {"from": Status(from_status).label, "to": Status(to_status).label},
            code="bad_transition",
        )
    roles = {"system"} if actor is None else case_roles_for_user(case, actor)
    if vouched_role:
        roles = roles | {vouched_role}
    if not roles & allowed:
        raise NotPermitted(_("You may not make this change to the case."))
    now = timezone.now()
    # The deadline of the stage being left goes into the event, so that on-time rates per stage
    # can be counted from the audit trail alone (statistics, 督办).
    stage_data = dict(data or {})
    if case.stage_deadline is not None:
        stage_data["stage_deadline"] = case.stage_deadline.isoformat()
        stage_data["on_time"] = now <= case.stage_deadline
    case.status = to_status
    case.status_changed_at = now
    case.stage_deadline = lifecycle.stage_deadline(to_status, now, case.category)
    case.save(update_fields=["status", "status_changed_at", "stage_deadline", "updated_at"])
    event = case_event_record(
        case=case,
        actor=actor,
        kind=kind,
        note=note,
        data=stage_data,
        from_status=from_status,
        to_status=to_status,
        public=True,
    )
    figures_record_transition(case=case, event=event)
    return case


def _clean_text(value: str, *, limit: int, field: str, required: bool = True) -> str:
    text = (value or "").strip()
    if required and not text:
        raise ValidationError({field: _("This field is required.")})
    if len(text) > limit:
        raise ValidationError(
            {field: _("At most %(limit)d characters, please.") % {"limit": limit}}
        )
    return text


def _next_tracking_number(now: datetime) -> str:
    year = timezone.localtime(now).year
    try:
        with transaction.atomic():
            CaseNumber.objects.get_or_create(year=year)
    except IntegrityError:
        pass  # created by a concurrent registration
    counter = CaseNumber.objects.select_for_update().get(year=year)
    CaseNumber.objects.filter(pk=counter.pk).update(last=F("last") + 1)
    counter.refresh_from_db()
    return f"{settings.TRACKING_PREFIX}-{year}-{counter.last:06d}"


# --- registration and consent ----------------------------------------------------------------------


@transaction.atomic
def case_register(
    *,
    reporter: User,
    category: str,
    description: str,
    community: Community,
    respondent_name: str,
    respondent_phone: str,
    applicant_name: str = "",
    preferred_times: str = "",
    consents: dict[str, bool] | None = None,
) -> Case:
    """A signed-in resident files a dispute. Creates the case, both parties, the applicant's three
    consents and the first events; texts the respondent a link after commit.

    Raises ValidationError (field -> message) on bad input; nothing is written then."""
    if not reporter.is_authenticated or not reporter.phone:
        raise NotPermitted(_("Sign in with your mobile number to file a case."))
    if category not in Category.values:
        raise ValidationError({"category": _("Choose one of the listed categories.")})
    description = _clean_text(description, limit=MAX_DESCRIPTION, field="description")
    respondent_name = _clean_text(respondent_name, limit=MAX_NAME, field="respondent_name")
    applicant_name = _clean_text(
        applicant_name or reporter.display_name or _("Applicant"),
        limit=MAX_NAME,
        field="applicant_name",
    )
    preferred_times = _clean_text(
        preferred_times, limit=300, field="preferred_times", required=False
    )
    try:
        respondent_phone = normalize_mobile(respondent_phone)
    except ValidationError as exc:
        raise ValidationError({"respondent_phone": exc.messages}) from exc
    if respondent_phone == reporter.phone:
        raise ValidationError(
            {"respondent_phone": _("The other party's number must differ from yours.")}
        )
    consents = consents or {}
    unknown = set(consents) - set(ConsentKind.values)
    if unknown:
        raise ValidationError({"consents": _("Unknown consent kind.")})

    now = timezone.now()
    case = Case.objects.create(
        tracking_number=_next_tracking_number(now),
        category=category,
        description=description,
        community=community,
        reporter=reporter,
        status=Status.REGISTERED,
        status_changed_at=now,
        stage_deadline=lifecycle.stage_deadline(Status.REGISTERED, now, category),
        preferred_times=preferred_times,
    )
    applicant = Party.objects.create(
        case=case,
        role=PartyRole.APPLICANT,
        user=reporter,
        name=applicant_name,
        phone=reporter.phone,
    )
    respondent = Party.objects.create(
        case=case, role=PartyRole.RESPONDENT, name=respondent_name, phone=respondent_phone
    )
    for kind in ConsentKind.values:
        Consent.objects.create(
            party=applicant, kind=kind, granted=bool(consents.get(kind)), decided_at=now
        )
        consent_receipt_record(
            party=applicant, user=reporter, kind=kind, granted=bool(consents.get(kind)), at=now
        )
    case_event_record(
        case=case,
        actor=reporter,
        kind="registered",
        to_status=Status.REGISTERED,
        public=True,
        data={"consents": {k: bool(consents.get(k)) for k in ConsentKind.values}},
    )
    link = f"{settings.SITE_URL}/c/{respondent.invite_token}/"
    notify_person(
        kind="case_invitation",
        body=_(
            "[Cloud Bench] You are invited to a mediation (case %(number)s). "
            "See the case and answer here:"
        )
        % {"number": case.tracking_number},
        dedupe_key=f"respondent-invite:{respondent.pk}",
        phone=respondent.phone,
        link=link,
        case_ref=case.tracking_number,
    )
    notify_person(
        kind="case_registered",
        body=_("[Cloud Bench] Your case %(number)s is registered. Track it at:")
        % {"number": case.tracking_number},
        dedupe_key=f"registered:{case.pk}",
        user=reporter,
        link=f"{settings.SITE_URL}/cases/{case.tracking_number}/",
        case_ref=case.tracking_number,
    )
    return case


@transaction.atomic
def party_claim(*, party: Party, user: User) -> Party:
    """The respondent, signed in with the number the case named, takes up their place."""
    party = Party.objects.select_for_update().select_related("case").get(pk=party.pk)
    if not user.is_authenticated or user.phone != party.phone:
        raise NotPermitted(_("This invitation is for another mobile number."))
    if party.user_id == user.pk:
        return party
    if party.user_id is not None:
        raise NotPermitted(_("This invitation has already been taken up."))
    party.user = user
    party.save(update_fields=["user", "updated_at"])
    case_event_record(case=party.case, actor=user, kind="party_joined", data={"role": party.role})
    return party


@transaction.atomic
def consent_set(*, party: Party, actor: User, kind: str, granted: bool) -> Consent:
    """A party gives or withdraws one kind of consent. Granting is possible until the session
    starts; withdrawing also during it (the broadcast reacts at once through the case group).
    Livestream and recording consent can be withdrawn at any time: after commit, the replays of
    the case's hearings are deleted."""
    if kind not in ConsentKind.values:
        raise ValidationError({"kind": _("Unknown consent kind.")})
    party = Party.objects.select_related("case").get(pk=party.pk)
    case = _locked(party.case)
    if party.user_id is None or party.user_id != actor.pk:
        raise NotPermitted(_("Only the party themself can answer for their consent."))
    allowed = lifecycle.CONSENT_GRANT_STATES if granted else lifecycle.CONSENT_WITHDRAW_STATES
    # what was published of the session (its replay) may be withdrawn at any time
    unpublish = not granted and kind in (ConsentKind.LIVESTREAM, ConsentKind.RECORDING)
    if case.status not in allowed and not unpublish:
        raise TransitionNotAllowed(
            _("Consent can no longer be changed at this stage of the case."), code="consent_closed"
        )
    now = timezone.now()
    consent, created = Consent.objects.select_for_update().get_or_create(
        party=party, kind=kind, defaults={"granted": granted, "decided_at": now}
    )
    if not created and consent.granted == granted:
        return consent
    consent.granted = granted
    consent.decided_at = now
    consent.save(update_fields=["granted", "decided_at", "updated_at"])
    consent_receipt_record(party=party, user=actor, kind=kind, granted=granted, at=now)
    case_event_record(
        case=case,
        actor=actor,
        kind="consent_granted" if granted else "consent_withdrawn",
        data={"kind": kind, "role": party.role},
    )
    if unpublish:
        case_id = case.pk
        transaction.on_commit(lambda: _replays_remove(case_id))
    return consent


def _replays_remove(case_id: int) -> None:
    # the replay files belong to the livestream (streaming), which this app does not import
    from streaming.broadcast.services import replays_remove

    replays_remove(case_id=case_id)


@transaction.atomic
def face_consent_set(*, party: Party, actor: User, show: bool) -> Party:
    """A party chooses to show their face on the livestream (or to have it blurred again, which
    is possible at any time). Only the party themself may answer."""
    party = Party.objects.select_related("case").get(pk=party.pk)
    case = _locked(party.case)
    if party.user_id is None or party.user_id != actor.pk:
        raise NotPermitted(_("Only the party themself can answer for their consent."))
    if party.show_face == show:
        return party
    now = timezone.now()
    party.show_face = show
    party.save(update_fields=["show_face", "updated_at"])
    consent_receipt_record(party=party, user=actor, kind="face", granted=show, at=now)
    case_event_record(
        case=case,
        actor=actor,
        kind="consent_granted" if show else "consent_withdrawn",
        data={"kind": "face", "role": party.role},
    )
    return party


def consents_all_granted(case: Case, kind: str) -> bool:
    """Whether every party of the case has currently granted `kind` (respondent included)."""
    parties = list(case.parties.all())
    if not parties:
        return False
    granted = set(
        Consent.objects.filter(party__case=case, kind=kind, granted=True).values_list(
            "party_id", flat=True
        )
    )
    return all(p.pk in granted for p in parties)


# --- transitions ---------------------------------------------------------------------------------------


def case_accept(*, case: Case, actor: User, note: str = "") -> Case:
    """A coordinator of the case's community accepts it (受理)."""
    with transaction.atomic():
        case = _transition(
            case=case,
            to_status=Status.ACCEPTED,
            actor=actor,
            note=note,
            from_states=frozenset({Status.REGISTERED}),
        )
        _notify_parties(case, "case_accepted", _("[Cloud Bench] Your case %(number)s is accepted."))
    return case


def case_decline(*, case: Case, actor: User, reason: str) -> Case:
    """A coordinator declines the case (不予受理) with a reason the applicant sees."""
    reason = _clean_text(reason, limit=MAX_NOTE, field="reason")
    with transaction.atomic():
        case = _transition(case=case, to_status=Status.DECLINED, actor=actor, note=reason)
        case.decline_reason = reason
        case.save(update_fields=["decline_reason", "updated_at"])
        _notify_parties(
            case,
            "case_declined",
            _("[Cloud Bench] Your case %(number)s was not accepted. Reason:") + " " + reason,
            applicant_only=True,
        )
    return case


@transaction.atomic
def case_match(
    *, case: Case, expert: User, actor: User | None, via_invitation: bool = False
) -> Case:
    """The case gets its mediator: a coordinator assigns one, or (via_invitation=True, called by
    the experts app after it checked the invitation) the invited expert accepts."""
    if (
        case.parties.filter(user=expert).exists()
        or case.parties.filter(phone=expert.phone).exists()
    ):
        raise NotPermitted(_("A party of the case cannot mediate it."))
    vouched = "expert" if via_invitation and actor is not None and actor.pk == expert.pk else None
    case = _transition(
        case=case,
        to_status=Status.MATCHED,
        actor=actor,
        data={"expert_id": expert.pk},
        vouched_role=vouched,
        from_states=frozenset({Status.ACCEPTED}),
    )
    case.expert = expert
    case.save(update_fields=["expert", "updated_at"])
    return case


@transaction.atomic
def case_unmatch(*, case: Case, actor: User | None, note: str = "") -> Case:
    """The mediator withdraws before the hearing; the case goes back to matching."""
    case = _transition(
        case=case,
        to_status=Status.ACCEPTED,
        actor=actor,
        note=note,
        kind="unmatched",
        from_states=frozenset({Status.MATCHED}),
    )
    case.expert = None
    case.save(update_fields=["expert", "updated_at"])
    return case


@transaction.atomic
def hearing_schedule(
    *,
    case: Case,
    actor: User | None,
    starts_at: datetime,
    ends_at: datetime,
    location_note: str = "",
) -> Hearing:
    """Fix the time of the mediation session; every party and the mediator are told."""
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": _("The end must be after the start.")})
    case = _transition(
        case=case,
        to_status=Status.SCHEDULED,
        actor=actor,
        data={"starts_at": starts_at.isoformat()},
        from_states=frozenset({Status.MATCHED}),
    )
    hearing = Hearing.objects.create(
        case=case, starts_at=starts_at, ends_at=ends_at, location_note=location_note[:200]
    )
    when = timezone.localtime(starts_at).strftime("%Y-%m-%d %H:%M")
    link = f"{settings.SITE_URL}/room/{hearing.public_id}/check/"
    for user, phone, key in _recipients(case):
        notify_person(
            kind="hearing_scheduled",
            body=_("[Cloud Bench] Mediation of case %(number)s is set for %(when)s. Join here:")
            % {"number": case.tracking_number, "when": when},
            dedupe_key=f"hearing-scheduled:{hearing.pk}:{key}",
            user=user,
            phone=phone,
            link=link,
            case_ref=case.tracking_number,
        )
    return hearing


@transaction.atomic
def hearing_cancel(*, hearing: Hearing, actor: User, reason: str) -> Hearing:
    reason = _clean_text(reason, limit=MAX_NOTE, field="reason")
    hearing = Hearing.objects.select_for_update().get(pk=hearing.pk)
    if hearing.state != Hearing.State.SCHEDULED:
        raise TransitionNotAllowed(_("Only a hearing that has not started can be cancelled."))
    _transition(
        case=hearing.case,
        to_status=Status.MATCHED,
        actor=actor,
        note=reason,
        kind="hearing_cancelled",
        from_states=frozenset({Status.SCHEDULED}),
    )
    hearing.state = Hearing.State.CANCELLED
    hearing.save(update_fields=["state", "updated_at"])
    for user, phone, key in _recipients(hearing.case):
        notify_person(
            kind="hearing_cancelled",
            body=_(
                "[Cloud Bench] The mediation session of case %(number)s is cancelled: %(reason)s"
            )
            % {"number": hearing.case.tracking_number, "reason": reason},
            dedupe_key=f"hearing-cancelled:{hearing.pk}:{key}",
            user=user,
            phone=phone,
            case_ref=hearing.case.tracking_number,
        )
    return hearing


@transaction.atomic
def hearing_reschedule(
    *, hearing: Hearing, actor: User, starts_at: datetime, ends_at: datetime, reason: str = ""
) -> Hearing:
    """Move a hearing that has not started to a new time. The case's coordinator or mediator may;
    every party and the mediator are told at once, with the room link. Reminders follow the new
    time (their dedupe keys include the start time)."""
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": _("The end must be after the start.")})
    if starts_at <= timezone.now():
        raise ValidationError({"starts_at": _("Choose a time in the future.")})
    reason = _clean_text(reason, limit=MAX_NOTE, field="reason", required=False)
    hearing = Hearing.objects.select_for_update().select_related("case").get(pk=hearing.pk)
    case = _locked(hearing.case)
    if not case_roles_for_user(case, actor) & {"coordinator", "expert"}:
        raise NotPermitted(_("Only the mediator or a coordinator can move the hearing."))
    if hearing.state != Hearing.State.SCHEDULED:
        raise TransitionNotAllowed(_("Only a hearing that has not started can be moved."))
    previous = hearing.starts_at
    if starts_at == previous and ends_at == hearing.ends_at:
        return hearing
    hearing.starts_at = starts_at
    hearing.ends_at = ends_at
    hearing.save(update_fields=["starts_at", "ends_at", "updated_at"])
    case_event_record(
        case=case,
        actor=actor,
        kind="hearing_rescheduled",
        note=reason,
        data={"from": previous.isoformat(), "to": starts_at.isoformat()},
        public=True,
    )
    when = timezone.localtime(starts_at).strftime("%Y-%m-%d %H:%M")
    link = f"{settings.SITE_URL}/room/{hearing.public_id}/check/"
    for user, phone, key in _recipients(case):
        notify_person(
            kind="hearing_rescheduled",
            body=_(
                "[Cloud Bench] The mediation session of case %(number)s has moved to %(when)s. "
                "Join here:"
            )
            % {"number": case.tracking_number, "when": when},
            dedupe_key=f"hearing-rescheduled:{hearing.pk}:{int(starts_at.timestamp())}:{key}",
            user=user,
            phone=phone,
            link=link,
            case_ref=case.tracking_number,
        )
    return hearing


@transaction.atomic
def session_start(*, hearing: Hearing, actor: User) -> Hearing:
    """The mediator opens the session: the case is in session and the hearing is live."""
    hearing = Hearing.objects.select_for_update().get(pk=hearing.pk)
    if hearing.state == Hearing.State.LIVE:
        return hearing
    if hearing.state != Hearing.State.SCHEDULED:
        raise TransitionNotAllowed(_("This hearing has ended or was cancelled."))
    _transition(case=hearing.case, to_status=Status.IN_SESSION, actor=actor)
    hearing.state = Hearing.State.LIVE
    hearing.started_at = timezone.now()
    hearing.save(update_fields=["state", "started_at", "updated_at"])
    return hearing


@transaction.atomic
def session_conclude(
    *, hearing: Hearing, actor: User | None, agreed: bool, note: str = ""
) -> Hearing:
    """The session ends with an agreement (协议达成) or without one (调解不成)."""
    hearing = Hearing.objects.select_for_update().get(pk=hearing.pk)
    _transition(
        case=hearing.case,
        to_status=Status.AGREED if agreed else Status.NOT_AGREED,
        actor=actor,
        note=note,
    )
    if hearing.state in (Hearing.State.SCHEDULED, Hearing.State.LIVE):
        hearing.state = Hearing.State.ENDED
        hearing.ended_at = timezone.now()
        hearing.save(update_fields=["state", "ended_at", "updated_at"])
    return hearing


@transaction.atomic
def case_withdraw(*, case: Case, actor: User, reason: str = "") -> Case:
    """The applicant withdraws the case before it concludes."""
    reason = _clean_text(reason, limit=MAX_NOTE, field="reason", required=False)
    case = _transition(case=case, to_status=Status.WITHDRAWN, actor=actor, note=reason)
    cancelled = list(case.hearings.filter(state=Hearing.State.SCHEDULED))
    case.hearings.filter(pk__in=[h.pk for h in cancelled]).update(
        state=Hearing.State.CANCELLED, updated_at=timezone.now()
    )
    # Everyone who expected the session hears that it will not take place.
    for hearing in cancelled:
        for user, phone, key in _recipients(case):
            notify_person(
                kind="hearing_cancelled",
                body=_(
                    "[Cloud Bench] The mediation session of case %(number)s is cancelled: "
                    "the case was withdrawn."
                )
                % {"number": case.tracking_number},
                dedupe_key=f"hearing-cancelled:{hearing.pk}:{key}",
                user=user,
                phone=phone,
                case_ref=case.tracking_number,
            )
    return case


def case_follow_up(*, case: Case, actor: User | None, note: str = "") -> Case:
    """The follow-up visit (回访) after the case concluded is done."""
    with transaction.atomic():
        return _transition(case=case, to_status=Status.FOLLOWED_UP, actor=actor, note=note)


def case_close(*, case: Case, actor: User | None, note: str = "") -> Case:
    """The case is closed (办结)."""
    with transaction.atomic():
        case = _transition(case=case, to_status=Status.CLOSED, actor=actor, note=note)
        _notify_parties(case, "case_closed", _("[Cloud Bench] Your case %(number)s is closed."))
    return case


# --- helpers ------------------------------------------------------------------------------------------------


def _recipients(case: Case) -> list[tuple[User | None, str, str]]:
    """(user, phone, key) for every party and the mediator."""
    out: list[tuple[User | None, str, str]] = [
        (p.user, p.phone, f"party{p.pk}") for p in case.parties.select_related("user")
    ]
    if case.expert_id:
        out.append((case.expert, case.expert.phone or "", f"expert{case.expert_id}"))
    return out


def _notify_parties(case: Case, kind: str, template: str, *, applicant_only: bool = False) -> None:
    parties = case.parties.select_related("user")
    if applicant_only:
        parties = parties.filter(role=PartyRole.APPLICANT)
    for party in parties:
        notify_person(
            kind=kind,
            body=template % {"number": case.tracking_number},
            dedupe_key=f"{kind}:{case.pk}:{party.pk}:{case.status_changed_at.timestamp()}",
            user=party.user,
            phone=party.phone,
            link=f"{settings.SITE_URL}/cases/{case.tracking_number}/",
            case_ref=case.tracking_number,
        )


__all__ = [
    "CaseError",
    "case_accept",
    "case_close",
    "case_decline",
    "case_event_record",
    "case_follow_up",
    "case_match",
    "case_register",
    "case_unmatch",
    "case_withdraw",
    "consent_set",
    "consents_all_granted",
    "hearing_cancel",
    "hearing_reschedule",
    "hearing_schedule",
    "party_claim",
    "session_conclude",
    "session_start",
]

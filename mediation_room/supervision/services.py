"""Writes for supervision: the periodic scan of stage deadlines (overrun alerts and escalation
to the street), and supervision notices (督办单) with their answers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import notify_person

from .. import lifecycle
from ..errors import CaseError, NotPermitted
from ..models import TERMINAL, Case, Status, SupervisionAlert, SupervisionNotice
from ..selectors import case_roles_for_user
from ..services import case_event_record
from . import selectors

MAX_TEXT = 1000


@dataclass
class ScanResult:
    overdue: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    notice_reminders: int = 0

    def as_dict(self) -> dict:
        return {
            "overdue": len(self.overdue),
            "escalated": len(self.escalated),
            "notice_reminders": self.notice_reminders,
        }


def _case_link(case: Case) -> str:
    return f"{settings.SITE_URL}/cases/{case.tracking_number}/"


def escalation_due(case: Case) -> datetime | None:
    """When an overrun of the case's current stage goes to the street-level coordinator."""
    if case.stage_deadline is None:
        return None
    rule = lifecycle.stage_rule(case.status, case.category)
    after = rule[1] if rule else settings.SUPERVISION_ESCALATE_AFTER_DAYS
    return lifecycle.add_working_days(case.stage_deadline, after)


def supervision_scan(*, now: datetime | None = None) -> ScanResult:
    """Announce every stage overrun once and escalate it once (Celery beat runs this).

    Safe to run twice or concurrently: each alert is created under a lock on its case row and a
    unique constraint (case, stage entry, level); notifications carry dedupe keys."""
    now = now or timezone.now()
    result = ScanResult()
    # Cases already escalated for their current stage have nothing left to announce.
    escalated = SupervisionAlert.objects.filter(
        case=OuterRef("pk"),
        stage_entered_at=OuterRef("status_changed_at"),
        level=SupervisionAlert.Level.ESCALATED,
    )
    candidates = (
        Case.objects.filter(stage_deadline__lt=now)
        .exclude(status__in=TERMINAL)
        .exclude(Exists(escalated))
        .values_list("pk", flat=True)
        .order_by("pk")
    )
    for case_id in candidates.iterator(chunk_size=500):
        levels = _scan_case(case_id, now)
        if SupervisionAlert.Level.OVERDUE in levels:
            result.overdue.append(case_id)
        if SupervisionAlert.Level.ESCALATED in levels:
            result.escalated.append(case_id)
    result.notice_reminders = _remind_unanswered_notices(now)
    return result


@transaction.atomic
def _scan_case(case_id: int, now: datetime) -> set[str]:
    """Create whichever alerts the case's current overrun now calls for; returns their levels."""
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("community__street", "expert")
        .filter(pk=case_id)
        .first()
    )
    if case is None or case.stage_deadline is None or case.stage_deadline >= now:
        return set()
    if case.status in TERMINAL:
        return set()
    existing = set(
        SupervisionAlert.objects.filter(
            case=case, stage_entered_at=case.status_changed_at
        ).values_list("level", flat=True)
    )
    made: set[str] = set()
    if SupervisionAlert.Level.OVERDUE not in existing:
        _alert_overdue(case, now)
        made.add(SupervisionAlert.Level.OVERDUE)
    if SupervisionAlert.Level.ESCALATED not in existing:
        due = escalation_due(case)
        if due is not None and due <= now:
            _alert_escalated(case, now)
            made.add(SupervisionAlert.Level.ESCALATED)
    return made


def _alert_overdue(case: Case, now: datetime) -> None:
    alert = SupervisionAlert.objects.create(
        case=case,
        level=SupervisionAlert.Level.OVERDUE,
        stage=case.status,
        stage_entered_at=case.status_changed_at,
        deadline=case.stage_deadline,
    )
    case_event_record(
        case=case,
        actor=None,
        kind="supervision_overdue",
        note=_("Stage “%(stage)s” passed its deadline.") % {"stage": Status(case.status).label},
        data={"stage": case.status, "deadline": case.stage_deadline.isoformat()},
    )
    owners = {u.pk: u for u in selectors.stage_owners(case) + selectors.case_coordinators(case)}
    for user in owners.values():
        notify_person(
            kind="supervision_overdue",
            body=_(
                "[Cloud Bench] Supervision: case %(number)s is %(late)s past the deadline of "
                "stage “%(stage)s”. Please act:"
            )
            % {
                "number": case.tracking_number,
                "late": timesince(case.stage_deadline, now),
                "stage": Status(case.status).label,
            },
            dedupe_key=f"supervision-overdue:{alert.pk}:{user.pk}",
            user=user,
            link=_case_link(case),
            case_ref=case.tracking_number,
        )


def _alert_escalated(case: Case, now: datetime) -> None:
    alert = SupervisionAlert.objects.create(
        case=case,
        level=SupervisionAlert.Level.ESCALATED,
        stage=case.status,
        stage_entered_at=case.status_changed_at,
        deadline=case.stage_deadline,
    )
    street = selectors.street_coordinators(case)
    case_event_record(
        case=case,
        actor=None,
        kind="supervision_escalated",
        note=_("Escalated to the street: stage “%(stage)s” is %(late)s overdue.")
        % {"stage": Status(case.status).label, "late": timesince(case.stage_deadline, now)},
        data={
            "stage": case.status,
            "deadline": case.stage_deadline.isoformat(),
            "to_user_ids": [u.pk for u in street],
        },
    )
    for user in street:
        notify_person(
            kind="supervision_escalated",
            body=_(
                "[Cloud Bench] Escalation: case %(number)s in %(community)s has been overdue "
                "in stage “%(stage)s” for %(late)s. Please supervise:"
            )
            % {
                "number": case.tracking_number,
                "community": case.community.name,
                "stage": Status(case.status).label,
                "late": timesince(case.stage_deadline, now),
            },
            dedupe_key=f"supervision-escalated:{alert.pk}:{user.pk}",
            user=user,
            link=_case_link(case),
            case_ref=case.tracking_number,
        )


def _remind_unanswered_notices(now: datetime) -> int:
    """One reminder per local day for each notice past its answer date."""
    day = timezone.localdate(now).isoformat()
    sent = 0
    overdue = SupervisionNotice.objects.filter(
        answered_at__isnull=True, due__lt=now
    ).select_related("case", "to_user")
    for notice in overdue.iterator(chunk_size=200):
        with transaction.atomic():
            notify_person(
                kind="supervision_notice_overdue",
                body=_(
                    "[Cloud Bench] A supervision notice about case %(number)s is still unanswered "
                    "(due %(due)s). Answer here:"
                )
                % {
                    "number": notice.case.tracking_number,
                    "due": timezone.localtime(notice.due).strftime("%Y-%m-%d %H:%M"),
                },
                dedupe_key=f"supervision-notice-overdue:{notice.pk}:{day}",
                user=notice.to_user,
                link=f"{settings.SITE_URL}/supervision/notices/{notice.pk}/",
                case_ref=notice.case.tracking_number,
            )
        sent += 1
    return sent


# --- supervision notices (督办单) --------------------------------------------------------------------


def _clean(value: str, field_name: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ValidationError({field_name: _("This field is required.")})
    if len(text) > MAX_TEXT:
        raise ValidationError(
            {field_name: _("At most %(limit)d characters, please.") % {"limit": MAX_TEXT}}
        )
    return text


@transaction.atomic
def supervision_notice_issue(
    *,
    case: Case,
    issued_by: User | None,
    to_user: User,
    text: str,
    due: datetime,
    key: str = "",
) -> SupervisionNotice:
    """A coordinator of the case (or the platform, issued_by=None) asks `to_user` — the mediator
    or a coordinator of the case — to act, and to answer by `due`. Writes a CaseEvent and tells
    the addressee by SMS and in-app after commit. With `key`, issuing again returns the notice
    already issued under that key."""
    text = _clean(text, "text")
    if key:
        existing = SupervisionNotice.objects.filter(key=key).first()
        if existing is not None:
            return existing
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("community__street", "expert")
        .get(pk=case.pk)
    )
    if issued_by is not None and "coordinator" not in case_roles_for_user(case, issued_by):
        raise NotPermitted(_("Only a coordinator of the case can issue a supervision notice."))
    if to_user.pk not in {u.pk for u in selectors.notice_recipients(case)}:
        raise CaseError(
            _("A notice goes to the case's mediator or one of its coordinators."),
            code="bad_recipient",
        )
    if due <= timezone.now():
        raise ValidationError({"due": _("Choose a time in the future.")})
    notice = SupervisionNotice.objects.create(
        case=case, issued_by=issued_by, to_user=to_user, text=text, due=due, key=key
    )
    case_event_record(
        case=case,
        actor=issued_by,
        kind="supervision_notice",
        note=text,
        data={"notice_id": notice.pk, "to_user_id": to_user.pk, "due": due.isoformat()},
    )
    notify_person(
        kind="supervision_notice",
        body=_(
            "[Cloud Bench] Supervision notice about case %(number)s: %(text)s "
            "Please answer by %(due)s:"
        )
        % {
            "number": case.tracking_number,
            "text": text[:200],
            "due": timezone.localtime(due).strftime("%Y-%m-%d %H:%M"),
        },
        dedupe_key=f"supervision-notice:{notice.pk}",
        user=to_user,
        link=f"{settings.SITE_URL}/supervision/notices/{notice.pk}/",
        case_ref=case.tracking_number,
    )
    return notice


@transaction.atomic
def supervision_notice_answer(
    *, notice: SupervisionNotice, actor: User, answer: str
) -> SupervisionNotice:
    """The addressee answers a notice (once). The issuer is told; a CaseEvent records it."""
    answer = _clean(answer, "answer")
    notice = (
        SupervisionNotice.objects.select_for_update(of=("self",))
        .select_related("case", "issued_by")
        .get(pk=notice.pk)
    )
    if notice.to_user_id != actor.pk:
        raise NotPermitted(_("Only the person the notice is addressed to can answer it."))
    if notice.answered_at is not None:
        raise CaseError(_("This notice has already been answered."), code="answered")
    notice.answer = answer
    notice.answered_at = timezone.now()
    notice.save(update_fields=["answer", "answered_at", "updated_at"])
    case_event_record(
        case=notice.case,
        actor=actor,
        kind="supervision_answered",
        note=answer,
        data={"notice_id": notice.pk},
    )
    if notice.issued_by is not None:
        notify_person(
            kind="supervision_answered",
            body=_("[Cloud Bench] Your supervision notice about case %(number)s was answered:")
            % {"number": notice.case.tracking_number},
            dedupe_key=f"supervision-answered:{notice.pk}",
            user=notice.issued_by,
            link=f"{settings.SITE_URL}/supervision/notices/{notice.pk}/",
            case_ref=notice.case.tracking_number,
            in_app=True,
        )
    return notice


@transaction.atomic
def supervision_open(*, case: Case, reason: str) -> SupervisionNotice | None:
    """The platform opens supervision of a case for `reason` (e.g. an agreement term not
    fulfilled): a "supervision_opened" CaseEvent, and a notice to the case's coordinator with the
    answer due in two working days. Opening it twice for the same reason does nothing more and
    gives the same notice. None when nobody coordinates the case."""
    reason = (reason or "").strip()[:MAX_TEXT] or _("Supervision opened.")
    digest = hashlib.sha256(reason.encode()).hexdigest()[:24]
    key = f"open:{case.pk}:{digest}"
    existing = SupervisionNotice.objects.filter(key=key).first()
    if existing is not None:
        return existing
    coordinators = selectors.case_coordinators(case)
    opened_before = case.events.filter(kind="supervision_opened", data__key=key).exists()
    if not opened_before:
        case_event_record(
            case=case,
            actor=None,
            kind="supervision_opened",
            note=reason,
            data={"reason": reason, "key": key},
        )
    if not coordinators:
        return None
    return supervision_notice_issue(
        case=case,
        issued_by=None,
        to_user=coordinators[0],
        text=reason,
        due=lifecycle.add_working_days(timezone.now(), 2),
        key=key,
    )

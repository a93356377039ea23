"""Retention by rule: what is kept of a closed case, and for how long.

Each kind of personal data has a period in ``settings.RETENTION_DAYS``, counted from the case's
closing (a case is closed once it reaches a terminal status: closed, or declined). When a period
has passed, ``retention_run`` deletes or anonymises that kind for the case:

- evidence, recordings: the files leave the disk (after commit) and their rows go;
- HLS replays: the hearing's HLS directory goes;
- live comments: text, nickname and author are replaced, the rows stay (counts add up), and the
  broadcast events that carried them keep only their sequence number and kind;
- SMS log: the number, address and text of messages about the case are blanked, the rows (kind,
  status, times) stay for the delivery figures;
- sign-in codes: the hashes of the case's signing codes are blanked;
- IP addresses in signatures: the addresses kept beside the signatures go; the signatures keep
  the salted digest the ledger covers, so ``verify_agreements`` still passes.

The case, its parties' roles, its transition events (statistics are computed from them), the
agreement, its versions, signatures and ledger entry are kept: they are the record.

A case under a legal hold (a coordinator's, or the one placed when judicial confirmation is
requested) is skipped until the hold is lifted. What was done is written to the case's audit
trail as a ``retention_applied`` event. Not tied to a case: sign-in code messages, the demo text
outbox and the access log itself, each counted from when it was written, and sealed uploads that a
request cut off left in the incoming folder (privacy.uploads), after a day.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Notification, SmsOutboxMessage, User
from mediation_room.agreements.models import SignatureAddress, SigningChallenge
from mediation_room.models import TERMINAL, Case, CaseEvent
from mediation_room.services import case_event_record
from streaming.models import Evidence, Recording
from voting.models import Comment, RoomEvent

from .models import AccessLog, LegalHold, RetentionRun
from .services import legal_hold_place
from .uploads import sweep_incoming

CASE_KINDS = (
    "evidence",
    "recordings",
    "hls_replays",
    "live_comments",
    "sms_log",
    "signin_codes",
    "signature_ips",
)
ANONYMOUS_USERNAME = "__anonymised__"
SECRET_NOTIFICATION_KINDS = ("login_code", "signing_code")


@dataclass
class RetentionReport:
    cases: dict[str, dict[str, int]] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    unbound: dict[str, int] = field(default_factory=dict)


def anonymous_user() -> User:
    """The one inactive account that anonymised rows point at where a row needs an author."""
    user, created = User.objects.get_or_create(
        username=ANONYMOUS_USERNAME, defaults={"is_active": False, "display_name": ""}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _days(kind: str) -> timedelta:
    return timedelta(days=settings.RETENTION_DAYS[kind])


def is_held(case: Case) -> bool:
    return LegalHold.objects.filter(case=case, lifted_at__isnull=True).exists()


def _place_judicial_holds() -> None:
    """Judicial confirmation requested (its bundle exported) and never held for it: hold now.
    A judicial hold a coordinator lifted is not placed again."""
    requested = CaseEvent.objects.filter(kind="judicial_bundle_exported").values("case_id")
    ever_held = LegalHold.objects.filter(kind=LegalHold.Kind.JUDICIAL).values("case_id")
    for case in Case.objects.filter(pk__in=requested).exclude(pk__in=ever_held):
        legal_hold_place(
            case=case,
            actor=None,
            kind=LegalHold.Kind.JUDICIAL,
            reason="judicial confirmation requested",
        )


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)


def _evidence(case: Case) -> int:
    rows = list(Evidence.objects.filter(case=case).values_list("pk", "file"))
    paths = [Path(settings.MEDIA_ROOT) / name for _pk, name in rows]
    Evidence.objects.filter(pk__in=[pk for pk, _name in rows]).delete()
    transaction.on_commit(lambda: _remove_files(paths))
    return len(rows)


def _recordings(case: Case) -> int:
    rows = list(Recording.objects.filter(hearing__case=case).values_list("pk", "file"))
    paths = [Path(settings.MEDIA_ROOT) / name for _pk, name in rows]
    Recording.objects.filter(pk__in=[pk for pk, _name in rows]).delete()
    transaction.on_commit(lambda: _remove_files(paths))
    return len(rows)


def _hls_replays(case: Case) -> int:
    root = Path(settings.BROADCAST_HLS_ROOT)
    directories = [
        root / public_id
        for public_id in case.hearings.values_list("public_id", flat=True)
        if (root / public_id).is_dir()
    ]
    transaction.on_commit(lambda: [shutil.rmtree(d, ignore_errors=True) for d in directories])
    return len(directories)


def _live_comments(case: Case) -> int:
    anonymous = anonymous_user()
    comments = Comment.objects.filter(room__hearing__case=case).exclude(author=anonymous)
    count = 0
    for pk in comments.values_list("pk", flat=True).iterator():
        Comment.objects.filter(pk=pk).update(
            author=anonymous, nickname="", text="", client_id=f"anonymised-{pk}"
        )
        count += 1
    events = RoomEvent.objects.filter(room__hearing__case=case, kind="comment")
    for event in events.exclude(payload__has_key="anonymised"):
        event.payload = {"type": "comment", "seq": event.seq, "anonymised": True}
        event.save(update_fields=["payload"])
    return count


def _sms_log(case: Case) -> int:
    return (
        Notification.objects.filter(case_ref=case.tracking_number)
        .exclude(channel="in_app")
        .exclude(phone="", email="", body="", subject="", link="")
        .update(phone="", email="", body="", subject="", link="")
    )


def _signin_codes(case: Case) -> int:
    return (
        SigningChallenge.objects.filter(agreement__case=case)
        .exclude(code_hash="")
        .update(code_hash="", salt="")
    )


def _signature_ips(case: Case) -> int:
    deleted, _by_model = SignatureAddress.objects.filter(signature__agreement__case=case).delete()
    return deleted


APPLY = {
    "evidence": _evidence,
    "recordings": _recordings,
    "hls_replays": _hls_replays,
    "live_comments": _live_comments,
    "sms_log": _sms_log,
    "signin_codes": _signin_codes,
    "signature_ips": _signature_ips,
}


@transaction.atomic
def case_retention_apply(*, case_id: int, now: datetime) -> dict[str, int] | None:
    """Delete or anonymise what is due for one closed case; None if it is held or not closed.

    Locks the case row; idempotent (a second run finds nothing left to do and writes nothing).
    Writes one ``retention_applied`` CaseEvent listing what was done."""
    case = Case.objects.select_for_update().get(pk=case_id)
    if case.status not in TERMINAL or is_held(case):
        return None
    closed_at = case.status_changed_at
    done: dict[str, int] = {}
    for kind in CASE_KINDS:
        if closed_at + _days(kind) <= now:
            count = APPLY[kind](case)
            if count:
                done[kind] = count
    if done:
        case_event_record(case=case, actor=None, kind="retention_applied", data=done)
    return done


def _unbound(now: datetime) -> dict[str, int]:
    done = {}
    codes_before = now - _days("signin_codes")
    done["signin_code_messages"] = Notification.objects.filter(
        kind__in=SECRET_NOTIFICATION_KINDS, created_at__lt=codes_before
    ).delete()[0]
    done["sms_outbox"] = SmsOutboxMessage.objects.filter(
        created_at__lt=now - _days("sms_log")
    ).delete()[0]
    done["access_log"] = AccessLog.objects.filter(at__lt=now - _days("access_log")).delete()[0]
    done["unfinished_uploads"] = sweep_incoming(now=now.timestamp())
    return {k: v for k, v in done.items() if v}


def retention_run(*, now: datetime | None = None) -> RetentionReport:
    """The periodic task's work: one transaction per case, so one case failing or held leaves
    the others done."""
    now = now or timezone.now()
    report = RetentionReport()
    _place_judicial_holds()
    earliest = now - min(_days(kind) for kind in CASE_KINDS)
    due = Case.objects.filter(status__in=TERMINAL, status_changed_at__lte=earliest)
    for case_id, tracking_number in due.values_list("pk", "tracking_number").order_by("pk"):
        done = case_retention_apply(case_id=case_id, now=now)
        if done is None:
            report.held.append(tracking_number)
        elif done:
            report.cases[tracking_number] = done
    report.unbound = _unbound(now)
    if report.cases or report.unbound:
        RetentionRun.objects.create(
            at=now, cases=report.cases, held=report.held, unbound=report.unbound
        )
    return report

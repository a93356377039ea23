"""Retention on PostgreSQL with the clock moved forward: what is due leaves disk and database,
the statistics of the period do not change, the ledger verifies, and a held case keeps
everything until its hold is lifted."""

import io
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone

from accounts.models import Notification, SmsOutboxMessage
from mediation_room import services as case_services
from mediation_room.agreements.models import SignatureAddress, SigningChallenge
from mediation_room.models import CaseEvent
from mediation_room.supervision.statistics import Scope, dashboard, public_headline
from privacy import services as privacy_services
from privacy.models import AccessLog, LegalHold, RetentionRun
from privacy.retention import ANONYMOUS_USERNAME
from privacy.tasks import retention_apply
from streaming.models import Evidence, Recording
from tests.security.world import build_world
from voting.models import Comment, RoomEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed(media):
    """Case A of the security world with a live comment and text messages, then closed; the
    world's coordinator hold is lifted so that only the test's holds count."""
    w = build_world(media.MEDIA_ROOT)
    comment = Comment.objects.create(
        room=w.room,
        author=w.users["viewer"],
        client_id="c1",
        nickname="楼下老王",
        text="工资该给了 13800138000",
    )
    RoomEvent.objects.create(
        room=w.room, seq=1, kind="comment", payload={"type": "comment", "text": comment.text}
    )
    Notification.objects.create(
        channel="sms",
        kind="case_update",
        phone="+8613800138000",
        body="您的案件有新进展",
        case_ref=w.case.tracking_number,
        dedupe_key="t:1",
    )
    SmsOutboxMessage.objects.create(phone="+8613800138000", body="code 123456")
    privacy_services.legal_hold_lift(
        case=w.case, hold_id=w.hold.pk, actor=w.users["coord"], note="处理完毕"
    )
    case = w.case
    case.refresh_from_db()
    case_services.case_follow_up(case=case, actor=w.users["coord"])
    case_services.case_close(case=case, actor=w.users["coord"])
    case.refresh_from_db()
    assert case.status == "closed"
    w.objects["comment"] = comment
    w.objects["evidence_path"] = Path(media.MEDIA_ROOT) / w.evidence.file.name
    w.objects["recording_path"] = Path(media.MEDIA_ROOT) / w.recording.file.name
    w.objects["hls_dir"] = Path(media.BROADCAST_HLS_ROOT) / w.hearing.public_id
    return w


def _figures(now):
    return dashboard(Scope(community_ids=None), now=now), public_headline()


def _verify() -> str:
    out = io.StringIO()
    call_command("verify_agreements", stdout=out)
    return out.getvalue()


def _run_at(when):
    # files leave the disk after commit: run those callbacks as a committed run would
    with time_machine.travel(when, tick=False), TestCase.captureOnCommitCallbacks(execute=True):
        retention_apply.delay()


def test_what_is_due_is_gone_and_statistics_and_ledger_are_unchanged(closed):
    w = closed
    now = timezone.now()
    before = _figures(now)
    assert w.evidence_path.exists() and w.recording_path.exists() and w.hls_dir.is_dir()
    assert SignatureAddress.objects.filter(signature__agreement=w.agreement).count() == 3

    # 40 days on: replays, text messages, codes gone; evidence and recordings not yet due
    _run_at(now + timedelta(days=40))
    assert not w.hls_dir.exists()
    assert w.evidence_path.exists() and w.recording_path.exists()
    sms = Notification.objects.get(dedupe_key="t:1")
    assert sms.phone == "" and sms.body == "" and sms.status  # the row stays for the figures
    assert not SmsOutboxMessage.objects.exists()
    assert not SigningChallenge.objects.filter(agreement=w.agreement).exclude(code_hash="")
    assert Comment.objects.get(pk=w.comment.pk).text  # live comments: 90 days

    # 400 days on: everything due
    _run_at(now + timedelta(days=400))
    assert not w.evidence_path.exists() and not w.recording_path.exists()
    assert not Evidence.objects.filter(case=w.case).exists()
    assert not Recording.objects.filter(hearing__case=w.case).exists()
    comment = Comment.objects.get(pk=w.comment.pk)
    assert (comment.text, comment.nickname, comment.author.username) == (
        "",
        "",
        ANONYMOUS_USERNAME,
    )
    assert "13800138000" not in str(list(RoomEvent.objects.values_list("payload", flat=True)))
    assert not SignatureAddress.objects.filter(signature__agreement=w.agreement).exists()
    # the record is kept: the agreement verifies, its PDF is still there, figures unchanged
    assert "chain intact" in _verify()
    w.agreement.refresh_from_db()
    assert w.agreement.pdf and Path(w.agreement.pdf.path).exists()
    assert _figures(now) == before
    done = CaseEvent.objects.filter(case=w.case, kind="retention_applied")
    kinds = set().union(*(e.data.keys() for e in done))
    assert kinds == {
        "evidence",
        "recordings",
        "hls_replays",
        "live_comments",
        "sms_log",
        "signin_codes",
        "signature_ips",
    }

    # each run is kept as a record with what it did, case by case
    runs = list(RetentionRun.objects.order_by("at"))
    assert len(runs) == 2 and w.case.tracking_number in runs[1].cases
    assert set(runs[1].cases[w.case.tracking_number]) == kinds - set(
        runs[0].cases[w.case.tracking_number]
    )

    # a further run finds nothing more to do and writes nothing
    _run_at(now + timedelta(days=401))
    assert done.count() == 2


def test_a_held_case_keeps_everything_until_the_hold_is_lifted(closed):
    w = closed
    now = timezone.now()
    hold = privacy_services.legal_hold_place(
        case=w.case, actor=w.users["coord"], reason="当事人申诉中"
    )

    _run_at(now + timedelta(days=400))
    assert w.evidence_path.exists() and w.recording_path.exists() and w.hls_dir.is_dir()
    assert Comment.objects.get(pk=w.comment.pk).text
    assert SignatureAddress.objects.filter(signature__agreement=w.agreement).exists()
    assert not CaseEvent.objects.filter(case=w.case, kind="retention_applied").exists()

    privacy_services.legal_hold_lift(
        case=w.case, hold_id=hold.pk, actor=w.users["coord"], note="申诉已结"
    )
    _run_at(now + timedelta(days=400))
    assert not w.evidence_path.exists() and not w.hls_dir.exists()
    assert CaseEvent.objects.filter(case=w.case, kind="legal_hold_lifted").exists()


def test_a_requested_judicial_confirmation_holds_the_case(closed, client):
    w = closed
    now = timezone.now()
    client.force_login(w.users["coord"])
    assert client.get(f"/cases/{w.case.tracking_number}/agreement/judicial-confirmation.zip")

    _run_at(now + timedelta(days=400))
    assert LegalHold.objects.filter(case=w.case, kind="judicial", lifted_at__isnull=True).exists()
    assert w.evidence_path.exists() and w.recording_path.exists()


def test_only_the_cases_coordinators_place_or_lift_holds(closed):
    from mediation_room.errors import NotPermitted

    w = closed
    for role in ("party", "expert", "o_coord"):
        with pytest.raises(NotPermitted):
            privacy_services.legal_hold_place(case=w.case, actor=w.users[role], reason="想保留")
    assert not LegalHold.objects.filter(case=w.case, lifted_at__isnull=True).exists()


def test_sign_in_code_messages_and_the_access_log_go_when_their_own_periods_end(closed):
    w = closed
    now = timezone.now()
    code = Notification.objects.create(
        channel="sms", kind="login_code", phone="+8613900139000", body="验证码", dedupe_key="c:1"
    )
    opened = AccessLog.objects.create(
        case=w.case, actor=w.users["expert"], role="expert", kind="evidence", at=now
    )
    hold = privacy_services.legal_hold_place(
        case=w.case, actor=w.users["coord"], reason="不受案件保留期影响的记录"
    )

    _run_at(now + timedelta(days=2))  # sign-in codes: a day after sending, hold or not
    assert not Notification.objects.filter(pk=code.pk).exists()
    assert AccessLog.objects.filter(pk=opened.pk).exists()
    run = RetentionRun.objects.get()
    # the world's signing codes went too; nothing else is due yet
    assert set(run.unbound) == {"signin_code_messages"}
    assert run.cases == {} and run.held == [w.case.tracking_number]
    assert not Notification.objects.filter(kind__in=["login_code", "signing_code"]).exists()

    later = now + timedelta(days=3 * 365 + 1)
    with time_machine.travel(later - timedelta(days=1), tick=False):
        recent = AccessLog.objects.create(
            case=w.case, actor=w.users["coord"], role="coordinator", kind="case_page", at=later
        )
    _run_at(later)  # the access log: three years from each opening
    assert not AccessLog.objects.filter(pk=opened.pk).exists()
    assert AccessLog.objects.filter(pk=recent.pk).exists()
    last = RetentionRun.objects.order_by("-at").first()
    assert last.unbound["access_log"] == 1 and last.held == [w.case.tracking_number]
    assert LegalHold.objects.filter(pk=hold.pk, lifted_at__isnull=True).exists()

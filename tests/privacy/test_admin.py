"""The admin of personal-data records: the access log, consent receipts, deletion requests and
retention runs are view-only; legal holds are placed and lifted with a reason, through the
services (case event), and never edited afterwards nor deleted."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mediation_room.models import CaseEvent
from privacy.models import AccessLog, ConsentReceipt, ErasureRequest, LegalHold, RetentionRun
from tests.security.world import build_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(media):
    w = build_world(media.MEDIA_ROOT)
    AccessLog.objects.create(
        case=w.case, actor=w.users["expert"], role="expert", kind="evidence", at=timezone.now()
    )
    ErasureRequest.objects.create(user_ref=1, requested_at=timezone.now(), outcome=[])
    RetentionRun.objects.create(at=timezone.now(), cases={"X": {"evidence": 1}})
    return w


@pytest.fixture
def admin(world) -> Client:
    assert world.users["admin"].is_superuser and world.users["admin"].is_staff
    client = Client()
    client.force_login(world.users["admin"])
    return client


@pytest.mark.parametrize("model", [AccessLog, ConsentReceipt, ErasureRequest, RetentionRun])
def test_records_are_view_only(world, admin, model):
    opts = model._meta
    row = model.objects.first()
    name = f"admin:{opts.app_label}_{opts.model_name}"
    assert admin.get(reverse(f"{name}_changelist")).status_code == 200
    page = admin.get(reverse(f"{name}_change", args=[row.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin.get(reverse(f"{name}_add")).status_code == 403
    assert admin.post(reverse(f"{name}_change", args=[row.pk]), {}).status_code == 403
    assert admin.post(reverse(f"{name}_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()


def test_a_hold_is_placed_with_a_reason_and_lifted_with_a_note(world, admin):
    case = world.case_c
    add = reverse("admin:privacy_legalhold_add")

    refused = admin.post(add, {"case": case.pk, "kind": "coordinator", "reason": "  "})
    assert refused.status_code == 200 and not LegalHold.objects.filter(case=case).exists()

    admin.post(add, {"case": case.pk, "kind": "coordinator", "reason": "信访 处理中"})
    hold = LegalHold.objects.get(case=case)
    assert (hold.reason, hold.placed_by, hold.lifted_at) == (
        "信访 处理中",
        world.users["admin"],
        None,
    )
    assert CaseEvent.objects.filter(case=case, kind="legal_hold_placed").count() == 1

    change = reverse("admin:privacy_legalhold_change", args=[hold.pk])
    # the reason is not edited afterwards; lifting needs a note
    admin.post(change, {"reason": "改掉", "lift": "on", "lift_note": ""})
    hold.refresh_from_db()
    assert hold.reason == "信访 处理中" and hold.lifted_at is None

    admin.post(change, {"lift": "on", "lift_note": "已办结"})
    hold.refresh_from_db()
    assert hold.lifted_at is not None and hold.lift_note == "已办结"
    assert hold.lifted_by == world.users["admin"]
    assert CaseEvent.objects.filter(case=case, kind="legal_hold_lifted").count() == 1

    delete = reverse("admin:privacy_legalhold_delete", args=[hold.pk])
    assert admin.post(delete, {"post": "yes"}).status_code == 403
    assert LegalHold.objects.filter(pk=hold.pk).exists()

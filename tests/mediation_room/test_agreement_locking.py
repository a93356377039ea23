import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from mediation_room.agreements import services
from mediation_room.agreements.models import (
    Agreement,
    AgreementLocked,
    AgreementSignature,
    AgreementVersion,
    LedgerHead,
)
from mediation_room.errors import CaseError
from mediation_room.models import CaseEvent, Status
from tests.mediation_room.agreement_fixtures import *  # noqa: F403 (fixtures)
from tests.mediation_room.agreement_fixtures import Setup, send_code, signature_png


@pytest.mark.django_db(transaction=True)
def test_two_parties_signing_at_the_same_moment_lock_once(tsetup):
    agreement = tsetup.submitted()
    tsetup.sign(agreement, tsetup.expert)
    codes = {u.pk: send_code(agreement, u) for u in (tsetup.applicant, tsetup.respondent)}
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sign(user):
        try:
            barrier.wait(timeout=10)
            services.agreement_sign(
                agreement=Agreement.objects.get(pk=agreement.pk),
                actor=user,
                version_number=agreement.final_version.number,
                code=codes[user.pk],
                signature_data_url=signature_png(),
                ip="198.51.100.1",
                user_agent="thread",
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=sign, args=(u,)) for u in (tsetup.applicant, tsetup.respondent)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    agreement.refresh_from_db()
    tsetup.case.refresh_from_db()
    assert agreement.state == Agreement.State.LOCKED
    assert sorted(agreement.signatures.values_list("role", flat=True)) == [
        "applicant",
        "expert",
        "respondent",
    ]
    assert CaseEvent.objects.filter(case=tsetup.case, kind="agreement_locked").count() == 1
    assert CaseEvent.objects.filter(case=tsetup.case, kind="agreement_signed").count() == 3
    assert agreement.seq == 1 and LedgerHead.objects.get().seq == 1
    assert tsetup.case.status == Status.AGREED
    call_command("verify_agreements")


def test_a_locked_agreement_cannot_change_by_any_route(
    setup, admin_client, django_capture_on_commit_callbacks
):
    agreement = setup.locked(django_capture_on_commit_callbacks)
    assert agreement.is_locked
    before = (agreement.hash, agreement.referral, agreement.final_version.content)
    version = agreement.final_version

    # The services.
    with pytest.raises(CaseError):
        services.agreement_save_draft(
            agreement=agreement,
            actor=setup.expert,
            facts="改",
            terms=version.content["terms"],
            performance_check="",
        )
    with pytest.raises(CaseError):
        services.agreement_comment(agreement=agreement, actor=setup.applicant, body="再改改")
    with pytest.raises(CaseError):
        services.agreement_refuse(
            agreement=agreement, actor=setup.respondent, reason="反悔", referral="litigation"
        )
    with pytest.raises(CaseError):
        services.signing_code_send(agreement=agreement, actor=setup.applicant)

    # save() on the agreement, a stale copy of it, a version, a signature.
    agreement.referral_note = "changed"
    with pytest.raises(AgreementLocked):
        agreement.save()
    with pytest.raises(AgreementLocked):
        agreement.delete()
    version.content = {"terms": []}
    with pytest.raises(AgreementLocked):
        version.save()
    signature = agreement.signatures.first()
    signature.name = "别人"
    with pytest.raises(AgreementLocked):
        signature.save()

    # Queryset update() and delete().
    with pytest.raises(AgreementLocked):
        Agreement.objects.filter(pk=agreement.pk).update(referral="arbitration")
    with pytest.raises(AgreementLocked):
        Agreement.objects.filter(pk=agreement.pk).delete()
    with pytest.raises(AgreementLocked):
        AgreementVersion.objects.filter(agreement=agreement).update(note="x")
    with pytest.raises(AgreementLocked):
        AgreementSignature.objects.filter(agreement=agreement).delete()

    # The admin form.
    url = f"/admin/mediation_room/agreement/{agreement.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200  # view-only
    response = admin_client.post(
        url, {"case": agreement.case_id, "referral": "arbitration", "referral_note": "admin"}
    )
    assert response.status_code == 403
    assert (
        admin_client.post(
            f"/admin/mediation_room/agreement/{agreement.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )

    # Raw SQL meets the PostgreSQL trigger.
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE mediation_room_agreementversion SET content = '{}' WHERE id = %s",
                [version.pk],
            )
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM mediation_room_agreement WHERE id = %s", [agreement.pk])

    fresh = Agreement.objects.get(pk=agreement.pk)
    assert (fresh.hash, fresh.referral, fresh.final_version.content) == before
    # Attaching the PDF is the one write allowed after locking.
    assert fresh.pdf


def _tamper(sql: str, params: list) -> None:
    """Edit a row behind the application's back, with the guard trigger switched off the way an
    administrator with database access could."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = origin")


def test_editing_the_database_directly_is_caught_by_verify_agreements(
    db, media_root, django_capture_on_commit_callbacks
):
    first = Setup().locked(django_capture_on_commit_callbacks)
    second = Setup().locked(django_capture_on_commit_callbacks)
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.hash
    call_command("verify_agreements")

    # Lower the amount owed in the signed text of the first agreement.
    version = first.final_version
    content = dict(version.content)
    content["terms"] = [dict(t) for t in content["terms"]]
    content["terms"][0]["amount"] = "1.00"
    import json

    _tamper(
        "UPDATE mediation_room_agreementversion SET content = %s WHERE id = %s",
        [json.dumps(content, ensure_ascii=False), version.pk],
    )
    with pytest.raises(CommandError) as exc:
        call_command("verify_agreements")
    assert exc.value.returncode == 1
    assert first.code in str(exc.value) and second.code not in str(exc.value)


def test_rehashing_a_tampered_agreement_still_breaks_the_chain(
    db, media_root, django_capture_on_commit_callbacks
):
    first = Setup().locked(django_capture_on_commit_callbacks)
    second = Setup().locked(django_capture_on_commit_callbacks)
    # Swap a signature image and recompute the first agreement's own hash: the link recorded by
    # the second agreement no longer matches.
    from mediation_room.agreements import ledger

    _tamper(
        "UPDATE mediation_room_agreementsignature SET image = %s WHERE agreement_id = %s AND role = 'applicant'",
        [b"\x89PNG forged", first.pk],
    )
    first = Agreement.objects.get(pk=first.pk)
    _tamper(
        "UPDATE mediation_room_agreement SET hash = %s WHERE id = %s",
        [ledger.compute_hash(first), first.pk],
    )
    with pytest.raises(CommandError) as exc:
        call_command("verify_agreements")
    assert first.code in str(exc.value) and second.code not in str(exc.value)

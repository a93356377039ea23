from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Notification
from mediation_room.agreements import content, ledger, services
from mediation_room.agreements.models import (
    Agreement,
    AgreementSignature,
    AgreementVersion,
    FollowUp,
    SigningChallenge,
)
from mediation_room.errors import CaseError, NotPermitted
from mediation_room.models import CaseEvent, Status
from tests.factories import UserFactory
from tests.mediation_room.agreement_fixtures import *  # noqa: F403 (fixtures)
from tests.mediation_room.agreement_fixtures import send_code


def test_only_the_expert_drafts_and_every_version_is_kept(setup):
    with pytest.raises(NotPermitted):
        services.agreement_start(case=setup.case, actor=setup.applicant)
    agreement = setup.draft()
    assert [v.number for v in agreement.versions.all()] == [1, 2]
    assert (
        agreement.versions.get(number=1).content["facts"] == content.TEMPLATES["unpaid_wages"].facts
    )

    with pytest.raises(NotPermitted):
        services.agreement_save_draft(
            agreement=agreement,
            actor=setup.respondent,
            facts="x",
            terms=[{"obligor": "respondent", "action": "y"}],
            performance_check="",
        )
    v2 = agreement.versions.get(number=2)
    terms = [dict(t) for t in v2.content["terms"]]
    terms[0]["amount"] = "11000"
    v3 = services.agreement_save_draft(
        agreement=agreement,
        actor=setup.expert,
        facts=v2.content["facts"],
        terms=terms,
        performance_check=v2.content["performance_check"],
    )
    assert v3.number == 3
    diff = content.compare(v2.content, v3.content)
    removed = [d.text for d in diff if d.op == "removed"]
    added = [d.text for d in diff if d.op == "added"]
    assert any("¥12,000.00" in line for line in removed)
    assert any("¥11,000.00" in line for line in added)
    # Saving the same text again keeps the version count.
    again = services.agreement_save_draft(
        agreement=agreement,
        actor=setup.expert,
        facts=v3.content["facts"],
        terms=v3.content["terms"],
        performance_check=v3.content["performance_check"],
    )
    assert again.pk == v3.pk


def test_parties_comment_on_a_term_and_strangers_cannot(setup):
    agreement = setup.draft()
    comment = services.agreement_comment(
        agreement=agreement,
        actor=setup.respondent,
        body="能否分两期付款？",
        term_key="t1",
        kind="change",
    )
    assert comment.author_role == "respondent"
    with pytest.raises(NotPermitted):
        services.agreement_comment(agreement=agreement, actor=UserFactory(), body="路过")
    with pytest.raises(CaseError):
        services.agreement_comment(
            agreement=agreement, actor=setup.applicant, body="x", term_key="t99"
        )


def test_every_signature_locks_the_agreement_and_agrees_the_case(
    setup, django_capture_on_commit_callbacks
):
    agreement = setup.submitted()
    for user in setup.signers:
        setup.sign(agreement, user, django_capture_on_commit_callbacks)
    agreement.refresh_from_db()
    setup.case.refresh_from_db()
    assert agreement.state == Agreement.State.LOCKED
    assert agreement.seq is not None and len(agreement.hash) == 64
    assert ledger.verify_one(agreement)
    assert setup.case.status == Status.AGREED
    assert agreement.signatures.count() == 3
    sig = agreement.signatures.get(role="applicant")
    assert sig.address.ip == "203.0.113.7" and sig.user_agent == "pytest" and sig.image_sha256
    assert list(
        FollowUp.objects.filter(agreement=agreement).values_list("term_key", flat=True)
    ) == ["t1"]
    # The code's SMS was sent and then wiped from the delivery log.
    sent = Notification.objects.filter(kind="signing_code", channel="sms")
    assert sent.count() == 3
    assert all(n.body == "[redacted after delivery]" for n in sent)
    assert CaseEvent.objects.filter(case=setup.case, kind="agreement_locked").count() == 1
    locked_notices = Notification.objects.filter(kind="agreement_locked", channel="sms")
    assert locked_notices.count() == 3 and all(agreement.code in n.body for n in locked_notices)
    # The PDF task ran after commit (eager under test).
    assert agreement.pdf.name.endswith(".pdf")


def test_wrong_code_is_refused_and_counted(setup, django_capture_on_commit_callbacks):
    agreement = setup.submitted()
    code = send_code(agreement, setup.applicant, django_capture_on_commit_callbacks)
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(CaseError) as exc:
        services.agreement_sign(
            agreement=agreement,
            actor=setup.applicant,
            version_number=agreement.final_version.number,
            code=wrong,
            typed_name="张三",
        )
    assert exc.value.code == "bad_code"
    assert SigningChallenge.objects.get(user=setup.applicant).attempts == 1
    assert not AgreementSignature.objects.exists()
    for _ in range(4):
        with pytest.raises(CaseError):
            services.agreement_sign(
                agreement=agreement,
                actor=setup.applicant,
                version_number=agreement.final_version.number,
                code=wrong,
                typed_name="张三",
            )
    # Five wrong tries: even the right code no longer works with this challenge.
    with pytest.raises(CaseError) as exc:
        services.agreement_sign(
            agreement=agreement,
            actor=setup.applicant,
            version_number=agreement.final_version.number,
            code=code,
            typed_name="张三",
        )
    assert exc.value.code == "too_many_attempts"


def test_expired_code_is_refused(setup, django_capture_on_commit_callbacks):
    agreement = setup.submitted()
    code = send_code(agreement, setup.applicant, django_capture_on_commit_callbacks)
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        with pytest.raises(CaseError) as exc:
            services.agreement_sign(
                agreement=agreement,
                actor=setup.applicant,
                version_number=agreement.final_version.number,
                code=code,
                typed_name="张三",
            )
    assert exc.value.code == "code_expired"
    assert not AgreementSignature.objects.exists()


def test_signing_a_superseded_version_is_refused(setup, django_capture_on_commit_callbacks):
    agreement = setup.submitted()
    old = agreement.final_version
    setup.sign(agreement, setup.applicant, django_capture_on_commit_callbacks)
    code = send_code(agreement, setup.respondent, django_capture_on_commit_callbacks)
    # The mediator changes the text after one signature: back to draft, then a new final text.
    terms = [dict(t) for t in old.content["terms"]]
    terms[0]["amount"] = "10000"
    services.agreement_save_draft(
        agreement=agreement,
        actor=setup.expert,
        facts=old.content["facts"],
        terms=terms,
        performance_check=old.content["performance_check"],
    )
    services.agreement_submit(agreement=agreement, actor=setup.expert)
    with pytest.raises(CaseError) as exc:
        services.agreement_sign(
            agreement=agreement,
            actor=setup.respondent,
            version_number=old.number,
            code=code,
            typed_name="李四",
        )
    assert exc.value.code == "superseded"
    agreement.refresh_from_db()
    assert agreement.final_version.number == old.number + 1
    # The applicant's signature on the old text does not count towards the new one.
    assert not agreement.signatures.filter(version=agreement.final_version).exists()


def test_non_party_cannot_sign(setup):
    agreement = setup.submitted()
    stranger = UserFactory()
    with pytest.raises(NotPermitted):
        services.signing_code_send(agreement=agreement, actor=stranger)
    with pytest.raises(NotPermitted):
        services.agreement_sign(
            agreement=agreement,
            actor=stranger,
            version_number=agreement.final_version.number,
            code="123456",
            typed_name="路人",
        )
    # A coordinator may read the case but is not a signer either.
    with pytest.raises(NotPermitted):
        services.signing_code_send(agreement=agreement, actor=setup.coordinator)


@pytest.mark.parametrize(
    "data_url",
    [
        "data:image/jpeg;base64,/9j/4AAQ",
        "data:image/png;base64,not-base64!!",
        "data:image/png;base64," + "QUFB" * 10,  # base64 of text, not a PNG
        "data:image/png;base64," + "A" * 300_000,
    ],
)
def test_bad_drawn_signatures_are_refused(setup, data_url):
    agreement = setup.submitted()
    with pytest.raises(CaseError) as exc:
        services.agreement_sign(
            agreement=agreement,
            actor=setup.applicant,
            version_number=agreement.final_version.number,
            code="123456",
            signature_data_url=data_url,
        )
    assert exc.value.code == "bad_signature"


def test_refusing_to_sign_ends_without_agreement_and_records_the_referral(setup):
    agreement = setup.submitted()
    services.agreement_refuse(
        agreement=agreement,
        actor=setup.respondent,
        reason="金额不认可",
        referral="litigation",
        referral_note="向临平区人民法院起诉",
    )
    agreement.refresh_from_db()
    setup.case.refresh_from_db()
    assert agreement.state == Agreement.State.REFUSED
    assert setup.case.status == Status.NOT_AGREED
    assert "向临平区人民法院起诉" in setup.case.outcome_note
    event = CaseEvent.objects.get(case=setup.case, kind="referred")
    assert event.data == {"referral": "litigation"}
    with pytest.raises(CaseError):
        services.signing_code_send(agreement=agreement, actor=setup.applicant)
    assert AgreementVersion.objects.filter(agreement=agreement).count() == 2

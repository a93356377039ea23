"""A person's own data: the export holds theirs and nothing of the other party beyond what the
case shows them; deletion keeps the statistics and the other party's data, and says item by
item what is kept and why; consent receipts carry the words agreed to."""

import io
import json
import zipfile

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Notification
from mediation_room.agreements.ledger import verify_chain
from mediation_room.supervision.statistics import Scope, dashboard, public_headline
from privacy.consents import TEXT_VERSION
from privacy.models import ConsentReceipt, ErasureRequest
from streaming.models import Evidence
from tests.factories import UserFactory, make_case
from tests.security.world import PNG, build_world
from voting.models import Comment

pytestmark = pytest.mark.django_db

THEIR_EVIDENCE = b"%PDF-1.4\nRESPONDENT-SECRET-BANK-STATEMENT\n" + b"x" * 5000


@pytest.fixture
def world(media):
    w = build_world(media.MEDIA_ROOT)
    respondent = w.respondent_party.user
    Evidence.objects.create(
        case=w.case,
        hearing=w.hearing,
        uploaded_by=respondent,
        uploader_role="respondent",
        title="对方的流水",
        file="private/evidence/other.pdf",
        content_type="application/pdf",
        size=len(THEIR_EVIDENCE),
        sha256="",
    ).file.storage.save("private/evidence/other.pdf", io.BytesIO(THEIR_EVIDENCE))
    Comment.objects.create(
        room=w.room, author=respondent, client_id="r1", nickname="乙方", text="对方的评论"
    )
    return w


def _zip(user) -> zipfile.ZipFile:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("privacy:my_data_export"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_the_export_holds_the_partys_data_and_files_decrypted(world):
    archive = _zip(world.users["party"])
    names = set(archive.namelist())
    data = json.loads(archive.read("personal-data.json"))

    assert data["account"]["phone"] == world.users["party"].phone
    (case,) = data["cases"]
    assert case["tracking_number"] == world.case.tracking_number
    assert case["my_role"] == "applicant" and case["other_parties"] == [{"role": "respondent"}]
    assert {c["kind"] for c in case["consents"]} == {"video", "livestream", "recording"}
    assert case["consent_receipts"] and case["consent_receipts"][0]["text"]
    assert [c["text"] for c in data["live_comments"]] == ["我同意"]
    (signature,) = data["signatures"]
    assert signature["ip"] == "203.0.113.7" and signature["role"] == "applicant"
    assert signature["image"] in names
    # their evidence, decrypted, byte for byte; their agreement PDF
    (evidence,) = data["evidence"]
    assert archive.read(evidence["file"]) == PNG
    pdfs = [n for n in names if n.startswith("agreements/")]
    assert len(pdfs) == 1 and archive.read(pdfs[0]).startswith(b"%PDF")


def test_the_export_shows_nothing_of_the_other_party_beyond_the_case(world):
    respondent = world.respondent_party
    archive = _zip(world.users["party"])
    everything = b"".join(
        archive.read(n) for n in archive.namelist() if not n.startswith("agreements/")
    ).decode("utf-8", "replace")

    assert respondent.phone not in everything
    assert respondent.user.phone not in everything
    assert "RESPONDENT-SECRET" not in everything and "对方的评论" not in everything
    assert "respondent" in everything  # by role only
    assert all("respondent" not in n for n in archive.namelist() if n.startswith("signatures/"))


def test_an_outsider_exports_an_empty_record_of_their_own(world):
    archive = _zip(world.users["o_expert"])
    data = json.loads(archive.read("personal-data.json"))
    assert data["cases"] == [] and data["evidence"] == [] and data["signatures"] == []
    assert world.case.tracking_number not in archive.read("personal-data.json").decode()


def test_deletion_keeps_the_record_statistics_and_the_other_party_and_says_why(world):
    now = timezone.now()
    before = (dashboard(Scope(community_ids=None), now=now), public_headline())
    respondent_comment = Comment.objects.get(text="对方的评论")
    client = Client()
    client.force_login(world.users["party"])

    response = client.post(reverse("privacy:my_data_erase"), {"confirm": "on"})

    assert response.status_code == 200
    outcome = {i["item"]: i for i in ErasureRequest.objects.get().outcome}
    assert outcome["live_comments"]["action"] == "anonymised"
    assert outcome["evidence"]["action"] == "kept" and outcome["evidence"]["why"]
    assert outcome["signatures"]["action"] == "kept"
    assert outcome["account"]["action"] == "kept"  # a party of a case still kept
    assert world.case.tracking_number in outcome["case_party_records"]["why"]
    body = response.content.decode()
    assert "保留" in body or "kept" in body
    # their comment is anonymised; the other party's is untouched
    assert not Comment.objects.filter(author=world.users["party"]).exists()
    assert Comment.objects.get(pk=respondent_comment.pk).text == "对方的评论"
    assert Evidence.objects.filter(uploaded_by=world.respondent_party.user).exists()
    assert not Notification.objects.filter(user=world.users["party"], channel="in_app").exists()
    # the record: statistics, ledger
    assert (dashboard(Scope(community_ids=None), now=now), public_headline()) == before
    assert verify_chain()[1] is None


def test_deletion_of_a_resident_without_cases_closes_the_account(world):
    resident = UserFactory()
    client = Client()
    client.force_login(resident)
    response = client.post(reverse("privacy:my_data_erase"), {"confirm": "on"})

    resident.refresh_from_db()
    assert response.status_code == 200
    assert not resident.is_active and resident.phone is None and resident.display_name == ""
    assert client.get(reverse("privacy:my_data")).status_code == 302  # signed out


def test_deletion_without_confirmation_changes_nothing(world):
    client = Client()
    client.force_login(world.users["party"])
    response = client.post(reverse("privacy:my_data_erase"), {})
    assert response.status_code == 302 and not ErasureRequest.objects.exists()


def test_each_consent_and_withdrawal_has_a_receipt_with_its_words(media, client):
    party = UserFactory()
    case = make_case(applicant=party, respondent=UserFactory())
    applicant = case.parties.get(role="applicant")
    registered = list(ConsentReceipt.objects.filter(party=applicant))
    assert {r.kind for r in registered} == {"video", "livestream", "recording"}
    client.force_login(party)

    # through the case page's form: recording given, face shown; then the face withdrawn
    url = reverse("frontend:case_consent", args=[case.tracking_number])
    client.post(url, {"video": "on", "recording": "on", "show_face": "on"})
    client.post(url, {"video": "on", "recording": "on"})

    receipts = list(
        ConsentReceipt.objects.filter(party=applicant).exclude(pk__in=[r.pk for r in registered])
    )
    # each answer that changed has a receipt; re-sending the same answer adds none
    assert [(r.kind, r.granted) for r in receipts if r.kind == "face"] == [
        ("face", True),
        ("face", False),
    ]
    assert ConsentReceipt.objects.filter(party=applicant, kind="recording", granted=True).exists()
    assert all(r.text and r.text_version == TEXT_VERSION for r in receipts)
    face = next(r for r in receipts if r.kind == "face")
    page = client.get(reverse("privacy:my_data"))
    assert page.status_code == 200 and face.text in page.content.decode()
    download = client.get(reverse("privacy:consent_receipt", args=[face.pk]))
    document = json.loads(download.content)
    assert document["kind"] == "face" and document["granted"] is True
    assert document["text"] == face.text and document["at"]
    assert "attachment" in download["Content-Disposition"]
    # another person's receipt is not found
    client.force_login(UserFactory())
    assert client.get(reverse("privacy:consent_receipt", args=[face.pk])).status_code == 404

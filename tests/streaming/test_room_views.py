import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from mediation_room.models import CaseEvent
from streaming.models import Evidence
from tests.factories import UserFactory, advance, make_case, make_expert

pytestmark = pytest.mark.django_db


@pytest.fixture
def room(room_settings):
    applicant, respondent, expert = UserFactory(), UserFactory(), make_expert()
    case = make_case(applicant=applicant, respondent=respondent)
    hearing = advance(case, "scheduled", expert=expert)
    return {"hearing": hearing, "applicant": applicant, "respondent": respondent, "expert": expert}


def png_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client, hearing, content, name="slip.png", title="工资条"):
    return client.post(
        f"/room/{hearing.public_id}/evidence/",
        {"file": SimpleUploadedFile(name, content), "title": title},
    )


def test_a_party_shows_a_photo_kept_with_the_case_and_seen_by_members_only(client, room):
    client.force_login(room["applicant"])
    response = upload(client, room["hearing"], png_bytes())

    assert response.status_code == 201
    frame = response.json()
    assert frame["type"] == "evidence" and frame["content_type"] == "image/png"
    assert frame["label"] == "申请人（甲方）"
    evidence = Evidence.objects.get()
    assert evidence.case == room["hearing"].case and evidence.title == "工资条"
    assert "private/evidence/" in evidence.file.name
    assert CaseEvent.objects.filter(kind="evidence_shown").count() == 1

    client.force_login(room["expert"])
    shown = client.get(frame["url"])
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert shown["X-Content-Type-Options"] == "nosniff"

    client.force_login(UserFactory())
    assert client.get(frame["url"]).status_code == 404
    client.logout()
    assert client.get(frame["url"]).status_code == 302


@pytest.mark.parametrize(
    ("content", "name", "code"),
    [
        (b"", "empty.png", "empty"),
        (b"MZ\x90\x00 not a picture", "slip.png", "bad_type"),
        (b"\x89PNG\r\n\x1a\n" + b"broken", "slip.png", "bad_file"),
        (b"%PDF-1.4\n" + b"0" * (10 * 1024 * 1024), "big.pdf", "too_large"),
    ],
)
def test_bad_evidence_is_refused_with_a_clear_error(client, room, content, name, code):
    client.force_login(room["respondent"])
    response = upload(client, room["hearing"], content, name=name)
    assert response.status_code == 400
    assert response.json()["error"] == code
    assert not Evidence.objects.exists()


def test_an_oversized_body_is_refused_before_it_is_read(client, room):
    client.force_login(room["applicant"])
    big = b"%PDF-1.4\n" + b"0" * (11 * 1024 * 1024)
    response = upload(client, room["hearing"], big, name="big.pdf")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert not Evidence.objects.exists()


def test_strangers_cannot_upload_or_open_the_room(client, room):
    client.force_login(UserFactory())
    assert upload(client, room["hearing"], png_bytes()).status_code == 403
    page = client.get(f"/room/{room['hearing'].public_id}/")
    assert page.status_code == 403
    assert not Evidence.objects.exists()


def test_room_page_for_a_member(client, room):
    client.force_login(room["respondent"])
    page = client.get(f"/room/{room['hearing'].public_id}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert f"/ws/room/{room['hearing'].public_id}/" in body
    assert room["respondent"].phone not in body
    # Chinese first: the room speaks zh-hans unless the member chose English
    assert "调解室" in body and "被申请人（乙方）" in body and "仅语音" in body


def test_room_page_names_the_roles_in_the_member_s_language(client, room):
    client.force_login(room["respondent"])
    url = f"/room/{room['hearing'].public_id}/"

    client.cookies["django_language"] = "en"
    english = client.get(url).content.decode()
    client.cookies["django_language"] = "zh-hans"
    chinese = client.get(url).content.decode()

    assert "Respondent (party B)" in english and "被申请人" not in english
    assert "被申请人（乙方）" in chinese and "Respondent (party B)" not in chinese


def test_check_page_before_the_room(client, room):
    public_id = room["hearing"].public_id
    client.force_login(room["applicant"])
    page = client.get(f"/room/{public_id}/check/")
    assert page.status_code == 200
    body = page.content.decode()
    # the pings of the connection test go over the room's socket, as a probe that does not enter
    # the room; joining leads to the room
    assert f'"ws": "/ws/room/{public_id}/?probe=1"' in body
    assert f'"room": "/room/{public_id}/"' in body
    assert "只用声音进入" in body and "微信" in body and "安卓" in body


def test_check_page_refuses_strangers_and_finished_hearings(client, room):
    public_id = room["hearing"].public_id
    client.force_login(UserFactory())
    assert client.get(f"/room/{public_id}/check/").status_code == 403
    client.force_login(room["applicant"])
    room["hearing"].state = "ended"
    room["hearing"].save(update_fields=["state"])
    assert client.get(f"/room/{public_id}/check/").status_code == 410

"""Phone sign-in with a one-time SMS code through the real allauth views, with allauth's rate
limits counted in the real (Redis) cache."""

import re

import pytest

from accounts.models import SmsOutboxMessage, User

pytestmark = pytest.mark.django_db(transaction=True)


def _last_code(phone: str) -> str:
    message = SmsOutboxMessage.objects.filter(phone=phone).order_by("-created_at", "-pk").first()
    assert message is not None, "no text message was sent"
    return re.search(r"(?<!\d)(\d{6})(?!\d)", message.body).group(1)


def test_new_resident_registers_with_phone_and_code(client):
    response = client.post(
        "/accounts/signup/", {"phone": "138 0013 8000", "display_name": "王阿姨"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/phone/verify/"

    response = client.post("/accounts/phone/verify/", {"code": _last_code("+8613800138000")})

    assert response.status_code == 302
    user = User.objects.get(phone="+8613800138000")
    assert user.phone_verified and user.display_name == "王阿姨"
    assert client.get("/cases/").status_code == 200


def test_returning_resident_signs_in_with_code(client):
    User.objects.create_user(username="wang", phone="+8613800138001", phone_verified=True)

    response = client.post("/accounts/login/code/", {"phone": "13800138001"})
    assert response.status_code == 302
    response = client.post("/accounts/login/code/confirm/", {"code": _last_code("+8613800138001")})

    assert response.status_code == 302
    assert response["Location"] == "/cases/"
    assert client.get("/cases/").wsgi_request.user.phone == "+8613800138001"


def test_wrong_codes_lock_the_attempt_out(client):
    User.objects.create_user(username="li", phone="+8613800138002", phone_verified=True)
    client.post("/accounts/login/code/", {"phone": "13800138002"})
    real = _last_code("+8613800138002")
    wrong = "000000" if real != "000000" else "111111"

    for _ in range(3):
        client.post("/accounts/login/code/confirm/", {"code": wrong})
    response = client.post("/accounts/login/code/confirm/", {"code": real})

    # After the allowed attempts the pending login is gone: even the right code no longer works.
    assert not response.wsgi_request.user.is_authenticated
    assert client.get("/cases/").status_code == 302


def test_code_for_one_phone_does_not_sign_in_another(client):
    User.objects.create_user(username="a", phone="+8613800138003", phone_verified=True)
    User.objects.create_user(username="b", phone="+8613800138004", phone_verified=True)
    client.post("/accounts/login/code/", {"phone": "13800138003"})
    code_a = _last_code("+8613800138003")

    other = type(client)()
    other.post("/accounts/login/code/", {"phone": "13800138004"})
    other.post("/accounts/login/code/confirm/", {"code": code_a})

    assert other.get("/cases/").status_code == 302


def test_requesting_codes_is_rate_limited_per_phone(client):
    User.objects.create_user(username="c", phone="+8613800138005", phone_verified=True)
    for _ in range(3):  # three separate browsers asking for a code for the same number
        assert (
            type(client)().post("/accounts/login/code/", {"phone": "13800138005"}).status_code
            == 302
        )
    sent_before = SmsOutboxMessage.objects.filter(phone="+8613800138005").count()

    response = type(client)().post("/accounts/login/code/", {"phone": "13800138005"})

    assert response.status_code == 200  # the form again, with the error
    assert "too_many_login_attempts" in response.context["form"].errors.as_json()
    assert sent_before == 3
    assert SmsOutboxMessage.objects.filter(phone="+8613800138005").count() == sent_before


def test_invalid_phone_is_refused_with_a_clear_error(client):
    response = client.post("/accounts/signup/", {"phone": "12345"})
    assert response.status_code == 200
    assert "13800138000" in response.content.decode()  # the error shows an example number
    assert not User.objects.exists()
    assert not SmsOutboxMessage.objects.exists()

"""Staff sign in with email and password, then a TOTP code when they have set one up (allauth MFA)."""

import time

import pytest
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value

from accounts.models import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _staff(**kwargs):
    user = UserFactory(email="staff@example.test", phone=None, roles=[Role.COORDINATOR], **kwargs)
    user.set_password("a-long-staff-password")
    user.save()
    return user


def test_staff_signs_in_with_email_and_password(client):
    _staff()
    response = client.post(
        "/accounts/login/", {"login": "staff@example.test", "password": "a-long-staff-password"}
    )
    assert response.status_code == 302
    assert client.get("/board/").status_code == 200


def test_wrong_password_is_refused(client):
    _staff()
    response = client.post("/accounts/login/", {"login": "staff@example.test", "password": "nope"})
    assert response.status_code == 200
    assert client.get("/board/").status_code == 302


def test_staff_with_totp_must_give_the_code(client):
    user = _staff()
    secret = generate_totp_secret()
    TOTP.activate(user, secret)

    response = client.post(
        "/accounts/login/", {"login": "staff@example.test", "password": "a-long-staff-password"}
    )
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/board/").status_code == 302  # not signed in yet

    client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert client.get("/board/").status_code == 302

    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    client.post("/accounts/2fa/authenticate/", {"code": code})
    assert client.get("/board/").status_code == 200

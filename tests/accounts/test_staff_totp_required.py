"""In production (MFA_REQUIRED_FOR_STAFF, on with HTTPS=1) coordinators, moderators and admins
set up an authenticator app before they can do anything else, give its code at every sign-in,
cannot remove it, and reach the Django admin only through allauth's sign-in. The codes here are
computed from the secret (RFC 6238), as the staff member's phone app does."""

import base64
import hashlib
import hmac
import re
import struct
import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from accounts.models import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-staff-password"


def totp_code(secret: str, at: float | None = None) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


@pytest.fixture
def required(settings):
    settings.MFA_REQUIRED_FOR_STAFF = True


def _staff(email="coord@example.test", **kwargs):
    user = UserFactory(email=email, phone=None, **kwargs)
    user.set_password(PASSWORD)
    user.save()
    return user


def _sign_in(client, email):
    return client.post("/accounts/login/", {"login": email, "password": PASSWORD})


def _open_totp_setup(client):
    """allauth asks for the password again before an authenticator is added."""
    response = client.get("/accounts/2fa/totp/activate/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/")
    client.post(response["Location"], {"password": PASSWORD})
    return client.get("/accounts/2fa/totp/activate/")


@pytest.mark.parametrize(
    "kind", [{"roles": [Role.COORDINATOR]}, {"roles": [Role.MODERATOR]}, {"is_staff": True}]
)
def test_staff_without_totp_can_only_set_it_up(client, required, kind):
    _staff(**kind)
    _sign_in(client, "coord@example.test")

    for path in ("/", "/board/", "/cases/", "/admin/"):
        response = client.get(path)
        assert (
            response.status_code == 302 and response["Location"] == "/accounts/2fa/totp/activate/"
        ), path
    assert client.post("/board/").status_code == 302
    told = client.get("/board/", follow=True).content.decode()
    assert "工作人员账号须使用身份验证器应用" in told
    # what stays open: setting it up (after the password again), the language, signing out
    assert _open_totp_setup(client).status_code == 200
    assert client.post("/i18n/setlang/", {"language": "en"}).status_code == 302
    assert client.post("/accounts/logout/").status_code == 302
    assert "_auth_user_id" not in client.session


def test_staff_sets_up_totp_with_the_code_of_their_app_and_goes_on(client, required):
    user = _staff(roles=[Role.COORDINATOR])
    _sign_in(client, "coord@example.test")

    page = _open_totp_setup(client)
    secret = page.context["form"].secret
    assert secret in page.content.decode()  # shown for typing into the app, with its QR code

    wrong = client.post("/accounts/2fa/totp/activate/", {"code": "123456"})
    assert wrong.status_code == 200 and not Authenticator.objects.filter(user=user).exists()
    client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})

    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    assert client.get("/board/").status_code == 200


def test_sign_in_asks_staff_for_the_code(client, required):
    user = _staff(roles=[Role.COORDINATOR])
    secret = generate_totp_secret()
    TOTP.activate(user, secret)

    response = _sign_in(client, "coord@example.test")
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/board/").status_code == 302
    # a code from another secret, and last period's code, do not pass
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(generate_totp_secret())})
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret, time.time() - 90)})
    assert "_auth_user_id" not in client.session

    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get("/board/").status_code == 200


def test_staff_cannot_remove_their_authenticator(client, required):
    user = _staff(roles=[Role.COORDINATOR])
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    _sign_in(client, "coord@example.test")
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})

    client.post("/accounts/2fa/totp/deactivate/")

    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def test_residents_and_experts_are_not_asked_for_totp(client, required, resident, expert):
    for user in (resident, expert):
        client.force_login(user)
        assert client.get("/cases/").status_code == 200


def test_without_the_requirement_staff_may_go_without_totp(client, settings):
    settings.MFA_REQUIRED_FOR_STAFF = False
    _staff(roles=[Role.COORDINATOR])
    _sign_in(client, "coord@example.test")
    assert client.get("/board/").status_code == 200


def test_the_admin_signs_in_through_allauth_with_the_second_factor(client, required):
    admin = _staff(email="admin@example.test", is_staff=True, is_superuser=True)
    secret = generate_totp_secret()
    TOTP.activate(admin, secret)

    # the admin's own form is gone: its sign-in page sends to allauth's
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    response = client.get(response["Location"])
    assert response.status_code == 302
    assert re.match(r"^/accounts/login/\?next=(/|%2F)admin(/|%2F)", response["Location"])
    assert (
        client.post(
            "/admin/login/", {"username": "admin@example.test", "password": PASSWORD}
        ).status_code
        == 302
    )
    assert "_auth_user_id" not in client.session

    response = client.post(
        "/accounts/login/?next=/admin/",
        {"login": "admin@example.test", "password": PASSWORD, "next": "/admin/"},
    )
    assert response["Location"] == "/accounts/2fa/authenticate/"
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_the_admin_sign_in_is_rate_limited_by_allauth(client, required):
    admin = _staff(email="admin@example.test", is_staff=True, is_superuser=True)
    TOTP.activate(admin, generate_totp_secret())
    for _ in range(5):
        client.post("/accounts/login/", {"login": "admin@example.test", "password": "wrong"})

    # allauth's login_failed limit (5 per 5 minutes per account): now even the right password
    # does not reach the second step
    response = client.post(
        "/accounts/login/", {"login": "admin@example.test", "password": PASSWORD}
    )
    assert response.status_code in (200, 429)
    assert "_auth_user_id" not in client.session
    assert client.get("/accounts/2fa/authenticate/").status_code != 200

"""Sign-in code guessing through the real allauth views, counted in the real (Redis) cache."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from accounts.models import SmsOutboxMessage, User

pytestmark = pytest.mark.django_db(transaction=True)


def last_code(phone: str) -> str:
    message = SmsOutboxMessage.objects.filter(phone=phone).order_by("-created_at", "-pk").first()
    assert message is not None, "no text message was sent"
    return re.search(r"(?<!\d)(\d{6})(?!\d)", message.body).group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def signed_in(client: Client) -> bool:
    return client.get("/cases/").status_code == 200


def ask_code(client: Client, number: str):
    return client.post("/accounts/login/code/", {"phone": number})


def test_guessing_codes_locks_the_number_out_even_for_the_right_code():
    User.objects.create_user(username="g", phone="+8613900139001", phone_verified=True)
    attacker = Client()
    failures = 0
    while failures < settings.LOGIN_CODE_LOCKOUT_FAILURES:
        assert ask_code(attacker, "13900139001").status_code == 302
        code = last_code("+8613900139001")
        for _ in range(settings.ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS):
            if failures == settings.LOGIN_CODE_LOCKOUT_FAILURES:
                break
            attacker.post("/accounts/login/code/confirm/", {"code": wrong(code)})
            failures += 1
    assert not signed_in(attacker)

    # The owner asks for a code now: none is sent, and the page says why.
    owner = Client()
    sent = SmsOutboxMessage.objects.filter(phone="+8613900139001").count()
    response = ask_code(owner, "13900139001")
    assert response.status_code == 200
    assert "locked" in response.context["form"].errors.as_json()
    assert "分钟" in response.content.decode() or "minutes" in response.content.decode()
    assert SmsOutboxMessage.objects.filter(phone="+8613900139001").count() == sent

    # A code asked for just before the lockout is refused even when right.
    User.objects.create_user(username="h", phone="+8613900139002", phone_verified=True)
    victim = Client()
    ask_code(victim, "13900139002")
    code = last_code("+8613900139002")
    tries = settings.ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS
    for _ in range(settings.LOGIN_CODE_LOCKOUT_FAILURES // tries):
        guesser = Client()
        ask_code(guesser, "13900139002")
        for _ in range(tries):
            guesser.post("/accounts/login/code/confirm/", {"code": wrong(code)})
    response = victim.post("/accounts/login/code/confirm/", {"code": code})
    assert not signed_in(victim)
    assert any("分钟" in str(m) or "minutes" in str(m) for m in get_messages(response.wsgi_request))


def test_the_lockout_ends():
    User.objects.create_user(username="k", phone="+8613900139003", phone_verified=True)
    client = Client()
    for _ in range(
        settings.LOGIN_CODE_LOCKOUT_FAILURES // settings.ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS
    ):
        ask_code(client, "13900139003")
        code = last_code("+8613900139003")
        for _ in range(settings.ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS):
            client.post("/accounts/login/code/confirm/", {"code": wrong(code)})
    assert ask_code(client, "13900139003").status_code == 200  # locked

    later = timezone.now() + timedelta(seconds=settings.LOGIN_CODE_LOCKOUT_SECONDS + 5)
    with time_machine.travel(later, tick=True):
        owner = Client()
        assert ask_code(owner, "13900139003").status_code == 302
        owner.post("/accounts/login/code/confirm/", {"code": last_code("+8613900139003")})
        assert signed_in(owner)


def test_a_code_sent_to_one_number_does_not_sign_in_another():
    User.objects.create_user(username="m", phone="+8613900139004", phone_verified=True)
    User.objects.create_user(username="n", phone="+8613900139005", phone_verified=True)
    client = Client()
    ask_code(client, "13900139004")
    code_a = last_code("+8613900139004")
    # the same browser switches to the other number and offers the first number's code: it
    # signs in the first number or nobody, never the second
    ask_code(client, "13900139005")
    client.post("/accounts/login/code/confirm/", {"code": code_a})
    assert client.get("/cases/").wsgi_request.user.phone in (None, "+8613900139004")
    # and a second browser that asked for the other number gets nowhere with it either
    other = Client()
    ask_code(other, "13900139005")
    other.post("/accounts/login/code/confirm/", {"code": code_a})
    assert not signed_in(other)


def test_an_empty_code_request_is_a_form_error_not_a_server_error():
    response = Client().post("/accounts/login/code/", {})
    assert response.status_code == 200
    assert response.context["form"].errors

"""The one way a form post calls a service: its message, or any app's refusal, then back."""

import pytest
from django import forms
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.core.exceptions import ValidationError
from django.test import RequestFactory

from cloudbench.actions import form_submit, perform, perform_and_redirect
from cloudbench.errors import DomainError
from experts.services import InvitationError
from mediation_room.errors import CaseError, NotPermitted
from voting.errors import VotingError


def _request():
    request = RequestFactory().post("/")
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    return request


def _shown(request) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(request)]


@pytest.mark.parametrize("error", [CaseError, NotPermitted, VotingError, InvitationError])
def test_every_apps_refusal_is_a_domain_error_shown_as_its_message(error):
    assert issubclass(error, DomainError)
    request = _request()

    def refused():
        raise error("不行")

    assert perform(request, refused) is False
    assert _shown(request) == [("error", "不行")]


def test_a_service_message_is_shown_and_anything_else_is_not():
    request = _request()
    assert perform(request, lambda: "好了") is True
    assert perform(request, lambda: object()) is True
    assert perform(request, lambda: None) is True
    assert _shown(request) == [("success", "好了")]


def test_perform_and_redirect_goes_back_whatever_happened():
    request = _request()

    def invalid():
        raise ValidationError(["太长", "太短"])

    response = perform_and_redirect(request, invalid, "/back/")
    assert (response.status_code, response["Location"]) == (302, "/back/")
    assert _shown(request) == [("error", "太长 太短")]


class NoteForm(forms.Form):
    note = forms.CharField()


def test_form_submit_puts_a_refusal_into_the_form():
    form = NoteForm({"note": "x"})
    assert form.is_valid()
    assert form_submit(form, lambda: 42) == 42
    assert not form.errors

    def refuse_field():
        raise ValidationError({"note": "不清楚", "other": "别的"})

    assert form_submit(form, refuse_field) is None
    assert form.errors == {"note": ["不清楚"], "__all__": ["别的"]}

    form = NoteForm({"note": "x"})
    form.is_valid()

    def refuse():
        raise VotingError("投票已结束", code="poll_closed")

    assert form_submit(form, refuse) is None
    assert form.non_field_errors() == ["投票已结束"]

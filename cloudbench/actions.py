"""The one way a form post calls a service.

``perform`` runs the service and shows its outcome as a message: the service's own text on
success, the error's message when it refuses (a ``DomainError`` of any app, or a
``ValidationError``). ``perform_and_redirect`` then goes back to a page. ``form_submit`` is the
same for a form shown again on error: the refusal goes into the form instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.functional import Promise

from .errors import DomainError

T = TypeVar("T")


def perform(request: HttpRequest, action: Callable[[], Any]) -> bool:
    """Call ``action`` (a service call that returns what to tell the user; anything but text
    shows nothing); show its message or its error. True when it went through."""
    try:
        message = action()
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        if isinstance(message, str | Promise) and message:
            messages.success(request, message)
        return True
    return False


def perform_and_redirect(
    request: HttpRequest, action: Callable[[], Any], to: str, *args: Any, **kwargs: Any
) -> HttpResponse:
    """``perform``, then redirect to ``to`` (a URL name with its arguments, or a path)."""
    perform(request, action)
    return redirect(to, *args, **kwargs)


def errors_to_form(form, exc: ValidationError) -> None:
    """A service's ValidationError on the form: on the fields it names, else on the form."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def form_submit(form, action: Callable[[], T]) -> T | None:
    """Call ``action`` for a valid ``form``; a refusal goes into the form (check
    ``form.errors`` afterwards) and None is returned."""
    try:
        return action()
    except ValidationError as exc:
        errors_to_form(form, exc)
    except DomainError as exc:
        form.add_error(None, exc.message)
    return None

"""allauth forms we replace (ACCOUNT_FORMS). Separate from accounts.forms, which allauth's own
forms module imports (the signup base), so that this one may import allauth's."""

from __future__ import annotations

from allauth.account.forms import RequestLoginCodeForm as BaseRequestLoginCodeForm
from django import forms
from django.utils.translation import gettext as _

from .ratelimit import code_lockout_remaining


def lockout_message(seconds: int) -> str:
    return _(
        "Too many wrong codes for this number. For your safety, sign-in with a code is paused; "
        "try again in %(minutes)d minutes."
    ) % {"minutes": max(1, (seconds + 59) // 60)}


class RequestLoginCodeForm(BaseRequestLoginCodeForm):
    """allauth's form, refusing an empty request (allauth would fail on it) and a number whose
    account is locked after too many wrong codes (then no code is sent)."""

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.errors and not cleaned.get("phone") and not cleaned.get("email"):
            self.add_error("phone", _("Enter your mobile number."))
            return cleaned
        user = getattr(self, "_user", None)
        if user is not None:
            remaining = code_lockout_remaining(user.pk)
            if remaining:
                raise forms.ValidationError(lockout_message(remaining), code="locked")
        return cleaned

from django import forms
from django.utils.translation import gettext_lazy as _


class SignupExtraForm(forms.Form):
    """What allauth's phone sign-up asks besides the number: how we should address the person."""

    display_name = forms.CharField(
        label=_("What should we call you?"),
        max_length=40,
        required=False,
        help_text=_("Shown to other residents instead of your number, e.g. 王阿姨."),
    )

    def signup(self, request, user) -> None:
        user.display_name = self.cleaned_data.get("display_name", "").strip()
        user.save(update_fields=["display_name"])

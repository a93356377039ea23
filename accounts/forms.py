from django import forms
from django.utils.translation import gettext_lazy as _


class SignupExtraForm(forms.Form):
    """What allauth's phone sign-up asks besides the number: how we should address the person."""

    display_name = forms.CharField(
        label=_("What should we call you?"),
        max_length=40,
        required=False,
        help_text=_("Shown to other residents instead of your number, e.g. Auntie Wang."),
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        # Residents register by their number; this form is the base of allauth's signup form.
        if "phone" in self.fields and not cleaned.get("phone") and "phone" not in self.errors:
            self.add_error("phone", _("Enter your mobile number."))
        return cleaned

    def signup(self, request, user) -> None:
        user.display_name = self.cleaned_data.get("display_name", "").strip()
        user.save(update_fields=["display_name"])

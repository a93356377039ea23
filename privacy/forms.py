from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import AccessKind
from .selectors import LogFilters


class AccessLogFilterForm(forms.Form):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    case = forms.CharField(label=_("Case number"), max_length=20, required=False)
    kind = forms.ChoiceField(
        label=_("What was opened"),
        choices=[("", _("Everything"))] + list(AccessKind.choices),
        required=False,
    )
    staff_only = forms.BooleanField(label=_("Staff only"), required=False)
    since = forms.DateField(
        label=_("Opened on or after"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = forms.DateField(
        label=_("Opened on or before"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def filters(self) -> LogFilters:
        return LogFilters(**self.cleaned_data)


class HoldForm(forms.Form):
    reason = forms.CharField(label=_("Reason for the hold"), max_length=300, min_length=4)


class LiftForm(forms.Form):
    note = forms.CharField(label=_("Why the hold ends"), max_length=300, min_length=4)


class EraseForm(forms.Form):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    confirm = forms.BooleanField(
        label=_("I understand: what is deleted cannot be restored."), required=True
    )

from datetime import date

from django import forms
from django.utils.translation import gettext_lazy as _

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs) -> None:
        super().__init__(format=DATETIME_LOCAL, **kwargs)


class NoticeForm(forms.Form):
    to_user = forms.TypedChoiceField(label=_("Addressed to"), coerce=int)
    text = forms.CharField(
        label=_("What must be done"),
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    due = forms.DateTimeField(
        label=_("Answer by"), widget=LocalDateTimeInput(), input_formats=[DATETIME_LOCAL]
    )

    def __init__(self, *args, recipients=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to_user"].choices = [(u.pk, u.nickname) for u in recipients]


class AnswerForm(forms.Form):
    answer = forms.CharField(
        label=_("Your answer"), max_length=1000, widget=forms.Textarea(attrs={"rows": 4})
    )


class RescheduleForm(forms.Form):
    starts_at = forms.DateTimeField(
        label=_("New start"), widget=LocalDateTimeInput(), input_formats=[DATETIME_LOCAL]
    )
    ends_at = forms.DateTimeField(
        label=_("New end"), widget=LocalDateTimeInput(), input_formats=[DATETIME_LOCAL]
    )
    reason = forms.CharField(label=_("Reason"), max_length=500, required=False)


class StatsFilterForm(forms.Form):
    start = forms.DateField(
        label=_("Registered from"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label=_("to (inclusive)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    community = forms.TypedChoiceField(
        label=_("Community"), required=False, coerce=int, empty_value=None
    )

    def __init__(self, *args, communities=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["community"].choices = [("", _("All my communities"))] + [
            (c.pk, str(c)) for c in communities
        ]

    def clean(self):
        data = super().clean()
        start: date | None = data.get("start")
        end: date | None = data.get("end")
        if start and end and end < start:
            self.add_error("end", _("The end must not be before the start."))
        return data

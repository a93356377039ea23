from django import forms
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _

from accounts.models import Community
from mediation_room.models import Category
from privacy.consents import consent_text


class PlainForm(forms.Form):
    """No ':' after labels: Chinese labels end in their own punctuation (or a question mark)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class CaseForm(PlainForm):
    category = forms.ChoiceField(label=_("What is the dispute about?"), choices=Category.choices)
    community = forms.ModelChoiceField(
        label=_("Your community"),
        queryset=Community.objects.select_related("street").order_by("street__name", "name"),
        empty_label=_("Choose your community"),
    )
    description = forms.CharField(
        label=_("What happened?"),
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("In plain words: who, what, since when, what you would like."),
    )
    applicant_name = forms.CharField(label=_("Your name"), max_length=40)
    respondent_name = forms.CharField(label=_("The other party's name"), max_length=40)
    respondent_phone = forms.CharField(
        label=_("The other party's mobile number"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off"}),
        help_text=_("They receive a text message with a link to the case."),
    )
    preferred_times = forms.CharField(
        label=_("When could you meet?"),
        max_length=300,
        required=False,
        help_text=_("For example: weekday evenings, Saturday morning."),
    )
    consent_video = forms.BooleanField(
        label=_("I agree to mediation by video"), required=False, initial=True
    )
    consent_livestream = forms.BooleanField(
        label=_("I agree that residents may watch the session live (faces blurred, no names)"),
        required=False,
    )
    consent_recording = forms.BooleanField(
        label=_("I agree that the session is recorded"), required=False
    )

    def consents(self) -> dict[str, bool]:
        return {
            "video": self.cleaned_data["consent_video"],
            "livestream": self.cleaned_data["consent_livestream"],
            "recording": self.cleaned_data["consent_recording"],
        }


_consent_text = lazy(consent_text, str)


class ConsentForm(PlainForm):
    # the help text is the statement the person agrees to, kept word for word on their receipt
    video = forms.BooleanField(
        label=_("Mediation by video"), required=False, help_text=_consent_text("video")
    )
    livestream = forms.BooleanField(
        label=_("Live to residents"), required=False, help_text=_consent_text("livestream")
    )
    recording = forms.BooleanField(
        label=_("Recording"), required=False, help_text=_consent_text("recording")
    )
    show_face = forms.BooleanField(
        label=_("Show my face on the livestream"), required=False, help_text=_consent_text("face")
    )


class LookupForm(PlainForm):
    tracking_number = forms.CharField(
        label=_("Tracking number"),
        max_length=20,
        widget=forms.TextInput(
            attrs={"placeholder": "LP-2026-000123", "autocapitalize": "characters"}
        ),
    )
    last_four = forms.RegexField(
        label=_("Last four digits of your mobile number"),
        regex=r"^\d{4}$",
        max_length=4,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        error_messages={"invalid": _("Four digits, please.")},
    )


class DeclineForm(PlainForm):
    reason = forms.CharField(
        label=_("Reason (the applicant sees it)"),
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class NoteForm(PlainForm):
    note = forms.CharField(label=_("Note"), max_length=500, required=False)


class BoardFilterForm(PlainForm):
    status = forms.CharField(required=False, max_length=20)
    category = forms.CharField(required=False, max_length=20)
    community = forms.IntegerField(required=False, min_value=1)


class MembershipForm(PlainForm):
    community = forms.ModelChoiceField(
        label=_("Your community"),
        queryset=Community.objects.select_related("street").order_by("street__name", "name"),
        empty_label=_("Choose your community"),
    )
    household = forms.CharField(
        label=_("Building, unit and room"),
        max_length=60,
        help_text=_("For example 3-2-501. The community office checks it before you can vote."),
    )


class MembershipDecisionForm(PlainForm):
    membership = forms.IntegerField(min_value=1)
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])

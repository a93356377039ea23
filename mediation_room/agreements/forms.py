"""Forms of the agreement pages. They parse input; the services validate and decide."""

from django import forms
from django.utils.translation import gettext_lazy as _

from ..models import PartyRole
from .models import Agreement, AgreementComment


class DraftForm(forms.Form):
    facts = forms.CharField(label=_("Facts of the dispute"), widget=forms.Textarea, max_length=4000)
    performance_check = forms.CharField(
        label=_("How performance is checked"),
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=1000,
        required=False,
    )
    note = forms.CharField(label=_("What changed (optional)"), max_length=200, required=False)


class TermForm(forms.Form):
    key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=12)
    obligor = forms.ChoiceField(
        label=_("Who"), choices=[("", "—"), *PartyRole.choices], required=False
    )
    action = forms.CharField(label=_("Does what"), max_length=300, required=False)
    amount = forms.DecimalField(
        label=_("Amount (¥)"), max_digits=11, decimal_places=2, min_value=0, required=False
    )
    due_date = forms.DateField(
        label=_("By (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )


TermFormSet = forms.formset_factory(TermForm, extra=2, max_num=30, absolute_max=40)


class CommentForm(forms.Form):
    term_key = forms.CharField(required=False, max_length=12, widget=forms.HiddenInput)
    kind = forms.ChoiceField(
        label=_("Kind"), choices=AgreementComment.Kind.choices, initial="comment"
    )
    body = forms.CharField(
        label=_("Your comment"), max_length=1000, widget=forms.Textarea(attrs={"rows": 2})
    )


class SignForm(forms.Form):
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    code = forms.CharField(
        label=_("Code from the text message"),
        max_length=6,
        min_length=6,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "one-time-code"}),
    )
    signature = forms.CharField(widget=forms.HiddenInput, required=False, max_length=300_000)
    typed_name = forms.CharField(label=_("Or type your full name"), max_length=40, required=False)


class RefuseForm(forms.Form):
    reason = forms.CharField(
        label=_("Why you do not sign"), max_length=500, widget=forms.Textarea(attrs={"rows": 3})
    )
    referral = forms.ChoiceField(
        label=_("Where the dispute goes next"),
        choices=[(v, label) for v, label in Agreement.Referral.choices if v],
    )
    referral_note = forms.CharField(label=_("Details (optional)"), max_length=200, required=False)


class FollowUpAnswerForm(forms.Form):
    fulfilled = forms.TypedChoiceField(
        label=_("Was it done?"),
        choices=[("yes", _("Yes, it was done")), ("no", _("No, not (fully) done"))],
        coerce=lambda v: v == "yes",
        widget=forms.RadioSelect,
    )
    note = forms.CharField(label=_("Anything to add (optional)"), max_length=500, required=False)


class VerifyForm(forms.Form):
    code = forms.CharField(label=_("Agreement code"), max_length=20)

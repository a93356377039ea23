from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Community

from .models import Poll, Verdict
from .services.bench_panel import PANEL_MAX, PANEL_MIN


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class RoomSettingsForm(forms.Form):
    slow_mode_seconds = forms.IntegerField(
        label=_("Slow mode: seconds between one person's comments (0 = off)"),
        min_value=0,
        max_value=600,
        initial=0,
    )
    review_all = forms.BooleanField(label=_("Hold every comment for review"), required=False)
    comments_open = forms.BooleanField(label=_("Comments open"), required=False, initial=True)
    reason = forms.CharField(label=_("Why (for the log)"), max_length=200, required=False)


class PollForm(forms.Form):
    question = forms.CharField(label=_("Question"), max_length=200)
    options_text = forms.CharField(
        label=_("Options, one per line (2 to 6)"),
        widget=forms.Textarea(attrs={"rows": 4}),
        initial="公平\n基本公平\n不公平",
    )
    results = forms.ChoiceField(label=_("Results"), choices=Poll.Results.choices)

    def options(self) -> list[str]:
        return _lines(self.cleaned_data["options_text"])


class PanelCommitForm(forms.Form):
    size = forms.IntegerField(
        label=_("Panel size"), min_value=PANEL_MIN, max_value=PANEL_MAX, initial=9
    )


class PanelEvaluationForm(forms.Form):
    verdict = forms.ChoiceField(
        label=_("Is the proposed settlement fair?"),
        choices=Verdict.choices,
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=_("Why? One sentence"),
        min_length=4,
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class RatingForm(forms.Form):
    score = forms.TypedChoiceField(
        label=_("How was the mediation?"),
        choices=[(5, "★★★★★ 5"), (4, "★★★★ 4"), (3, "★★★ 3"), (2, "★★ 2"), (1, "★ 1")],
        coerce=int,
        widget=forms.RadioSelect,
    )
    comment = forms.CharField(
        label=_("Anything to add (optional)"),
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class ConsultationForm(forms.Form):
    community = forms.ModelChoiceField(label=_("Community"), queryset=Community.objects.none())
    title = forms.CharField(label=_("Matter"), max_length=120)
    body = forms.CharField(label=_("Details"), max_length=4000, widget=forms.Textarea)
    options_text = forms.CharField(
        label=_("Options, one per line (2 to 8)"),
        widget=forms.Textarea(attrs={"rows": 4}),
        initial="同意\n不同意\n弃权",
    )
    deadline = forms.DateTimeField(
        label=_("Voting closes (YYYY-MM-DD HH:MM)"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
    )
    quorum = forms.IntegerField(
        label=_("Quorum: votes needed for a valid result"), min_value=1, initial=10
    )
    hearing = forms.CharField(
        label=_("Streamed discussion session id (optional)"), max_length=40, required=False
    )

    def __init__(self, *args, communities=None, **kwargs):
        super().__init__(*args, **kwargs)
        if communities is not None:
            self.fields["community"].queryset = communities

    def options(self) -> list[str]:
        return _lines(self.cleaned_data["options_text"])

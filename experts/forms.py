from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Community
from mediation_room.models import Category

from .matching import KNOWN_LANGUAGES
from .models import AvailabilitySlot, ExpertKind


class DirectoryFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=[("", _("All"))] + ExpertKind.choices
    )
    specialty = forms.ChoiceField(
        label=_("Specialty"), required=False, choices=[("", _("All"))] + Category.choices
    )
    community = forms.ModelChoiceField(
        label=_("Community"),
        required=False,
        queryset=Community.objects.select_related("street"),
        empty_label=_("All"),
    )


class DeclineForm(forms.Form):
    reason = forms.CharField(
        label=_("Why not? (the coordinator reads this)"),
        max_length=500,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class SlotForm(forms.Form):
    weekday = forms.TypedChoiceField(
        label=_("Day of the week"), coerce=int, choices=AvailabilitySlot.Weekday.choices
    )
    start_time = forms.TimeField(
        # "From" alone is a notice's sender elsewhere: this one is the start of a time span.
        label=pgettext_lazy("start of a time span", "From"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    end_time = forms.TimeField(
        label=_("Until"), widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    )


class ExceptionForm(forms.Form):
    date = forms.DateField(label=_("Date"), widget=forms.DateInput(attrs={"type": "date"}))
    available = forms.TypedChoiceField(
        label=_("That day I am"),
        coerce=lambda v: v == "1",
        choices=[("0", _("away")), ("1", _("available (extra time)"))],
    )
    start_time = forms.TimeField(
        label=_("From (empty: whole day)"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    end_time = forms.TimeField(
        label=_("Until"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    note = forms.CharField(label=_("Note"), max_length=100, required=False)


class ConflictForm(forms.Form):
    phone = forms.CharField(
        label=_("Mobile number of a person you must not mediate for"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off"}),
    )
    note = forms.CharField(label=_("Relationship"), max_length=100, required=False)


class CandidateFilterForm(forms.Form):
    language = forms.ChoiceField(
        label=_("Language the parties need"),
        required=False,
        choices=[("", _("As the case text says"))] + [(lang, lang) for lang in KNOWN_LANGUAGES],
    )


class ImportForm(forms.Form):
    file = forms.FileField(
        label=_("Spreadsheet (.xlsx or .csv)"),
        help_text=_(
            "First row: phone, name, kind, specialties, communities, home_community, languages, bio, "
            "load_cap (or the Chinese column names)."
        ),
    )

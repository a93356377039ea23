"""Admin of personal-data records. The access log, consent receipts, deletion requests and
retention runs are records: view-only. Legal holds are placed and lifted here too, each with its
reason, through the same services as the case's access page (permission check, case event); a
hold is never edited afterwards nor deleted."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from mediation_room.errors import CaseError
from mediation_room.selectors import case_roles_for_user

from . import services
from .models import AccessLog, ConsentReceipt, ErasureRequest, LegalHold, RetentionRun


class RecordAdmin(admin.ModelAdmin):
    """A record is read, never added, changed or deleted by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AccessLog)
class AccessLogAdmin(RecordAdmin):
    list_display = ("at", "case", "actor", "role", "kind", "ref", "ip")
    list_filter = ("kind", "role")
    search_fields = ("case__tracking_number", "ref", "actor__username", "ip")
    date_hierarchy = "at"
    list_select_related = ("case", "actor")


@admin.register(ConsentReceipt)
class ConsentReceiptAdmin(RecordAdmin):
    list_display = ("at", "party", "user", "kind", "granted", "text_version")
    list_filter = ("kind", "granted")
    search_fields = ("party__case__tracking_number",)
    list_select_related = ("party", "user")


@admin.register(ErasureRequest)
class ErasureRequestAdmin(RecordAdmin):
    list_display = ("requested_at", "user_ref", "user")


@admin.register(RetentionRun)
class RetentionRunAdmin(RecordAdmin):
    list_display = ("at", "case_count", "unbound")
    date_hierarchy = "at"

    @admin.display(description=_("cases"))
    def case_count(self, obj: RetentionRun) -> int:
        return len(obj.cases)


class LegalHoldForm(forms.ModelForm):
    """Placing: case, kind, reason. Lifting an active hold: the note saying why it ends."""

    lift = forms.BooleanField(label=_("Lift this hold"), required=False)

    class Meta:
        model = LegalHold
        fields = ("case", "kind", "reason", "lift_note")

    def clean(self):
        data = super().clean()
        user = self.request_user
        if self.instance.pk is None:
            case = data.get("case")
            if not " ".join(data.get("reason", "").split()):
                raise ValidationError({"reason": _("Say why the case is held.")})
            if case is not None and not case_roles_for_user(case, user) & {"coordinator", "admin"}:
                raise ValidationError(_("Only the case's coordinators can place or lift a hold."))
        elif data.get("lift"):
            if not " ".join(data.get("lift_note", "").split()):
                raise ValidationError({"lift_note": _("Say why the hold ends.")})
            if not case_roles_for_user(self.instance.case, user) & {"coordinator", "admin"}:
                raise ValidationError(_("Only the case's coordinators can place or lift a hold."))
        return data


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    form = LegalHoldForm
    list_display = ("case", "kind", "reason", "placed_by", "created_at", "lifted_at")
    list_filter = ("kind", ("lifted_at", admin.EmptyFieldListFilter))
    search_fields = ("case__tracking_number", "reason")
    raw_id_fields = ("case",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request_user = request.user
        return form

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("case", "kind", "reason")
        if obj.lifted_at is None:
            return ("case", "kind", "reason", "placed_by", "created_at", "lift_note", "lift")
        return ("case", "kind", "reason", "placed_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        fixed = ("case", "kind", "reason", "placed_by", "created_at")
        if obj.lifted_at is None:
            return fixed
        return (*fixed, "lifted_at", "lifted_by", "lift_note")

    def get_fieldsets(self, request, obj=None):
        fields = list(self.get_fields(request, obj))
        if obj is not None and obj.lifted_at is not None:
            fields += ["lifted_at", "lifted_by", "lift_note"]
        return [(None, {"fields": fields})]

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        try:
            if not change:
                hold = services.legal_hold_place(
                    case=data["case"], actor=request.user, reason=data["reason"], kind=data["kind"]
                )
                obj.pk = hold.pk
            elif data.get("lift"):
                services.legal_hold_lift(
                    case=obj.case, hold_id=obj.pk, actor=request.user, note=data["lift_note"]
                )
        except CaseError as exc:  # checked by the form already; a race lands here
            self.message_user(request, str(getattr(exc, "message", exc)), level="error")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

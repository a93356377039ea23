"""Admin for agreements: a locked agreement (and its versions and signatures) is view-only; the
text and the signatures change only through the services, never here."""

from django.contrib import admin

from .models import (
    Agreement,
    AgreementComment,
    AgreementSignature,
    AgreementVersion,
    FollowUp,
    FollowUpAnswer,
    LedgerHead,
    SigningChallenge,
)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class VersionInline(ReadOnlyInline):
    model = AgreementVersion
    fields = ("number", "author", "created_at", "note")
    readonly_fields = fields


class SignatureInline(ReadOnlyInline):
    model = AgreementSignature
    fields = ("role", "name", "method", "signed_at", "ip", "user_agent", "image_sha256")
    readonly_fields = fields


@admin.register(Agreement)
class AgreementAdmin(admin.ModelAdmin):
    list_display = ("code", "case", "state", "seq", "locked_at", "created_at")
    list_filter = ("state",)
    search_fields = ("code", "case__tracking_number", "hash")
    # Text, state, chain, signatures and refusals move only through the services, which audit them.
    readonly_fields = (
        "case",
        "code",
        "state",
        "final_version",
        "submitted_at",
        "locked_at",
        "seq",
        "prev_hash",
        "hash",
        "pdf",
        "refused_by",
        "refusal_reason",
        "referral",
        "referral_note",
    )
    inlines = [VersionInline, SignatureInline]

    def has_add_permission(self, request) -> bool:
        return False  # agreements start from the mediator's template (agreement_start)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_locked:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_locked:
            return False
        return super().has_delete_permission(request, obj)


class AppendOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AgreementVersion)
class AgreementVersionAdmin(AppendOnlyAdmin):
    list_display = ("agreement", "number", "author", "created_at")
    raw_id_fields = ("agreement", "author")


@admin.register(AgreementSignature)
class AgreementSignatureAdmin(AppendOnlyAdmin):
    list_display = ("agreement", "role", "name", "method", "signed_at")
    exclude = ("image",)


@admin.register(SigningChallenge)
class SigningChallengeAdmin(AppendOnlyAdmin):
    list_display = ("agreement", "user", "created_at", "expires_at", "attempts", "used_at")
    exclude = ("code_hash", "salt")


@admin.register(AgreementComment)
class AgreementCommentAdmin(admin.ModelAdmin):
    list_display = ("agreement", "author_role", "kind", "term_key", "created_at")
    list_filter = ("kind",)
    raw_id_fields = ("agreement", "version", "author")


@admin.register(LedgerHead)
class LedgerHeadAdmin(AppendOnlyAdmin):
    list_display = ("seq", "hash")


class FollowUpAnswerInline(ReadOnlyInline):
    model = FollowUpAnswer
    fields = ("party", "fulfilled", "note", "created_at")
    readonly_fields = fields


@admin.register(FollowUp)
class FollowUpAdmin(admin.ModelAdmin):
    list_display = ("agreement", "term_key", "due_date", "state", "asked_at", "resolved_at")
    list_filter = ("state",)
    raw_id_fields = ("agreement",)
    # The state moves through the follow-up service (it alerts and closes cases).
    readonly_fields = ("state", "asked_at", "resolved_at", "due_at")
    inlines = [FollowUpAnswerInline]

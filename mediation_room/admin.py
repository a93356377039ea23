from django.contrib import admin

from .models import Case, CaseEvent, CaseNumber, Consent, Hearing, Party


class PartyInline(admin.TabularInline):
    model = Party
    extra = 0
    raw_id_fields = ("user",)
    exclude = ("invite_token",)


class CaseEventInline(admin.TabularInline):
    model = CaseEvent
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "actor", "kind", "from_status", "to_status", "note", "data")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = (
        "tracking_number",
        "category",
        "community",
        "status",
        "stage_deadline",
        "created_at",
    )
    list_filter = ("status", "category", "community__street")
    search_fields = ("tracking_number",)
    raw_id_fields = ("reporter", "expert")
    # Status moves only through the lifecycle services, so that every change is audited.
    readonly_fields = ("tracking_number", "status", "status_changed_at", "stage_deadline")
    inlines = [PartyInline, CaseEventInline]


@admin.register(CaseEvent)
class CaseEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "case", "kind", "from_status", "to_status", "actor")
    list_filter = ("kind",)
    raw_id_fields = ("case", "actor")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Party)
class PartyAdmin(admin.ModelAdmin):
    list_display = ("case", "role", "name", "user")
    raw_id_fields = ("case", "user")


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ("party", "kind", "granted", "decided_at")
    readonly_fields = ("party", "kind", "granted", "decided_at")


@admin.register(Hearing)
class HearingAdmin(admin.ModelAdmin):
    list_display = ("case", "starts_at", "ends_at", "state")
    list_filter = ("state",)
    raw_id_fields = ("case",)


@admin.register(CaseNumber)
class CaseNumberAdmin(admin.ModelAdmin):
    list_display = ("year", "last")


from .agreements import admin as agreements_admin  # noqa: E402, F401 (registers the models)

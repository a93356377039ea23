from django.contrib import admin

from . import services
from .models import (
    AvailabilityException,
    AvailabilitySlot,
    DeclaredConflict,
    ExpertProfile,
    Invitation,
)


class SlotInline(admin.TabularInline):
    model = AvailabilitySlot
    extra = 0


class ExceptionInline(admin.TabularInline):
    model = AvailabilityException
    extra = 0


class ConflictInline(admin.TabularInline):
    model = DeclaredConflict
    extra = 0
    raw_id_fields = ("user",)


@admin.register(ExpertProfile)
class ExpertProfileAdmin(admin.ModelAdmin):
    list_display = ("public_name", "kind", "specialties", "load_cap", "active", "rating_count")
    list_filter = ("kind", "active")
    search_fields = ("public_name", "user__display_name")
    raw_id_fields = ("user",)
    filter_horizontal = ("communities",)
    readonly_fields = ("public_id", "rating_sum", "rating_count")
    inlines = [SlotInline, ExceptionInline, ConflictInline]

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        services.profile_week_hours_refresh(form.instance)


@admin.register(AvailabilitySlot)
class AvailabilitySlotAdmin(admin.ModelAdmin):
    list_display = ("profile", "weekday", "start_time", "end_time")
    list_filter = ("weekday",)
    raw_id_fields = ("profile",)

    # Slots edited here must reach the ranking's hour bits too.
    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        services.profile_week_hours_refresh(obj.profile)

    def delete_model(self, request, obj) -> None:
        profile = obj.profile
        super().delete_model(request, obj)
        services.profile_week_hours_refresh(profile)

    def delete_queryset(self, request, queryset) -> None:
        profiles = list({slot.profile for slot in queryset.select_related("profile")})
        super().delete_queryset(request, queryset)
        for profile in profiles:
            services.profile_week_hours_refresh(profile)


@admin.register(AvailabilityException)
class AvailabilityExceptionAdmin(admin.ModelAdmin):
    list_display = ("profile", "date", "available", "start_time", "end_time")
    list_filter = ("available",)
    raw_id_fields = ("profile",)


@admin.register(DeclaredConflict)
class DeclaredConflictAdmin(admin.ModelAdmin):
    # The number itself is personal data: the list shows only who declared and the relationship.
    list_display = ("profile", "note", "created_at")
    raw_id_fields = ("profile", "user")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("case", "expert", "state", "expires_at", "responded_at", "invited_by")
    list_filter = ("state",)
    raw_id_fields = ("case", "expert", "invited_by")
    # State changes go through the services (events, notifications, the lapse task).
    readonly_fields = ("state", "responded_at", "rank", "score")

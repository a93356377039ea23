from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import (
    Community,
    CoordinatorPost,
    Membership,
    Notification,
    SmsOutboxMessage,
    Street,
    User,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "display_name", "phone", "email", "is_staff", "is_active")
    search_fields = ("username", "display_name", "phone", "email")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        ("Cloud Bench", {"fields": ("phone", "phone_verified", "display_name")}),
    )


@admin.register(Street)
class StreetAdmin(admin.ModelAdmin):
    list_display = ("name", "district")


@admin.register(Community)
class CommunityAdmin(admin.ModelAdmin):
    list_display = ("name", "street")
    list_filter = ("street",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "community", "household", "verified_at")
    list_filter = ("community",)
    raw_id_fields = ("user", "verified_by")


@admin.register(CoordinatorPost)
class CoordinatorPostAdmin(admin.ModelAdmin):
    list_display = ("user", "street", "community")
    raw_id_fields = ("user",)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "channel", "kind", "case_ref", "status", "attempts")
    list_filter = ("channel", "status", "kind")
    search_fields = ("case_ref",)
    raw_id_fields = ("user",)
    readonly_fields = ("dedupe_key",)


@admin.register(SmsOutboxMessage)
class SmsOutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "phone")

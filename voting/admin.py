from django.contrib import admin

from .models import (
    CommentBan,
    Consultation,
    MediationRating,
    ModerationAction,
    Panel,
    PanelVolunteer,
    Poll,
    Room,
    SensitiveWord,
)


@admin.register(SensitiveWord)
class SensitiveWordAdmin(admin.ModelAdmin):
    list_display = ["word", "added_by", "created_at"]
    search_fields = ["word"]

    def save_model(self, request, obj, form, change):
        from . import wordfilter

        super().save_model(request, obj, form, change)
        wordfilter.reset()
        wordfilter.bump_version()


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["hearing", "last_seq", "slow_mode_seconds", "review_all", "comments_open"]


@admin.register(ModerationAction)
class ModerationActionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "moderator", "target_user", "reason"]
    list_filter = ["kind"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.register([CommentBan, Poll, PanelVolunteer, Panel, MediationRating, Consultation])

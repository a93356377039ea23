from django.conf import settings
from django.http import HttpRequest

from accounts.selectors import unread_notifications


def site(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    signed_in = bool(user and user.is_authenticated)
    # One query for every role the nav needs: the same cost as asking about one, and none for a
    # superuser, who is a coordinator everywhere.
    if signed_in and not user.is_superuser:
        roles = set(user.groups.values_list("name", flat=True))
    else:
        roles = set()
    return {
        "SMS_OUTBOX_PAGE": settings.SMS_OUTBOX_PAGE,
        "is_coordinator": signed_in and ("coordinator" in roles or user.is_superuser),
        "is_expert": "expert" in roles,
        "unread_count": unread_notifications(user).count() if signed_in else 0,
    }

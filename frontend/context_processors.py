from django.conf import settings
from django.http import HttpRequest

from accounts.selectors import is_coordinator, unread_notifications


def site(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    signed_in = bool(user and user.is_authenticated)
    return {
        "SMS_OUTBOX_PAGE": settings.SMS_OUTBOX_PAGE,
        "is_coordinator": signed_in and is_coordinator(user),
        "unread_count": unread_notifications(user).count() if signed_in else 0,
    }

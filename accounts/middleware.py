"""Staff sign in with a second factor in production: a coordinator, moderator or admin without an
authenticator app is sent to set one up and can open nothing else until it is done."""

from __future__ import annotations

from collections.abc import Callable

from channels.auth import AuthMiddleware, get_user
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _

from .selectors import has_totp, is_staff_member


def must_set_up_totp(user) -> bool:
    return bool(
        settings.MFA_REQUIRED_FOR_STAFF
        and user is not None
        and is_staff_member(user)
        and not has_totp(user)
    )


class StaffTotpRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._open: tuple[str, ...] | None = None

    def open_paths(self) -> tuple[str, ...]:
        """What a staff member without TOTP may still reach: setting it up (allauth's MFA pages,
        the re-authentication they may ask for), signing out, the language, static files."""
        if self._open is None:
            self._open = (
                reverse("mfa_index"),
                reverse("account_reauthenticate"),
                reverse("account_logout"),
                reverse("set_language"),
                settings.STATIC_URL,
            )
        return self._open

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            settings.MFA_REQUIRED_FOR_STAFF
            and not request.path.startswith(self.open_paths())
            and must_set_up_totp(request.user)
        ):
            messages.warning(
                request,
                _("Staff accounts sign in with an authenticator app. Set it up to continue."),
            )
            return redirect("mfa_activate_totp")
        return self.get_response(request)


class StaffTotpRequiredASGIMiddleware:
    """The same for WebSockets (inside the auth middleware): such a staff member's socket is
    refused at the handshake."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        # Only a signed-in member can be staff: an anonymous viewer's socket goes on with no
        # thread hop, a signed-in one's check runs beside others' (not thread-sensitive).
        if (
            scope["type"] == "websocket"
            and settings.MFA_REQUIRED_FOR_STAFF
            and user is not None
            and user.is_authenticated
        ):
            if await database_sync_to_async(must_set_up_totp, thread_sensitive=False)(user):
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 4403})
                return None
        return await self.app(scope, receive, send)


class ParallelAuthMiddleware(AuthMiddleware):
    """Channels' AuthMiddleware, but the user is read off the one thread that a process's
    thread-sensitive work shares: hundreds of viewers reconnecting at once after a crash are
    let in side by side instead of one after another. A socket without a session is anonymous
    with no thread hop at all (reading an absent session touches no database)."""

    async def resolve_scope(self, scope) -> None:
        if scope["session"].session_key is None:
            scope["user"]._wrapped = AnonymousUser()
            return
        scope["user"]._wrapped = await database_sync_to_async(
            get_user.func, thread_sensitive=False
        )(scope)


def auth_middleware_stack(inner):
    """`channels.auth.AuthMiddlewareStack` with `ParallelAuthMiddleware`."""
    return CookieMiddleware(SessionMiddleware(ParallelAuthMiddleware(inner)))

"""allauth integration: the phone number lives on User.phone; codes go out as SMS notifications."""

from __future__ import annotations

import secrets
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.fields import PhoneField
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from cloudbench.client_address import client_ip

from .models import User
from .phones import normalize_mobile
from .ratelimit import code_lockout_remaining


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request) -> str:
        # allauth's own reading of X-Forwarded-For would be a second answer; its rate limits
        # (sign-in codes, failed sign-ins) count the address every other limit counts.
        return client_ip(request)

    def phone_form_field(self, **kwargs: Any) -> PhoneField:
        # Residents type 13800138000, not +8613800138000: normalise in clean_phone instead of
        # allauth's strict E.164 pattern.
        kwargs.setdefault("validators", [])
        field = PhoneField(**kwargs)
        field.widget.attrs.update(
            {"placeholder": "13800138000", "inputmode": "tel", "autocomplete": "tel"}
        )
        field.label = _("Mobile number")
        return field

    def clean_phone(self, phone: str) -> str:
        return normalize_mobile(phone)

    def set_phone(self, user: User, phone: str, verified: bool) -> None:
        user.phone = phone
        user.phone_verified = verified
        if user.pk:  # during signup allauth calls this before the user is first saved
            user.save(update_fields=["phone", "phone_verified"])

    def get_phone(self, user: User) -> tuple[str, bool] | None:
        if not user.phone:
            return None
        return user.phone, user.phone_verified

    def set_phone_verified(self, user: User, phone: str) -> None:
        if user.phone == phone:
            user.phone_verified = True
            user.save(update_fields=["phone_verified"])

    def get_user_by_phone(self, phone: str) -> User | None:
        try:
            phone = normalize_mobile(phone)
        except Exception:
            return None
        return User.objects.filter(phone=phone, is_active=True).first()

    def generate_phone_verification_code(self, *, user: User, phone: str) -> str:
        return f"{secrets.randbelow(1_000_000):06d}"

    def send_verification_code_sms(self, user: User, phone: str, code: str, **kwargs: Any) -> None:
        from .services import notification_send

        notification_send(
            channel="sms",
            kind="login_code",
            body=_(
                "[Cloud Bench] Your sign-in code is %(code)s, valid for 5 minutes. Do not share it."
            )
            % {"code": code},
            # One row per code: resending a new code is a new message.
            dedupe_key=f"code:{phone}:{timezone.now().timestamp()}:{secrets.token_hex(4)}",
            user=user if user.pk else None,
            phone=phone,
        )

    def send_unknown_account_sms(self, phone: str, **kwargs: Any) -> None:
        from .services import notification_send

        notification_send(
            channel="sms",
            kind="unknown_account",
            body=_("[Cloud Bench] No account uses this number yet. Register in one step: %(url)s")
            % {"url": f"{settings.SITE_URL}/accounts/signup/"},
            dedupe_key=f"unknown:{phone}:{timezone.now():%Y%m%d%H%M}",
            phone=phone,
        )

    def pre_login(self, request, user: User, **kwargs: Any):
        # The right code after too many wrong ones (see accounts.ratelimit) still does not sign in.
        remaining = code_lockout_remaining(user.pk) if user.pk else 0
        if remaining:
            from allauth.account.internal.stagekit import clear_login
            from django.contrib import messages
            from django.shortcuts import redirect

            from .signin_forms import lockout_message

            clear_login(request)
            messages.error(request, lockout_message(remaining))
            return redirect("account_request_login_code")
        return super().pre_login(request, user, **kwargs)

    def populate_username(self, request, user: User) -> None:
        # Usernames are internal; residents never see or type one.
        if not user.username:
            user.username = f"u{secrets.token_hex(6)}"

    def save_user(self, request, user: User, form, commit: bool = True) -> User:
        user = super().save_user(request, user, form, commit=False)
        if not user.username:
            self.populate_username(request, user)
        if commit:
            user.save()
        return user


class MFAAdapter(DefaultMFAAdapter):
    def can_delete_authenticator(self, authenticator: Authenticator) -> bool:
        # Where staff must use TOTP they cannot remove it themselves: when a phone is lost an
        # admin deletes the authenticator (Django admin) and they set up a new one at sign-in.
        if settings.MFA_REQUIRED_FOR_STAFF and authenticator.type == Authenticator.Type.TOTP:
            from .selectors import is_staff_member

            return not is_staff_member(authenticator.user)
        return super().can_delete_authenticator(authenticator)

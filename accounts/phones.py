"""Mainland China mobile numbers: one normal form (+8613800138000) everywhere we store or compare."""

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def normalize_mobile(raw: str) -> str:
    """Return the E.164 form of a mainland mobile number, or raise ValidationError."""
    text = (raw or "").strip().replace(" ", "").replace("-", "")
    if len(text) > 20:
        raise ValidationError(_("Enter a valid mobile number, e.g. 13800138000."), code="invalid")
    try:
        number = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            _("Enter a valid mobile number, e.g. 13800138000."), code="invalid"
        ) from exc
    if (
        number.country_code != 86
        or phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE
        or not phonenumbers.is_valid_number(number)
    ):
        raise ValidationError(_("Enter a valid mobile number, e.g. 13800138000."), code="invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_mobile(value: str) -> None:
    normalize_mobile(value)


def last_four(phone: str) -> str:
    return phone[-4:] if phone else ""


def mask(phone: str) -> str:
    """138****8000: the only form in which a number may appear in logs or to other people."""
    national = phone[3:] if phone.startswith("+86") else phone
    if len(national) < 7:
        return "****"
    return f"{national[:3]}****{national[-4:]}"

"""The access log: every opening of a case's files, and of a case page by staff.

``access_record`` is the write (a service); ``log_access`` is what views call, and the one place
that reads the client's address from a request."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from cloudbench.client_address import client_ip
from mediation_room.models import Case
from mediation_room.selectors import case_role_for_user

from .models import AccessKind, AccessLog


def _address(request: HttpRequest) -> str | None:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_ipv46_address

    value = client_ip(request)
    try:
        validate_ipv46_address(value)
    except ValidationError:
        return None
    return value


@transaction.atomic
def access_record(
    *, case: Case, actor: User, kind: str, ref: str = "", ip: str | None = None
) -> AccessLog | None:
    """Log one opening by ``actor``. Files are logged for everyone; a case page only for staff
    (a party reading their own case is not an access to someone else's data). Returns the row,
    or None when nothing needed logging."""
    if kind not in AccessKind.values:
        raise ValueError(f"not an access kind: {kind}")
    role = case_role_for_user(case, actor) or "none"
    if kind == AccessKind.CASE_PAGE and role in AccessLog.PARTY_ROLES:
        return None
    return AccessLog.objects.create(
        case=case, actor=actor, role=role, kind=kind, ref=str(ref)[:64], ip=ip, at=timezone.now()
    )


def log_access(request: HttpRequest, *, case: Case, kind: str, ref: object = "") -> None:
    access_record(case=case, actor=request.user, kind=kind, ref=str(ref), ip=_address(request))

"""The one base of the domain's errors. Each app names its own (``CaseError``, ``VotingError``,
``InvitationError``, ...); all carry a message safe to show the user and a machine ``code``, so
that a view (``cloudbench.actions``) or a socket (``cloudbench.sockets``) shows any of them the
same way."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied


class DomainError(Exception):
    """A request that cannot be carried out; ``message`` is safe to show the user."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NotPermitted(DomainError, PermissionDenied):
    """The user may not do this (a 403 where it reaches Django unhandled)."""

    def __init__(self, message: str, *, code: str = "forbidden") -> None:
        super().__init__(message, code=code)

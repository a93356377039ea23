from cloudbench import errors
from cloudbench.errors import DomainError


class CaseError(DomainError):
    """A request about a case that cannot be carried out; the message is safe to show the user."""


class TransitionNotAllowed(CaseError):
    pass


class NotPermitted(CaseError, errors.NotPermitted):
    """The user may not do this to the case."""

from django.core.exceptions import PermissionDenied


class CaseError(Exception):
    """A request about a case that cannot be carried out; the message is safe to show the user."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TransitionNotAllowed(CaseError):
    pass


class NotPermitted(CaseError, PermissionDenied):
    def __init__(self, message: str, *, code: str = "forbidden") -> None:
        super().__init__(message, code=code)

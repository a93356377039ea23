from cloudbench.errors import DomainError


class VotingError(DomainError):
    """A request the audience side refuses; the message is safe to show the user."""

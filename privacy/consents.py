"""The words a person agrees to, versioned, and the receipt kept each time they answer.

A consent's text is stored with its receipt in the language it was shown in, so that the
receipt says what this person read even after the wording changes (bump TEXT_VERSION then)."""

from __future__ import annotations

from datetime import datetime

from django.utils.translation import gettext as _

from accounts.models import User
from mediation_room.models import Party

from .models import ConsentReceipt

TEXT_VERSION = "2026-12"
FACE = "face"


def consent_text(kind: str) -> str:
    texts = {
        "video": _(
            "I agree that my mediation is held by video: the mediator and the other party see "
            "and hear me in the mediation room."
        ),
        "livestream": _(
            "I agree that the mediation session is streamed live to residents of the community. "
            "Viewers see role labels, not names; my face is blurred unless I choose to show it."
        ),
        "recording": _(
            "I agree that the mediation session is recorded. The recording is kept encrypted "
            "with the case and deleted when its retention period ends."
        ),
        FACE: _("I choose to show my face on the livestream instead of having it blurred."),
    }
    return texts[kind]


def consent_receipt_record(
    *, party: Party, user: User | None, kind: str, granted: bool, at: datetime
) -> ConsentReceipt:
    """Append one receipt (call inside the service's transaction that changes the consent)."""
    return ConsentReceipt.objects.create(
        party=party,
        user=user,
        kind=kind,
        granted=granted,
        text=consent_text(kind),
        text_version=TEXT_VERSION,
        at=at,
    )

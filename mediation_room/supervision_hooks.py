"""Entry points other parts of the platform call to put a case under supervision (督办)."""

from __future__ import annotations

from .models import Case, SupervisionNotice


def open_supervision(case: Case, reason: str) -> SupervisionNotice | None:
    """Open supervision of `case` for `reason` (for instance, a term of an agreement was not
    fulfilled on time). The case's coordinator receives a supervision notice (SMS + in-app) and
    must answer it; calling again with the same reason does not open a second one. Returns the
    notice, or None when the case's community has no coordinator at all."""
    from .supervision.services import supervision_open

    return supervision_open(case=case, reason=reason)

"""Writes about a hearing's livestream."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import User
from mediation_room.errors import NotPermitted, TransitionNotAllowed
from mediation_room.models import Hearing
from mediation_room.services import case_event_record
from streaming.broadcast.selectors import broadcast_paused


@transaction.atomic
def broadcast_pause(*, hearing: Hearing, actor: User, paused: bool) -> Hearing:
    """The case's mediator takes the livestream off air (viewers see the slate) or back on.

    Writes a ``broadcast_paused`` / ``broadcast_resumed`` CaseEvent; the media node follows it
    through the case group after commit. Repeating the current state is a no-op.
    """
    hearing = Hearing.objects.select_for_update().select_related("case").get(pk=hearing.pk)
    if hearing.case.expert_id is None or hearing.case.expert_id != actor.pk:
        raise NotPermitted(_("Only the mediator of this case can pause the livestream."))
    if hearing.state != Hearing.State.LIVE:
        raise TransitionNotAllowed(_("The livestream can only be paused during the session."))
    if broadcast_paused(hearing) == paused:
        return hearing
    case_event_record(
        case=hearing.case,
        actor=actor,
        kind="broadcast_paused" if paused else "broadcast_resumed",
        data={"hearing": hearing.public_id},
    )
    return hearing

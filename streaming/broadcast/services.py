"""Writes about a hearing's livestream."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import User
from mediation_room.errors import NotPermitted, TransitionNotAllowed
from mediation_room.models import Hearing
from mediation_room.services import case_event_record
from streaming import pool
from streaming.broadcast.selectors import broadcast_facts, broadcast_paused, replay_directory
from streaming.plane import node_channel


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


def replays_remove(*, case_id: int) -> list[str]:
    """Delete the HLS replays of the case's finished hearings unless every party still consents
    to the livestream and the recording; a ``replay_removed`` CaseEvent records each one.

    Called after a consent is withdrawn (on commit); calling it again removes nothing more."""
    removed = []
    for hearing in Hearing.objects.filter(
        case_id=case_id, state__in=[Hearing.State.ENDED, Hearing.State.CANCELLED]
    ).select_related("case"):
        facts = broadcast_facts(hearing.public_id)
        if facts is not None and facts.public and facts.recording_consent:
            continue
        directory = replay_directory(hearing.public_id)
        if not directory.exists():
            continue
        shutil.rmtree(directory, ignore_errors=True)
        with transaction.atomic():
            case_event_record(
                case=hearing.case,
                actor=None,
                kind="replay_removed",
                data={"hearing": hearing.public_id},
            )
        removed.append(hearing.public_id)
    return removed


# -- where a viewer is served ---------------------------------------------------------------

# A viewer placed on a node counts against it until the node's own count (renewed with its lease)
# has had time to include it: a crowd arriving at once is spread, not sent to one node.
PLACED_WINDOW_SECONDS = 4.0
_placed_here: dict[str, list[float]] = {}


@dataclass(frozen=True)
class WatchPlacement:
    """Where a viewer's offer goes (``channel``) and the room's own node (``home``, the channel
    the composite comes from); ``node`` is the chosen node's id ("" with no live node)."""

    node: str
    channel: str
    home: str


def viewer_room(node: dict) -> int:
    """The WebRTC viewers a node may still take: its declared capacity minus those it serves."""
    capacity = int(node.get("viewer_capacity") or settings.MEDIA_NODE_VIEWER_CAPACITY)
    return capacity - int(node.get("webrtc_viewers") or 0)


def _recently_placed(registry: object, node_ids: list[str], now: float) -> dict[str, int]:
    client = getattr(registry, "client", None)
    if client is None:
        return {
            n: sum(1 for t in _placed_here.get(n, ()) if t > now - PLACED_WINDOW_SECONDS)
            for n in node_ids
        }
    pipe = client.pipeline(transaction=False)
    for node_id in node_ids:
        pipe.zcount(f"{registry.prefix}:watch:{node_id}", now - PLACED_WINDOW_SECONDS, "+inf")
    return dict(zip(node_ids, (int(n) for n in pipe.execute()), strict=True))


def _count_placed(registry: object, node_id: str, now: float) -> None:
    client = getattr(registry, "client", None)
    if client is None:
        times = [t for t in _placed_here.get(node_id, ()) if t > now - PLACED_WINDOW_SECONDS]
        _placed_here[node_id] = [*times, now]
        return
    key = f"{registry.prefix}:watch:{node_id}"
    pipe = client.pipeline(transaction=True)
    pipe.zadd(key, {uuid.uuid4().hex: now})
    pipe.zremrangebyscore(key, "-inf", now - PLACED_WINDOW_SECONDS)
    pipe.expire(key, int(PLACED_WINDOW_SECONDS) + 1)
    pipe.execute()


def watch_placement(public_id: str) -> WatchPlacement:
    """The node that answers a viewer's offer: the live node, not draining, with the most viewer
    room (declared viewer capacity minus viewers, minus viewers just placed there); the room's own
    node on a tie (no relay needed). Any other node serves the viewer from a relay of the home
    node's stream (``streaming.node.broadcast.relay``). Blocking (Redis)."""
    home_node = pool.place_room(public_id).node
    home = node_channel(home_node)
    registry = pool.registry()
    nodes = [n for n in pool.live_nodes() if not n.get("draining") and n.get("channel")]
    if not nodes:
        return WatchPlacement(home_node, home, home)
    now = time.time()
    placed = _recently_placed(registry, [n["id"] for n in nodes], now)
    best = max(
        nodes,
        key=lambda n: (viewer_room(n) - placed[n["id"]], n["id"] == home_node, n["id"]),
    )
    _count_placed(registry, best["id"], now)
    return WatchPlacement(best["id"], best["channel"], home)

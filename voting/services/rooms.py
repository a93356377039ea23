"""A live room and its event log: the room of a hearing, the sequence numbers of its events."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from mediation_room.models import Hearing

from .. import broadcast
from ..models import (
    Comment,
    Room,
    RoomEvent,
)


def room_for_hearing(hearing: Hearing) -> Room:
    room = Room.objects.filter(hearing=hearing).first()
    if room is not None:
        return room
    try:
        with transaction.atomic():
            return Room.objects.create(hearing=hearing)
    except IntegrityError:  # created concurrently
        return Room.objects.get(hearing=hearing)


def room_seqs_reserve(room_id: int, count: int) -> int:
    """Advance the room's counter by `count` and return the new last value. The UPDATE takes the
    row lock, held until commit, so sequence numbers commit in order (one round trip)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE voting_room SET last_seq = last_seq + %s WHERE id = %s RETURNING last_seq",
            [count, room_id],
        )
        return cursor.fetchone()[0]


def room_events_append(
    room: Room, items: list[tuple[str, dict[str, Any]]], *, last_seq: int | None = None
) -> list[dict[str, Any]]:
    """Give each event the room's next sequence number, store it, and broadcast it on commit.

    Must run inside the caller's transaction. `last_seq` is for a caller that already advanced
    the counter by len(items) (to put the number on its own row too)."""
    if last_seq is None:
        last_seq = room_seqs_reserve(room.pk, len(items))
    now = timezone.now().isoformat()
    events = []
    rows = []
    seq = last_seq - len(items)
    for kind, payload in items:
        seq += 1
        event = {"seq": seq, "kind": kind, "at": now, **payload}
        events.append(event)
        rows.append(RoomEvent(room_id=room.pk, seq=seq, kind=kind, payload=event))
    RoomEvent.objects.bulk_create(rows)
    room_id = room.pk
    transaction.on_commit(lambda: broadcast.publish(room_id, events))
    return events


def room_offset_ms(room: Room) -> int:
    start = room.hearing.started_at or room.created_at
    return max(0, int((timezone.now() - start).total_seconds() * 1000))


def comment_event(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.pk,
        "nick": comment.nickname,
        "text": comment.text,
        "t": comment.offset_ms,
    }

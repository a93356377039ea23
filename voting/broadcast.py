"""Fan-out of room events: one encoding per batch, one group message per batch.

Who owns the batching: each server process keeps one small batcher per room, for the events that
were committed *in that process* (the comment's poster is connected to it). Nothing is shared
between processes except the sequence number, which the database assigns under the room's row
lock (so events commit in sequence order and `…/events?after=n` never skips one). Why per
process and not one elected owner per room: the poster's process already holds the committed
event in memory, so batching there costs no extra Redis round trip, needs no lock or leader
election, and a crashed process loses at most one unsent batch, which every client recovers
through the sequence gap and the HTTP catch-up. With several processes a room receives up to one
batch per process per window, and a client may see batches slightly out of order; it holds
early events briefly and fetches over HTTP only if the gap does not fill.

Each batch is encoded to JSON text once, by the sender; the group message carries that text and
every consumer forwards it unchanged (no per-connection encoding).

Receiving side: the members of a room's group are not the viewers' own channels but one hub
channel per process and room. The hub takes each batch off the layer once (one Redis message,
one decode) and hands the text to every local viewer's socket in one loop, instead of waking
2,000 consumer tasks through 2,000 queues for every batch.

The leading edge is sent at once (a quiet room has no batching delay); events that follow within
the window are held and sent together when it ends.

`VOTING_BROADCAST = "plain"` switches to the baseline the benchmark compares against: one
group_send per event with a dict payload, encoded by every consumer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from .protocol import events_frame

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_batchers: dict[int, RoomBatcher] = {}
_hubs: dict[int, RoomHub] = {}


def room_group(room_id: int) -> str:
    return f"live.{room_id}"


def batch_window() -> float:
    return getattr(settings, "VOTING_BATCH_MS", 120) / 1000


def mode() -> str:
    return getattr(settings, "VOTING_BROADCAST", "batched")


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Called by the consumer: this process's event loop hosts the batchers."""
    global _loop
    with _loop_lock:
        if _loop is not loop:
            _loop = loop
            _batchers.clear()
            _hubs.clear()


def _live_loop() -> asyncio.AbstractEventLoop | None:
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return None
    return loop


def group_message(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "room.frame",
        "text": events_frame(events),
        "first": events[0]["seq"],
        "last": events[-1]["seq"],
    }


class RoomBatcher:
    def __init__(self, room_id: int) -> None:
        self.room_id = room_id
        self.pending: list[dict[str, Any]] = []
        self.last_sent = 0.0
        self.timer: asyncio.TimerHandle | None = None
        # Batches leave in the order they were cut (Lock is first come, first served): two sends
        # in flight on different Redis connections could otherwise overtake each other.
        self.in_order = asyncio.Lock()

    def add(self, events: list[dict[str, Any]]) -> None:
        self.pending.extend(events)
        if self.timer is not None:
            return
        wait = self.last_sent + batch_window() - time.monotonic()
        if wait <= 0:
            self.flush()
        else:
            self.timer = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        self.timer = None
        if not self.pending:
            return
        events = sorted(self.pending, key=lambda e: e["seq"])
        self.pending = []
        self.last_sent = time.monotonic()
        task = asyncio.ensure_future(self._send(group_message(events)))
        task.add_done_callback(_log_failure)

    async def _send(self, message: dict[str, Any]) -> None:
        async with self.in_order:
            await _group_send(self.room_id, message)


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("room broadcast failed", exc_info=task.exception())


async def _group_send(room_id: int, message: dict[str, Any]) -> None:
    await get_channel_layer().group_send(room_group(room_id), message)


def _enqueue(room_id: int, events: list[dict[str, Any]]) -> None:
    batcher = _batchers.get(room_id)
    if batcher is None:
        batcher = _batchers[room_id] = RoomBatcher(room_id)
    batcher.add(events)


def publish(room_id: int, events: list[dict[str, Any]]) -> None:
    """Broadcast committed events (JSON-safe dicts with `seq`) to the room, from any thread.

    Call it from `transaction.on_commit`. In a server process the events join the room's batcher
    on the event loop; elsewhere (a Celery worker, a management command) they go out at once."""
    if not events:
        return
    if mode() == "plain":
        _publish_plain(room_id, events)
        return
    loop = _live_loop()
    if loop is not None:
        try:
            loop.call_soon_threadsafe(_enqueue, room_id, events)
            return
        except RuntimeError:  # the loop closed between the check and the call
            pass
    async_to_sync(_group_send)(room_id, group_message(events))


def _publish_plain(room_id: int, events: list[dict[str, Any]]) -> None:
    async def send() -> None:
        layer = get_channel_layer()
        for event in events:
            await layer.group_send(room_group(room_id), {"type": "room.event", "event": event})

    loop = _live_loop()
    if loop is not None:
        try:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(send()))
            return
        except RuntimeError:
            pass
    async_to_sync(send)()


def call_later(delay: float, func, *args: Any) -> bool:
    """Run the sync `func(*args)` about `delay` seconds from now in a worker thread of this
    process's event loop; False when there is no running loop (the caller uses Celery)."""
    from asgiref.sync import sync_to_async

    loop = _live_loop()
    if loop is None:
        return False

    def start() -> None:
        asyncio.ensure_future(sync_to_async(func, thread_sensitive=False)(*args)).add_done_callback(
            _log_failure
        )

    try:
        loop.call_soon_threadsafe(loop.call_later, delay, start)
    except RuntimeError:
        return False
    return True


# How often a hub compares what it delivered with the room's last seq in the database.
TAIL_CHECK_SECONDS = 2.0


class RoomHub:
    """This process's subscription to one room: one channel in the room's group, fanned out to
    the local consumers.

    Redis pub/sub keeps nothing for a subscriber that is reconnecting (Redis restarted): what was
    published meanwhile never arrives. Viewers see a gap and fill it once a later event comes, but
    nothing tells them about a lost *last* batch. So the hub checks the room's last seq now and
    then, and when it stays ahead of what the hub delivered, delivers the missing tail from the
    database (one query per process and room, whatever the number of viewers)."""

    def __init__(self, room_id: int) -> None:
        self.room_id = room_id
        self.members: set[Any] = set()
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        self.tail: asyncio.Task | None = None
        self.delivered = -1  # the highest seq handed to the local viewers; -1: not known yet
        self.ready = asyncio.Lock()

    async def join(self, consumer: Any) -> None:
        async with self.ready:
            if self.task is None or self.task.done():
                layer = get_channel_layer()
                self.channel = await layer.new_channel("hub.")
                await layer.group_add(room_group(self.room_id), self.channel)
                self.task = asyncio.ensure_future(self._run(layer, self.channel))
                self.tail = asyncio.ensure_future(self._watch_tail())
        self.members.add(consumer)

    async def leave(self, consumer: Any) -> None:
        self.members.discard(consumer)
        if self.members:
            return
        async with self.ready:
            if self.members or self.task is None:
                return
            task, channel = self.task, self.channel
            self.task = self.channel = None
            task.cancel()
            if self.tail is not None:
                self.tail.cancel()
                self.tail = None
            await get_channel_layer().group_discard(room_group(self.room_id), channel)

    async def _run(self, layer: Any, channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            await self._deliver(message)

    async def _deliver(self, message: dict[str, Any]) -> None:
        self.delivered = max(self.delivered, message.get("last", 0))
        for n, consumer in enumerate(list(self.members), start=1):
            try:
                await consumer.deliver(message)
            except Exception:  # one broken socket must not starve the others
                logger.exception("delivery to a viewer failed")
            if n % 200 == 0:
                # Let incoming comments and acks through between slices of a big room.
                await asyncio.sleep(0)

    async def _watch_tail(self) -> None:
        from channels.db import database_sync_to_async

        behind = False
        while True:
            await asyncio.sleep(TAIL_CHECK_SECONDS)
            try:
                last = await database_sync_to_async(_room_last_seq, thread_sensitive=False)(
                    self.room_id
                )
                if self.delivered < 0:
                    self.delivered = last  # nothing to catch up on from before this hub
                elif last <= self.delivered:
                    behind = False
                elif not behind:
                    behind = True  # maybe still on its way: look again next time
                else:
                    events = await database_sync_to_async(_events_after, thread_sensitive=False)(
                        self.room_id, self.delivered
                    )
                    if events:
                        await self._deliver(group_message(events))
                    behind = False
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: try again next time
                logger.exception("room tail check failed")


def _room_last_seq(room_id: int) -> int:
    from .models import Room

    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first() or 0


def _events_after(room_id: int, after: int) -> list[dict[str, Any]]:
    from .models import Room
    from .selectors import events_after

    return events_after(Room(pk=room_id), after)


async def hub_join(room_id: int, consumer: Any) -> None:
    hub = _hubs.get(room_id)
    if hub is None:
        hub = _hubs[room_id] = RoomHub(room_id)
    await hub.join(consumer)


async def hub_leave(room_id: int, consumer: Any) -> None:
    hub = _hubs.get(room_id)
    if hub is not None:
        await hub.leave(consumer)

"""Fan-out of room events: one group message per committed event, one encoding per frame.

Sending side: a committed event goes to the room's group at once, from the process that
committed it. Each process has one small sender queue per room, drained by one task, so events
leave a process in commit order; events that queue up while a send is in flight go out together
in the next message. The sequence number is assigned by the database under the room's row lock,
so events commit in sequence order and `…/events?after=n` never skips one.

Receiving side: the members of a room's group are not the viewers' own channels but one hub
channel per process and room. The hub takes each message off the layer once and batches at the
edge: the leading event of a quiet spell goes out at once, events that follow within the window
(`VOTING_BATCH_MS`) are held and sent together when it ends. A batch is encoded to JSON text once
and handed to every local viewer's socket in one loop, instead of waking 2,000 consumer tasks
through 2,000 queues for every event. Batching where the sockets are, not where the comments
arrive, keeps one frame per window per viewer however many server processes take comments.

Events from different processes can reach a hub slightly out of order; the hub sends the events
it has in sequence order and holds one that follows a gap for up to a window (the gap usually
fills meanwhile). A client that still sees a gap holds the early events briefly and fetches the
missing ones over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from cloudbench.metrics import observe_comment_delivery
from mediation_room.realtime import case_group

from .protocol import events_frame

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_senders: dict[int, RoomSender] = {}
_hubs: dict[int, RoomHub] = {}


def room_group(room_id: int) -> str:
    return f"live.{room_id}"


def batch_window() -> float:
    return settings.VOTING_BATCH_MS / 1000


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Called by the consumer: this process's event loop hosts the batchers."""
    global _loop
    with _loop_lock:
        if _loop is not loop:
            _loop = loop
            _senders.clear()
            _hubs.clear()


def _live_loop() -> asyncio.AbstractEventLoop | None:
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return None
    return loop


class RoomSender:
    """This process's queue of committed events for one room, sent in commit order."""

    def __init__(self, room_id: int) -> None:
        self.room_id = room_id
        self.pending: list[dict[str, Any]] = []
        self.task: asyncio.Task | None = None

    def add(self, events: list[dict[str, Any]]) -> None:
        self.pending.extend(events)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._drain())
            self.task.add_done_callback(_log_failure)

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while self.pending:
            # Commits in worker threads reach the loop in the order their callbacks ran, which
            # is not always the order of their seqs: what is queued goes out sorted.
            events, self.pending = sorted(self.pending, key=_seq), []
            await layer.group_send(room_group(self.room_id), events_message(events))


def _seq(event: dict[str, Any]) -> int:
    return event["seq"]


def events_message(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "room.events", "events": events}


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("room broadcast failed", exc_info=task.exception())


def _enqueue(room_id: int, events: list[dict[str, Any]]) -> None:
    sender = _senders.get(room_id)
    if sender is None:
        sender = _senders[room_id] = RoomSender(room_id)
    sender.add(events)


def publish(room_id: int, events: list[dict[str, Any]]) -> None:
    """Broadcast committed events (JSON-safe dicts with `seq`) to the room, from any thread.

    Call it from `transaction.on_commit`. In a server process the events join the room's batcher
    on the event loop; elsewhere (a Celery worker, a management command) they go out at once."""
    if not events:
        return
    loop = _live_loop()
    if loop is not None:
        try:
            loop.call_soon_threadsafe(_enqueue, room_id, events)
            return
        except RuntimeError:  # the loop closed between the check and the call
            pass
    async_to_sync(get_channel_layer().group_send)(room_group(room_id), events_message(events))


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


# Case events after which a hub checks whether its room is still public.
CONSENT_KINDS = ("consent_granted", "consent_withdrawn")
# How often a hub compares what it has with the room's last seq in the database.
TAIL_CHECK_SECONDS = 2.0
# How many sent seqs a hub remembers to drop a late repeat.
SENT_MEMORY = 10_000


class RoomHub:
    """This process's subscription to one room: one channel in the room's group, batched and
    fanned out to the local consumers.

    Redis pub/sub keeps nothing for a subscriber that is reconnecting (Redis restarted): what was
    published meanwhile never arrives. Viewers see a gap and fill it once a later event comes, but
    nothing would tell them about a lost *last* batch. So the hub compares the room's last seq
    with what it has every couple of seconds and, when the database stays ahead, takes the
    missing tail from there (one query per process and room, whatever the number of viewers)."""

    def __init__(self, room_id: int, case_id: int | None = None) -> None:
        self.room_id = room_id
        self.case_id = case_id
        self.members: set[Any] = set()
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        self.ready = asyncio.Lock()
        self.pending: dict[int, dict[str, Any]] = {}
        # The highest seq this hub has sent, or the room's last seq when it subscribed; None
        # until known (the database away at the start).
        self.sent_upto: int | None = None
        self.last_sent = 0.0
        self.gap_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.delivering = False
        self.tail: asyncio.Task | None = None
        # The seqs sent lately: an event the tail check took from the database may still arrive
        # through the layer afterwards, and must not go out twice.
        self.sent_recent: set[int] = set()
        self.sent_order: deque[int] = deque()
        # Deliveries to a socket: written straight (or skipped as a repeat) / through a consumer.
        self.direct = 0
        self.through_consumer = 0

    async def join(self, consumer: Any) -> None:
        async with self.ready:
            if self.task is None or self.task.done():
                layer = get_channel_layer()
                self.channel = await layer.new_channel("hub.")
                await layer.group_add(room_group(self.room_id), self.channel)
                if self.case_id is not None:
                    # consents given or withdrawn arrive here: the room may stop being public
                    await layer.group_add(case_group(self.case_id), self.channel)
                if self.sent_upto is None:
                    await self._read_start()
                self.task = asyncio.ensure_future(self._run(layer, self.channel))
                self.tail = asyncio.ensure_future(self._watch_tail())
        self.members.add(consumer)

    async def _read_start(self) -> None:
        """The room's last seq, read once subscribed: every later event arrives through the
        group, so the first one the hub sends is the one after it (an event that overtook its
        predecessor on the way waits for it, as after any gap)."""
        from channels.db import database_sync_to_async

        from .selectors import room_last_seq

        try:
            self.sent_upto = await database_sync_to_async(room_last_seq, thread_sensitive=False)(
                self.room_id
            )
        except Exception:  # the database away for a moment: the tail check sets it later
            logger.exception("reading the room's last seq failed")

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
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.pending.clear()
            # a later first viewer starts from the room's last seq read then
            self.sent_upto = None
            logger.info(
                "room %s: the last local viewer left; %d deliveries went straight to sockets, "
                "%d through consumers",
                self.room_id,
                self.direct,
                self.through_consumer,
            )
            layer = get_channel_layer()
            await layer.group_discard(room_group(self.room_id), channel)
            if self.case_id is not None:
                await layer.group_discard(case_group(self.case_id), channel)

    async def _run(self, layer: Any, channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == "case.update":
                if message.get("event", {}).get("kind") in CONSENT_KINDS:
                    asyncio.ensure_future(self._check_public()).add_done_callback(_log_failure)
                continue
            for event in message.get("events", ()):
                if event["seq"] not in self.sent_recent:
                    self.pending[event["seq"]] = event
            self._schedule()

    async def _check_public(self) -> None:
        """When the room is no longer public (a party withdrew their livestream consent), the
        viewers who are neither a member of the case nor a moderator are told and let go."""
        from channels.db import database_sync_to_async

        from .selectors import room_is_public_by_id

        if await database_sync_to_async(room_is_public_by_id, thread_sensitive=False)(self.room_id):
            return
        for consumer in list(self.members):
            try:
                await consumer.room_not_public()
            except Exception:
                logger.exception("closing a viewer's socket failed")

    def _has_upto(self) -> int:
        return max(self.sent_upto or 0, max(self.pending, default=0))

    async def _watch_tail(self) -> None:
        from channels.db import database_sync_to_async

        from .models import Room
        from .selectors import events_after, room_last_seq

        previous: int | None = None
        while True:
            await asyncio.sleep(TAIL_CHECK_SECONDS)
            try:
                last = await database_sync_to_async(room_last_seq, thread_sensitive=False)(
                    self.room_id
                )
                if self.sent_upto is None:
                    # The start was not read: what came before is each viewer's backlog.
                    self.sent_upto = last
                elif previous is not None and self._has_upto() < previous:
                    # Events committed a whole check ago have still not come: the layer lost
                    # them. (Events committed since then may simply be on their way.)
                    events = await database_sync_to_async(events_after, thread_sensitive=False)(
                        Room(pk=self.room_id), self.sent_upto or 0
                    )
                    for event in events:
                        if event["seq"] <= previous and event["seq"] not in self.sent_recent:
                            self.pending.setdefault(event["seq"], event)
                    self._schedule()
                previous = last
                # The consent message may have been lost (Redis restarting): check anyway.
                await self._check_public()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: try again next time
                logger.exception("room tail check failed")

    def _schedule(self) -> None:
        if self.timer is not None or not self.pending:
            return
        wait = self.last_sent + batch_window() - time.monotonic()
        if wait <= 0:
            self._flush()
        else:
            self.timer = asyncio.get_running_loop().call_later(wait, self._flush)

    def _flush(self) -> None:
        self.timer = None
        if not self.pending or self.delivering:
            # A frame still going out: what arrives meanwhile joins the next one, which the
            # delivery schedules when it ends (so frames never overtake each other).
            return
        seqs = sorted(self.pending)
        # Send the run that continues what was sent; an event after a gap waits up to a window
        # for the gap to fill, then goes anyway (the client fetches what is missing).
        now = time.monotonic()
        take = len(seqs)
        if self.sent_upto is not None and seqs[0] > self.sent_upto + 1:
            take = 0
        else:
            expected = seqs[0]
            for i, seq in enumerate(seqs):
                if seq != expected:
                    take = i
                    break
                expected += 1
        if take < len(seqs):
            if self.gap_since is None:
                self.gap_since = now
            if now - self.gap_since >= batch_window():
                take = len(seqs)
        if take == len(seqs):
            self.gap_since = None
        if take:
            events = [self.pending.pop(seq) for seq in seqs[:take]]
            self.sent_upto = max(self.sent_upto or 0, events[-1]["seq"])
            for event in events:
                self.sent_recent.add(event["seq"])
                self.sent_order.append(event["seq"])
            while len(self.sent_order) > SENT_MEMORY:
                self.sent_recent.discard(self.sent_order.popleft())
            self.last_sent = now
            task = asyncio.ensure_future(self._deliver(frame_message(events), events))
            task.add_done_callback(_log_failure)
        if self.pending:
            self.timer = asyncio.get_running_loop().call_later(batch_window(), self._flush)

    async def _deliver(self, message: dict[str, Any], events: list[dict[str, Any]] = ()) -> None:
        self.delivering = True
        try:
            # Sockets the server lets us write to directly take the frame prepared once, in one
            # loop with no await; the others (a viewer still catching up, a server without the
            # extension) go through their consumer's send.
            slow = []
            for consumer in list(self.members):
                try:
                    if consumer.deliver_now(message):
                        self.direct += 1
                    else:
                        slow.append(consumer)
                except Exception:  # one broken socket must not starve the others
                    logger.exception("delivery to a viewer failed")
            self.through_consumer += len(slow)
            for n, consumer in enumerate(slow, start=1):
                try:
                    await consumer.deliver(message)
                except Exception:
                    logger.exception("delivery to a viewer failed")
                if n % 200 == 0:
                    # Let incoming comments and acks through between slices of a big room.
                    await asyncio.sleep(0)
            if self.members:
                observe_comment_delivery(events)
        finally:
            self.delivering = False
            if self.timer is None:
                self._schedule()


def frame_message(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch as local consumers get it: the frame's text, encoded once, the ASGI message that
    sends it (shared by every socket), its seq range, and, once a socket asks for it, the frame
    prepared for writing straight to sockets."""
    text = events_frame(events)
    return {
        "text": text,
        "send": {"type": "websocket.send", "text": text},
        "prepared": None,
        "first": events[0]["seq"],
        "last": events[-1]["seq"],
    }


async def hub_join(room_id: int, consumer: Any, case_id: int | None = None) -> None:
    hub = _hubs.get(room_id)
    if hub is None:
        hub = _hubs[room_id] = RoomHub(room_id, case_id)
    await hub.join(consumer)


async def hub_leave(room_id: int, consumer: Any) -> None:
    hub = _hubs.get(room_id)
    if hub is not None:
        await hub.leave(consumer)

"""This node in the pool (``streaming.pool``): its lease, the rooms of dead nodes, and its drain.

Two threads of its own (the event loop can stall for a second under encoding load) and a loop
beside the node's channel worker:

- the lease thread keeps the node's named Redis connection open (``pool.open_presence``: reopened
  at once when Redis dropped it) and renews the lease every third of it with what the node carries
  (CPU, rooms held);
- the watch thread looks every ``MEDIA_NODE_PRESENCE_POLL_SECONDS`` for live nodes whose named
  connection is gone (``pool.vanished_nodes``); one missing two looks in a row died, and its lease
  is ended now (``pool.expire_node``) rather than when it lapses. Then it places again the rooms of
  nodes whose lease is gone (``pool.sweep``: every live node sweeps, placement is atomic, so each
  room moves once) and tells each such room's members to offer to its new node (``room.moved`` on
  the room's group) at once, from the thread (on an event loop of its own);
- the loop, every third of the lease: when the lease had lapsed (the node is new, or back after a
  Redis outage) it claims the rooms it still holds;
- lets go of what it should not hold: a room placed on another node (it lost its lease for a
  moment and the room moved) is handed over, a placement it never received (the member never
  came) is released;
- drains when asked (``medianode --drain <id>`` sets the flag in Redis, or SIGTERM/SIGUSR1 calls
  ``start_drain``): no new room is placed on it; its rooms move to other nodes one at a time, each
  one's members re-offering to the new node while this node keeps forwarding (make before break:
  until each member's page closes its old connection, once the new one carries media, or a grace
  period); the node stops when it holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from django.conf import settings

from streaming import pool
from streaming.plane import media_room_group, node_channel, room_moved_message, watch_group

from . import process

logger = logging.getLogger(__name__)

UNCLAIMED_SECONDS = 30.0
# how often the lease thread pings the node's named connection (and reopens it when it was lost)
PRESENCE_PING_SECONDS = 0.1


async def tell_moved(layer: Any, public_id: str, placement: pool.Placement, reason: str) -> None:
    """Tell the room's members, and its livestream's viewers, that the room is elsewhere now."""
    await layer.group_send(
        media_room_group(public_id),
        room_moved_message(placement.node, placement.moved_from, reason),
    )
    await layer.group_send(watch_group(public_id), {"type": "watch.moved", "node": placement.node})


def node_record(node_id: str, *, cpu: float, presence: str = "") -> dict[str, Any]:
    director = process.get_director()
    station = process.current_station()
    return pool.node_record(
        node_id,
        channel=node_channel(node_id),
        capacity=settings.MEDIA_NODE_CAPACITY,
        cpu=cpu,
        cpu_limit=settings.MEDIA_NODE_CPU_LIMIT,
        rooms_held=len(director.held_rooms()),
        address=settings.MEDIA_NODE_PUBLIC_ADDRESS,
        udp_ports=settings.MEDIA_NODE_UDP_PORTS,
        # where watch pages are placed (streaming.broadcast.services.watch_placement)
        viewer_capacity=settings.MEDIA_NODE_VIEWER_CAPACITY,
        webrtc_viewers=station.viewer_count if station is not None else 0,
        # the name of its Redis connection: gone from Redis, the node is gone
        presence=presence,
    )


class PoolMember:
    """The node's membership. The lease is renewed by a thread of its own, from the last record
    the event loop wrote: recording and livestream encoding can hold the loop for a second or
    more on a busy machine, and a lease that lapses then would move the node's rooms away from a
    node that is alive. ``kill -9`` ends the thread with the process."""

    def __init__(self, node_id: str, layer: Any, *, on_drained: Any = None) -> None:
        self.node_id = node_id
        self.layer = layer
        self.on_drained = on_drained
        self.draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._unclaimed: dict[str, float] = {}
        self._record: dict[str, Any] = {}
        self._presence = ""
        self._lapsed = threading.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._missing: set[str] = set()
        self._tells: set[Any] = set()
        self._tell_loop: asyncio.AbstractEventLoop | None = None

    def register_now(self) -> None:
        """Register before the first message can be routed here (blocking, round trips): the
        named connection first, so no other node ever finds the record without it."""
        self._presence = pool.open_presence(self.node_id)
        self._record = node_record(self.node_id, cpu=0.0, presence=self._presence)
        pool.register(self._record)

    def _renew_forever(self, interval: float) -> None:
        """Ping the named connection often (a connection Redis dropped is back before the other
        nodes look twice) and renew the lease every ``interval``."""
        ping = min(PRESENCE_PING_SECONDS, interval)
        renew_at = time.monotonic() + interval
        opened = pool.keep_present(self.node_id)
        while not self._stop.wait(ping):
            try:
                connects = pool.keep_present(self.node_id)
            except Exception:  # noqa: BLE001 - Redis away: the next ping tries again
                connects = -1
            # reopened: the other nodes may have ended the lease meanwhile; renew (and see) now
            reopened = connects >= 0 and connects != opened
            opened = connects if connects >= 0 else opened
            if not reopened and time.monotonic() < renew_at:
                continue
            renew_at = time.monotonic() + interval
            try:
                if not pool.register({**self._record, "at": time.time()}):
                    self._lapsed.set()
                    self._wake_soon()
            except Exception as exc:  # noqa: BLE001 - Redis away: the next renewal tries again
                logger.warning("media node %s: pool lease not renewed: %s", self.node_id, exc)

    def _wake_soon(self) -> None:
        """Have the loop's beat run now (from a thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(wake.set)

    def _watch_forever(self, poll: float) -> None:
        while not self._stop.wait(poll):
            try:
                self.watch()
            except Exception as exc:  # noqa: BLE001 - Redis away: the next look tries again
                logger.warning("media node %s: pool watch failed: %s", self.node_id, exc)

    def watch(self) -> list[tuple[str, pool.Placement]]:
        """One look (blocking, from the watch thread): end the lease of a node whose named
        connection is gone for the second look in a row, place again the rooms of nodes whose
        lease is gone, and have the event loop tell their members; the rooms moved."""
        vanished = set(pool.vanished_nodes(besides=self.node_id))
        for node_id in sorted(vanished & self._missing):
            if pool.expire_node(node_id):
                logger.info("media node %s: its Redis connection is gone; lease ended", node_id)
        self._missing = vanished - self._missing
        moved = pool.sweep(besides=self.node_id)
        for public_id, placement in moved:
            logger.info(
                "room %s: node %s is gone, placed on %s",
                public_id,
                placement.moved_from,
                placement.node,
            )
            self._tell(public_id, placement)
        return moved

    def _tell(self, public_id: str, placement: pool.Placement) -> None:
        """``room.moved`` from the watch thread: on an event loop of the thread's own with a Redis
        channel layer (its clients are per loop; the node's loop may lag a second under load),
        else on the node's loop."""
        message = tell_moved(self.layer, public_id, placement, "failover")
        if isinstance(pool.registry(), pool.RedisRegistry):
            if self._tell_loop is None:
                self._tell_loop = asyncio.new_event_loop()
            try:
                self._tell_loop.run_until_complete(message)
            except Exception as exc:  # noqa: BLE001 - Redis away: the web processes place it too
                logger.warning("room %s: room.moved not sent: %s", public_id, exc)
            return
        if self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(message, self._loop)
            self._tells.add(future)
            future.add_done_callback(self._told)
        else:
            message.close()

    def _told(self, future: Any) -> None:
        self._tells.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.warning(
                "media node %s: room.moved not sent: %s", self.node_id, future.exception()
            )

    async def run(self) -> None:
        import psutil

        proc = psutil.Process()
        proc.cpu_percent(None)
        interval = max(0.2, pool.lease_seconds() / 3)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if not self._record:
            await pool.acall(self.register_now)
        renewer = threading.Thread(
            target=self._renew_forever, args=(interval,), name="pool-lease", daemon=True
        )
        renewer.start()
        watcher = threading.Thread(
            target=self._watch_forever,
            args=(max(0.05, settings.MEDIA_NODE_PRESENCE_POLL_SECONDS),),
            name="pool-watch",
            daemon=True,
        )
        watcher.start()
        try:
            while True:
                started = time.monotonic()
                try:
                    await self.beat(proc.cpu_percent(None))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - Redis away: the next beat tries again
                    logger.warning("media node %s: pool beat failed: %s", self.node_id, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), max(0.05, interval - (time.monotonic() - started))
                    )
                self._wake.clear()
        finally:
            self._stop.set()
            self._loop = None
            if self._drain_task is not None:
                self._drain_task.cancel()

    async def beat(self, cpu: float) -> None:
        self._record = node_record(self.node_id, cpu=cpu, presence=self._presence)
        lapsed = self._lapsed.is_set()
        if lapsed:
            self._lapsed.clear()
            logger.info("media node %s: registered in the pool again", self.node_id)
        await self._keep_what_is_mine(reclaim=lapsed)
        if not self.draining and await pool.acall(pool.is_draining, self.node_id):
            self.start_drain()

    async def _keep_what_is_mine(self, *, reclaim: bool) -> None:
        director = process.get_director()
        held = director.held_rooms()
        placed = await pool.acall(pool.node_rooms, self.node_id)
        moving = self._drain_task is not None and not self._drain_task.done()
        for public_id in held - placed:
            owner = await pool.acall(pool.room_node, public_id)
            if not owner or reclaim:
                owner = await pool.acall(pool.claim_room, public_id, self.node_id)
            if owner != self.node_id and owner and not moving:
                logger.warning("room %s is on %s now: handing it over", public_id, owner)
                await director.hand_over(public_id)
        # A placement whose first member never came is let go after a while (members of a room
        # that moved here take a moment: their sockets read the database first).
        now = time.monotonic()
        for public_id in placed - held:
            since = self._unclaimed.setdefault(public_id, now)
            if now - since > UNCLAIMED_SECONDS:
                await pool.acall(pool.release_room, public_id, self.node_id)
        for public_id in list(self._unclaimed):
            if public_id not in placed or public_id in held:
                self._unclaimed.pop(public_id, None)

    # -- drain -------------------------------------------------------------------------------

    def start_drain(self) -> None:
        if self._drain_task is not None:
            return
        self.draining = True
        self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        logger.info("media node %s: draining", self.node_id)
        await pool.acall(pool.set_draining, self.node_id, True)
        director = process.get_director()
        grace = settings.MEDIA_NODE_MOVE_GRACE_SECONDS
        while True:
            rooms = sorted(director.held_rooms() | await pool.acall(pool.node_rooms, self.node_id))
            if not rooms:
                break
            for public_id in rooms:
                await self.move(public_id, grace=grace)
            await asyncio.sleep(0.2)
        logger.info("media node %s: drained, holds nothing", self.node_id)
        if self.on_drained is not None:
            self.on_drained()

    async def move(self, public_id: str, *, grace: float) -> bool:
        """Move one room to another node: its recording ends here (kept with its hash), its
        members are told to offer to the new node, and this node forwards their media until
        each has closed its connection here (its page has media from the new node) or
        ``grace`` s passed."""
        director = process.get_director()
        placement = await pool.acall(pool.move_room, public_id, self.node_id)
        if placement.node == self.node_id or not placement.node:
            if public_id not in director.held_rooms():
                await pool.acall(pool.release_room, public_id, self.node_id)
                return True
            logger.warning("room %s: no other node can take it yet", public_id)
            await asyncio.sleep(1.0)
            return False
        if public_id not in director.held_rooms():
            return True
        director.start_move(public_id)
        await director.finish_recording(public_id)
        await tell_moved(self.layer, public_id, placement, "drain")
        await director.wait_gone(public_id, grace)
        await director.hand_over(public_id)
        return True


async def stop_draining_flag(node_id: str) -> None:
    with contextlib.suppress(Exception):
        await pool.acall(pool.set_draining, node_id, False)

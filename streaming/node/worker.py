"""The media node's channel consumer and its worker: how ``room.*`` and ``broadcast.*`` messages
reach this process's director and station.

It runs in the media node process (``manage.py medianode``) or, in the embedded setup
(``MEDIA_NODE_INPROCESS``), as a task in the web process consuming the same channel
(``streaming.embedded``): one code path either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.consumer import AsyncConsumer
from channels.layers import get_channel_layer
from channels.routing import ChannelNameRouter
from channels.worker import Worker

from streaming import pool
from streaming.plane import node_channel

from . import process
from .broadcast.messages import BroadcastNodeMessages
from .director import RoomDirector

logger = logging.getLogger(__name__)

_worker_task: asyncio.Task[None] | None = None
_worker: NodeWorker | None = None

# What a node sends itself to learn that its channel is subscribed (never dispatched).
LISTENING_PROBE = "node.listening"
_background: set[asyncio.Task[Any]] = set()


class RoomNodeMessages:
    """Handlers of the ``room.*`` messages; mixed into the media node's channel consumer."""

    channel_layer: Any

    def _director(self) -> RoomDirector:
        return process.get_director()

    async def room_enter(self, message: dict[str, Any]) -> None:
        await self._director().enter(message)

    async def room_offer(self, message: dict[str, Any]) -> None:
        # an offer takes the node a moment (ICE gathering); other rooms need not wait for it
        director = self._director()
        task = asyncio.get_running_loop().create_task(director.offer(message))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def room_leave(self, message: dict[str, Any]) -> None:
        await self._director().leave(message)

    async def room_exit(self, message: dict[str, Any]) -> None:
        await self._director().exit(message)

    async def room_media(self, message: dict[str, Any]) -> None:
        await self._director().media(message)

    async def room_admit(self, message: dict[str, Any]) -> None:
        await self._director().admit(message)

    async def room_mute(self, message: dict[str, Any]) -> None:
        await self._director().mute(message)

    async def room_remove(self, message: dict[str, Any]) -> None:
        await self._director().remove(message)

    async def room_caucus(self, message: dict[str, Any]) -> None:
        await self._director().caucus(message)

    async def room_record(self, message: dict[str, Any]) -> None:
        await self._director().record(message)

    async def room_share(self, message: dict[str, Any]) -> None:
        await self._director().share(message)

    async def room_share_air(self, message: dict[str, Any]) -> None:
        await self._director().share_air(message)

    async def room_gone(self, message: dict[str, Any]) -> None:
        await self._director().gone(message)


class MediaNodeConsumer(RoomNodeMessages, BroadcastNodeMessages, AsyncConsumer):
    """The node channel's consumer (``manage.py medianode``): the rooms, and their
    livestreams (``broadcast.*``, see ``streaming.node.broadcast.messages``)."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        # One message that fails (a reply lost while Redis restarts, a malformed message) must not
        # end the consumer: the next message would start a new one, but the media sessions it
        # holds live on only as long as this process keeps taking messages.
        try:
            await super().dispatch(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("media node: %s failed", message.get("type", "?"))


class NodeWorker(Worker):
    """Channels' worker for the node's channel, that outlives the channel layer going
    away: a failed receive (Redis restarting) is retried instead of ending the listener, which
    would leave the node holding media sessions that no message reaches any more.

    Beside it run the node's heartbeat and its membership of the pool (``membership``: lease,
    failover sweeps, drain). ``pool_id``: the node's id in the pool (None: a worker outside the
    pool, on channels of the caller's choosing)."""

    def __init__(self, *args: Any, pool_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool_id = pool_id
        self.member: Any = None
        self.stopped = asyncio.Event()
        # set once a message sent to the node's channel reaches this worker: on the Redis
        # pub/sub layer a message sent before the channel is subscribed is lost, so the node
        # joins the pool (and rooms are routed to it) only after this
        self.listening = asyncio.Event()
        # set once the node listens and is in the pool (if it is a pool member)
        self.registered = asyncio.Event()

    async def arun(self) -> None:
        from .heartbeat import beat_forever
        from .membership import PoolMember
        from .showcase import ensure_showcase

        loop = asyncio.get_running_loop()
        serving = loop.create_task(super().arun())
        stopping = loop.create_task(self.stopped.wait())
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self._until_listening(serving)
            tasks.append(loop.create_task(beat_forever(self.pool_id)))
            if self.pool_id:
                self.member = PoolMember(
                    self.pool_id, self.channel_layer, on_drained=self.stopped.set
                )
                await pool.acall(self.member.register_now)
                tasks.append(loop.create_task(self.member.run()))
            self.registered.set()
            # the demo's showcase hearing gets its members as soon as the node that holds it runs
            tasks.append(
                loop.create_task(ensure_showcase(process.get_director(), node_id=self.pool_id))
            )
            await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()
        finally:
            for task in (*tasks, serving, stopping):
                task.cancel()
            for task in (*tasks, serving, stopping):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.pool_id:
                with contextlib.suppress(Exception):
                    await pool.acall(pool.unregister, self.pool_id)
                with contextlib.suppress(Exception):
                    await pool.acall(pool.close_presence, self.pool_id)

    async def _until_listening(self, serving: asyncio.Task[None]) -> None:
        """Send a probe to the node's own channels until one comes back (or serving ends)."""
        while not self.listening.is_set():
            if serving.done():
                serving.result()
                return
            for channel in self.channels:
                with contextlib.suppress(Exception):  # Redis away: the next probe tries again
                    await self.channel_layer.send(channel, {"type": LISTENING_PROBE})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.listening.wait(), 0.2)

    async def listener(self, channel: str) -> None:
        pause = 0.2
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever the layer's client raises
                logger.warning("media node: receiving failed (%s); retrying in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.2
            if message.get("type") == LISTENING_PROBE:
                self.listening.set()
                continue
            if not message.get("type"):
                logger.warning("media node: a message without a type was dropped")
                continue
            scope = {"type": "channel", "channel": channel}
            instance_queue = self.get_or_create_application_instance(channel, scope)
            await instance_queue.put(message)


def node_worker(node_id: str | None = None) -> NodeWorker:
    """The worker of this process's node: its own channel, named by its id in the pool."""
    node_id = node_id or pool.local_node_id()
    channel = node_channel(node_id)
    return NodeWorker(
        application=ChannelNameRouter({channel: MediaNodeConsumer.as_asgi()}),
        channels=[channel],
        channel_layer=get_channel_layer(),
        pool_id=node_id,
    )


async def ensure_inprocess_worker() -> None:
    """Consume the node's channel inside this process (the embedded setup, tests). Returns once
    the node listens on its channel and is in the pool: the caller's first message reaches it."""
    global _worker, _worker_task
    loop = asyncio.get_running_loop()
    if _worker_task is not None and not _worker_task.done() and _worker_task.get_loop() is not loop:
        # Left by an event loop that is gone (a test's scenario): its node, and the station
        # attached to it, cannot serve this one.
        process.forget_node()
        _worker_task = None
    if _worker_task is None or _worker_task.done():
        _worker = node_worker()
        _worker_task = loop.create_task(_worker.arun(), name="media-node-worker")
    worker, task = _worker, _worker_task
    assert worker is not None and task is not None
    registered = asyncio.ensure_future(worker.registered.wait())
    try:
        await asyncio.wait([registered, task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        registered.cancel()
    if task.done() and not worker.registered.is_set():
        task.result()


async def reset_media_node() -> None:
    """Stop the process's worker, its livestream station and its node (tests run each scenario
    in a fresh event loop)."""
    from .showcase import stop_showcase

    global _worker, _worker_task
    await stop_showcase()
    await process.reset_station()
    if _worker_task is not None:
        _worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await _worker_task
        _worker_task = None
    _worker = None
    await process.reset_node()

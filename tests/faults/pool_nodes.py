"""A pool of media node processes for tests and benchmarks, and room members that follow their
room from node to node as the room page does.

``NodeProcess``: ``manage.py medianode --id <id>`` in a process of its own, on the test's database,
Redis and channel prefix, that the test may kill (-9), drain or stop. ``FollowingMember``: a room
member (signaling through the real ``RoomConsumer`` in this process, media through an aiortc
peer) that, when the room moves and the new node says hello, makes a new offer, keeping the old
peer until the new one carries video; it counts the video frames it receives from every peer it had,
so a test can see how long it went without.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from tests.streaming.probe import ProbePeer, wait_until
from tests.streaming.room_client import RoomClient

MANAGE = Path(settings.BASE_DIR) / "manage.py"


class NodeProcess:
    def __init__(
        self,
        node_id: str,
        env: dict[str, str],
        log_dir: Path,
        *,
        capacity: int = 8,
    ) -> None:
        self.node_id = node_id
        self.capacity = capacity
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "MEDIA_NODE_INPROCESS": "0"}
        self.env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        self.log_path = log_dir / f"medianode-{node_id}.log"
        self.log = open(self.log_path, "a")  # noqa: SIM115
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(MANAGE),
                "medianode",
                "--id",
                self.node_id,
                "--capacity",
                str(self.capacity),
                "--public-address",
                "127.0.0.1",
            ],
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.alive:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")


def node_env(database_url: str, redis_url: str, prefix: str, media_root: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CHANNEL_PREFIX": prefix,
        "CACHE_PREFIX": prefix,
        "CELERY_EAGER": "1",
        "MEDIA_ROOT": str(media_root),
        "ICE_SERVERS": "[]",
        "ICE_HOST_ADDRESSES": "127.0.0.1",
        "MEDIA_NODE_LEASE_SECONDS": os.environ.get("TEST_POOL_LEASE_SECONDS", "3"),
        "MEDIA_NODE_MOVE_GRACE_SECONDS": "3",
        "MEDIA_NODE_HEARTBEAT_SECONDS": "2",
    }


def pool_layer(redis_url: str, prefix: str) -> dict:
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": prefix},
        }
    }


async def wait_for_nodes(node_ids: list[str], within: float = 120.0) -> None:
    from streaming import pool

    deadline = time.monotonic() + within
    while True:
        live = {n["id"] for n in await pool.acall(pool.live_nodes)}
        if set(node_ids) <= live:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nodes {sorted(set(node_ids) - live)} never registered")
        await asyncio.sleep(0.2)


def counting_decoder_worker(loop, input_q, output_q, decode_error) -> None:  # noqa: ANN001
    """Stands in for aiortc's decoder thread in the members (as in bench/room.py): completed
    frames are counted, not decoded, so a dozen rooms' members do not starve the nodes."""
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            return
        _, encoded_frame = task
        asyncio.run_coroutine_threadsafe(output_q.put(encoded_frame), loop)


def count_without_decoding(monkeypatch) -> None:  # noqa: ANN001
    import aiortc.rtcrtpreceiver

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "decoder_worker", counting_decoder_worker)


_loops: dict[str, tuple[list[bytes], list[bytes]]] = {}


async def video_loop(colour: str) -> tuple[list[bytes], list[bytes]]:
    """Pre-encoded VP8 frames of a colour (a keyframe a second): members send without encoding."""
    from streaming.node.media.synthetic import encode_video_loop

    if colour not in _loops:
        _loops[colour] = await encode_video_loop(
            colour, width=160, height=96, fps=10, frames=40, keyframe_interval=10
        )
    return _loops[colour]


# how long a member keeps its old peer at most once the new one is answered
OLD_PEER_SECONDS = 5.0


class FollowingMember(RoomClient):
    """A room member whose page offers again when its room moves to another node."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.peers: list[tuple[float, ProbePeer]] = []
        self.offers = 0
        self.moves = 0
        self._reoffer: asyncio.Task | None = None
        self.reoffer_errors: list[BaseException] = []
        # (time, what): the steps of following the room (``phases``)
        self.marks: list[tuple[float, str]] = []

    async def connect(self) -> None:
        # the consumer reads the database and the registry before it accepts: on a busy machine
        # that takes longer than the communicator's default second
        connected, _ = await self.communicator.connect(timeout=30)
        assert connected
        self._reader = asyncio.ensure_future(self._read())

    async def _new_peer(self) -> tuple[ProbePeer, str]:
        """A new peer and its offer."""
        from streaming.node.media.synthetic import EncodedVideoLoopTrack

        video = EncodedVideoLoopTrack(*await video_loop(self.colour), fps=10)
        peer = ProbePeer(video=video, tone=self.tone, analyse=False)
        self.peers.append((time.monotonic(), peer))

        @peer.pc.on("connectionstatechange")
        def _state() -> None:
            if peer.pc.connectionState == "connected":
                self.marks.append((time.monotonic(), "connected"))

        offer = await peer.offer()
        video.wire(next(s for s in peer.pc.getSenders() if s.track is video))
        return peer, offer

    async def _read(self) -> None:
        while True:
            output = await self.communicator.output_queue.get()
            if output["type"] == "websocket.close":
                self.closed = output.get("code", 1000)
                return
            frame = json.loads(output["text"])
            self.frames.append(frame)
            if frame["type"] in ("moved", "hello", "answer"):
                self.marks.append((time.monotonic(), frame["type"]))
            if frame["type"] in ("answer", "layout"):
                self.layout = frame.get("layout", frame.get("slots", []))
            elif frame["type"] == "moved":
                self.moves += 1
            elif frame["type"] == "hello" and self.peer is not None and self.moves:
                # the room page: a hello from the room's new node, an offer to it follows
                self._reoffer = asyncio.ensure_future(self.reoffer())

    async def join(self) -> dict:
        self.peer, offer = await self._new_peer()
        self.offers += 1
        ref = f"j{self.offers}"
        await self.send({"type": "join", "offer": offer, "ref": ref})
        answer = await self.expect("answer", within=30, ref=ref)
        await self.peer.accept(answer["sdp"])
        return answer

    async def reoffer(self) -> None:
        try:
            old = self.peer
            peer, offer = await self._new_peer()
            self.marks.append((time.monotonic(), "offer"))
            self.peer = peer
            self.offers += 1
            ref = f"r{self.offers}"
            await self.send({"type": "reconnect", "offer": offer, "ref": ref})
            answer = await self.expect("answer", within=30, ref=ref)
            await peer.accept(answer["sdp"])
            # make before break: the old peer goes once the new one carries video (the others
            # are on the new node too), or after a while (nobody else sends video)
            await wait_until(
                lambda: any(
                    s.kind == "video" and s.first_frame_at is not None
                    for s in peer.streams.values()
                ),
                within=OLD_PEER_SECONDS,
                step=0.05,
            )
            if old is not None:
                await old.close()
        except BaseException as exc:
            self.reoffer_errors.append(exc)
            raise

    def video_frames(self, *, since: float | None = None) -> int:
        """Video frames received on every peer this member had (made after ``since``)."""
        return sum(
            stream.frames
            for made, peer in self.peers
            if since is None or made >= since
            for stream in peer.streams.values()
            if stream.kind == "video"
        )

    async def close(self) -> None:
        if self._reoffer is not None:
            self._reoffer.cancel()
        for _, peer in self.peers:
            await peer.close()
        self.peer = None
        await super().close()


class FrameWatch:
    """Samples members' received video frame counts, to find the gaps they saw."""

    def __init__(self, members: list[FollowingMember], step: float = 0.05) -> None:
        self.members = members
        self.step = step
        self.samples: dict[int, list[tuple[float, int]]] = {id(m): [] for m in members}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            for member in self.members:
                self.samples[id(member)].append((now, member.video_frames()))
            await asyncio.sleep(self.step)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def longest_gap(self, member: FollowingMember, start: float, end: float) -> float:
        """The longest time within [start, end] the member's frame count stood still."""
        samples = [(t, n) for t, n in self.samples[id(member)] if start <= t <= end]
        if not samples:
            return end - start
        longest, last_change, last_count = 0.0, samples[0][0], samples[0][1]
        for t, n in samples[1:]:
            if n != last_count:
                longest = max(longest, t - last_change)
                last_change, last_count = t, n
        return max(longest, samples[-1][0] - last_change)


PHASES = ("moved", "hello", "offer", "answer", "connected", "frame")


def phases(member: FollowingMember, since: float) -> dict[str, float]:
    """Seconds from ``since`` to each step of the member following its room: the ``moved`` frame,
    the new node's ``hello``, its new offer made, the ``answer``, the new peer ``connected``, and
    its first video ``frame``."""
    out: dict[str, float] = {}
    for at, what in member.marks:
        if at >= since and what not in out:
            out[what] = at - since
    first = _first_video_frame_at(member, since)
    if first is not None:
        out["frame"] = first - since
    return out


def _first_video_frame_at(member: FollowingMember, since: float) -> float | None:
    """When the first video frame arrived on a peer the member made at or after ``since``."""
    return min(
        (
            stream.first_frame_at
            for made, peer in member.peers
            if made >= since
            for stream in peer.streams.values()
            if stream.kind == "video" and stream.first_frame_at is not None
        ),
        default=None,
    )


async def first_frame_after(member: FollowingMember, since: float, within: float) -> float | None:
    """Seconds from ``since`` to the first video frame on a peer made after it, or None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        first = _first_video_frame_at(member, since)
        if first is not None:
            return first - since
        await asyncio.sleep(0.02)
    return None

"""The media plane as a pool of nodes (streaming.pool): rooms over 1, 2 and 3 node processes,
failover after ``kill -9``, drain. Prints figures; not a test.

Each section is a function in ``SECTIONS`` taking the shared ``Cluster`` (a throwaway test
database, Redis, node processes started on demand) and printing its own lines; add a section by
adding a function there.

    rooms     rooms of two members (160x96 video at 10 fps + audio each) added in steps on 1, 2
              and 3 nodes; the most rooms held with >= 97 % of the expected video frames
              delivered, and each node's CPU per room (% of one core)
    failover  N kills (-9) of the node of a room; per member of the killed node's rooms, the
              time from the kill to the first video frame from the new node: p50 / p95 / max;
              and where it goes: the median time from the kill to each step of the member
              following its room (moved, hello, offer, answer, connected, frame)
    drain     a node holding rooms drained (``medianode --drain``); per room, the longest time
              any of its members went without a video frame
    viewers   one livestream's viewers over 1, 2 and 3 nodes, the home node encoding once and
              relaying to the others: CPU per viewer on each node (bench/cluster_viewers.py)
    model     nodes of 2, 8 and 32 cores for 50 hearings, 20 livestreamed to 10,000 viewers each,
              from the measured costs (assumptions in docs/operations.md)

The members are aiortc peers in this process: on a small machine they share the CPU with the
nodes they measure, so "rooms held" is a floor for what the nodes carry.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cb_bench REDIS_URL=redis://127.0.0.1:6379/2 \\
    CELERY_EAGER=1 python bench/cluster.py [--sections rooms failover drain] [--kills 20]

It owns its Redis database while it runs: a test run on the same database clears it (the tests'
cache reset) and takes the pool's registry with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")

from cluster_viewers import add_section_arguments, section_model, section_viewers  # noqa: E402
from loopback import keep_media_on_loopback  # noqa: E402

EXPECTED_FPS = 10  # the members' video (tests.faults.pool_nodes.FollowingMember)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Cluster:
    """Node processes on the bench's database and Redis, and hearings to put in rooms."""

    def __init__(self, workdir: Path, database_url: str, redis_url: str) -> None:
        from django.conf import settings

        from tests.faults.pool_nodes import node_env, pool_layer

        self.workdir = workdir
        self.prefix = f"cluster-{uuid.uuid4().hex[:6]}"
        self.media_root = workdir / "media"
        self.media_root.mkdir(parents=True, exist_ok=True)
        settings.CHANNEL_LAYERS = pool_layer(redis_url, self.prefix)
        settings.MEDIA_NODE_INPROCESS = False
        settings.MEDIA_ROOT = self.media_root
        settings.ICE_SERVERS = []
        self.env = node_env(database_url, redis_url, self.prefix, self.media_root)
        self.nodes: dict[str, object] = {}
        self._count = 0

    def start_node(self, node_id: str, capacity: int = 32):
        from tests.faults.pool_nodes import NodeProcess

        node = NodeProcess(node_id, self.env, self.workdir, capacity=capacity)
        self.nodes[node_id] = node
        return node

    async def start_nodes(self, ids: list[str]) -> None:
        from tests.faults.pool_nodes import wait_for_nodes

        for node_id in ids:
            if node_id not in self.nodes or not self.nodes[node_id].alive:
                self.start_node(node_id)
        await wait_for_nodes(ids, within=120)

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.nodes.clear()
        from streaming import pool

        reg = pool.registry()
        if isinstance(reg, pool.RedisRegistry):
            keys = reg.client.keys(f"{reg.prefix}:*")
            if keys:
                reg.client.delete(*keys)

    async def hearing(self) -> dict:
        from asgiref.sync import sync_to_async

        return await sync_to_async(_make_hearing)()

    async def open_room(self) -> tuple:
        from tests.faults.test_media_pool import open_room

        room = await self.hearing()
        expert, party = await open_room(room)
        await expert.join()
        await party.join()
        return room["hearing"].public_id, (expert, party)


def _make_hearing() -> dict:
    from tests.faults.test_media_pool import make_hearing

    return make_hearing()


async def close_members(rooms: dict) -> None:
    for pair in rooms.values():
        for member in pair:
            await member.close()


async def delivered(members: list, seconds: float) -> float:
    """Video frames the members received in ``seconds`` as a share of what was sent to them."""
    before = [m.video_frames() for m in members]
    await asyncio.sleep(seconds)
    got = sum(m.video_frames() - b for m, b in zip(members, before, strict=True))
    return got / (len(members) * EXPECTED_FPS * seconds)


# -- sections ----------------------------------------------------------------------------------


async def section_rooms(cluster: Cluster, args: argparse.Namespace) -> None:
    import psutil

    from streaming import pool

    print("rooms held (>= 97 % of video frames delivered), 2 members per room")
    for count in args.nodes:
        ids = [f"r{count}-{i}" for i in range(count)]
        await cluster.start_nodes(ids)
        procs = {i: psutil.Process(cluster.nodes[i].process.pid) for i in ids}
        rooms: dict = {}
        held, figures = 0, ""
        try:
            while len(rooms) < args.max_rooms:
                for _ in range(args.step):
                    public_id, pair = await cluster.open_room()
                    rooms[public_id] = pair
                members = [m for pair in rooms.values() for m in pair]
                await asyncio.sleep(3.0)  # settle: first keyframes, bandwidth estimates
                for proc in procs.values():
                    proc.cpu_percent(None)
                share = await delivered(members, args.seconds)
                cpu = {i: p.cpu_percent(None) for i, p in procs.items()}
                per_node = {i: len(pool.node_rooms(i)) for i in ids}
                per_room = [cpu[i] / per_node[i] for i in ids if per_node[i]]
                print(
                    f"  {count} node(s), {len(rooms):2d} rooms: delivered {share:6.1%}, "
                    f"rooms per node {sorted(per_node.values())}, CPU per room per node "
                    f"{' '.join(f'{c:.1f}%' for c in per_room)}, load {os.getloadavg()[0]:.1f}"
                )
                if share < 0.97:
                    break
                held = len(rooms)
                figures = " ".join(f"{c:.1f}%" for c in per_room)
        finally:
            await close_members(rooms)
            cluster.stop_all()
        print(f"=> {count} node(s): {held} rooms held; CPU per room per node: {figures}")


async def section_failover(cluster: Cluster, args: argparse.Namespace) -> None:
    from streaming import pool
    from tests.faults.pool_nodes import PHASES, first_frame_after, phases, wait_for_nodes

    ids = ["f0", "f1", "f2"]
    await cluster.start_nodes(ids)
    rooms: dict = {}
    times: list[float] = []
    steps: dict[str, list[float]] = {name: [] for name in PHASES}
    misses = 0
    try:
        for _ in range(args.failover_rooms):
            public_id, pair = await cluster.open_room()
            rooms[public_id] = pair
        await asyncio.sleep(3.0)
        for kill in range(args.kills):
            target = sorted(rooms)[kill % len(rooms)]
            victim_id = pool.room_node(target)
            victim = cluster.nodes[victim_id]
            affected = [pid for pid in rooms if pool.room_node(pid) == victim_id]
            killed_at = time.monotonic()
            victim.kill()
            got = []
            for pid in affected:
                for member in rooms[pid]:
                    got.append(await first_frame_after(member, killed_at, within=20))
            misses += sum(1 for g in got if g is None)
            times.extend(g for g in got if g is not None)
            for pid in affected:
                for member in rooms[pid]:
                    for name, at in phases(member, killed_at).items():
                        steps[name].append(at)
            print(
                f"  kill {kill + 1}: {victim_id} ({len(affected)} rooms): "
                f"{' '.join(f'{g:.2f}' if g is not None else 'none' for g in got)} s"
            )
            victim.start()
            await wait_for_nodes(ids, within=120)
            await asyncio.sleep(1.0)
    finally:
        await close_members(rooms)
        cluster.stop_all()
    print(
        f"=> failover, {args.kills} kills, {len(times)} member recoveries: kill to first frame "
        f"p50 {pct(times, 50):.2f} s, p95 {pct(times, 95):.2f} s, max {max(times):.2f} s "
        f"(target p95 < 3 s); members without media after 20 s: {misses}"
    )
    print(
        "   where the time goes, kill to each step (median): "
        + ", ".join(f"{name} {pct(steps[name], 50):.2f} s" for name in PHASES)
    )


async def section_drain(cluster: Cluster, args: argparse.Namespace) -> None:
    from streaming import pool
    from tests.faults.pool_nodes import MANAGE, FrameWatch

    ids = ["d0", "d1"]
    await cluster.start_nodes(ids)
    rooms: dict = {}
    try:
        for _ in range(args.drain_rooms):
            public_id, pair = await cluster.open_room()
            rooms[public_id] = pair
        await asyncio.sleep(3.0)
        moving = [pid for pid in rooms if pool.room_node(pid) == "d0"]
        watch = FrameWatch([m for pair in rooms.values() for m in pair])
        watch.start()
        began = time.monotonic()
        command = await asyncio.create_subprocess_exec(
            *(sys.executable, str(MANAGE), "medianode", "--drain", "d0", "--wait", "120"),
            env=cluster.nodes["d0"].env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        await command.wait()
        await asyncio.to_thread(cluster.nodes["d0"].wait, 60)
        ended = time.monotonic()
        await asyncio.sleep(1.5)
        await watch.stop()
        gaps = []
        for pid in moving:
            gap = max(watch.longest_gap(m, began, ended + 1.0) for m in rooms[pid])
            gaps.append(gap)
            print(f"  room {pid}: longest gap {gap:.2f} s")
    finally:
        await close_members(rooms)
        cluster.stop_all()
    if not moving:
        print(f"=> drain: none of the {len(rooms)} rooms was on d0, so none moved")
        return
    print(
        f"=> drain of {len(moving)} rooms in {ended - began:.1f} s: longest gap per room "
        f"p50 {pct(gaps, 50):.2f} s, max {max(gaps):.2f} s (target < 1 s)"
    )


SECTIONS = {
    "rooms": section_rooms,
    "failover": section_failover,
    "drain": section_drain,
    # bench/cluster_viewers.py: viewers over 1, 2, 3 nodes, and the capacity model
    "viewers": section_viewers,
    "model": section_model,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--nodes", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--step", type=int, default=2, help="rooms added per step")
    parser.add_argument("--max-rooms", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window per step")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--failover-rooms", type=int, default=3)
    parser.add_argument("--drain-rooms", type=int, default=4)
    add_section_arguments(parser)  # viewers, model
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures as they come, also into a file

    keep_media_on_loopback()
    import django

    django.setup()
    import aiortc.rtcrtpreceiver

    from tests.faults.pool_nodes import counting_decoder_worker

    # the members count frames without decoding them (as bench/room.py), and send pre-encoded
    # video (tests.faults.pool_nodes.FollowingMember): the CPU measured is the nodes'
    aiortc.rtcrtpreceiver.decoder_worker = counting_decoder_worker
    from asgiref.sync import async_to_sync
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    from tests.e2e.conftest import _database_url
    from tests.template_db import end_other_connections

    if not settings.REDIS_URL:
        raise SystemExit("bench/cluster.py needs REDIS_URL (the pool lives in Redis)")
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    cluster = Cluster(workdir, _database_url(), settings.REDIS_URL)
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, node logs in {workdir}")
    try:
        for name in args.sections:
            async_to_sync(SECTIONS[name])(cluster, args)
    finally:
        cluster.stop_all()
        end_other_connections(connection)  # those of the threads that ran the sections' queries
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()

"""A long live session under faults: members in the room, viewers, comments, and restarts.

3 members (aiortc peers) in the mediation room, V viewers each holding the live comment socket
(/ws/live/) and the watch socket (/ws/watch/), and R comments a second from 20 posters, for the
duration, against the production layout: the web server as `cloudbench.serve` runs it (two
daphne processes on one socket) and the media node in its own process. Meanwhile the web server
is killed (SIGKILL, every process) and started again twice, and Redis (this benchmark's own redis-server, never the machine's shared
one) is stopped for 5 seconds once. Every client reconnects by itself, as the pages do: the
comment clients behave as live.js (tests/faults/live_client.py), the members as room.js.

Prints comments lost and shown twice (per viewer, over every comment the server acknowledged),
viewers that did not come back, the longest time any viewer was without a socket, the longest
silence between two comments any viewer saw, and whether the members got their media back.
Target: 0 lost, 0 twice, 0 not back, longest gap under 10 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cb_bench_soak \\
    .venv/bin/python bench/soak.py [--duration 600] [--viewers 300] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

import comments  # noqa: E402  bench/comments.py: database, server and fixture helpers

POSTERS = 20
REDIS_DOWN = 5.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of posting")
    p.add_argument("--viewers", type=int, default=300)
    p.add_argument("--rate", type=float, default=20.0, help="comments per second, all posters")
    p.add_argument("--clients", type=int, default=2, help="processes for the viewers")
    p.add_argument("--drain", type=float, default=30.0, help="seconds allowed for stragglers")
    p.add_argument("--port", type=int, default=8767)
    p.add_argument("--processes", type=int, default=2, help="daphne processes of the web server")
    p.add_argument("--redis-port", type=int, default=6391)
    return p.parse_args()


def soak_env(redis_url: str) -> None:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cb_bench_soak")
    os.environ["REDIS_URL"] = redis_url
    os.environ["MEDIA_NODE_INPROCESS"] = "0"  # the media node is its own process
    os.environ["ICE_SERVERS"] = "[]"
    os.environ.update(comments.env())


def start_media_node() -> subprocess.Popen:
    """The media node as production runs it: its own process on the channel layer (the web
    processes do not start one). A web restart does not restart it."""
    log = open("/tmp/bench-soak-media.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "manage.py", "medianode"],
        cwd=ROOT,
        env={**comments.env(), "MEDIA_NODE_INPROCESS": "0"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def members_and_cookies(room: str) -> dict[str, str]:
    """Signed-in sessions for the hearing's mediator and both parties."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from mediation_room.models import Hearing

    hearing = Hearing.objects.select_related("case").get(public_id=room)
    case = hearing.case
    people = {"expert": case.expert}
    for party in case.parties.select_related("user"):
        people[party.role] = party.user
    cookies = {}
    for role, user in people.items():
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        cookies[role] = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
    return cookies


def room_last_seq(room: str) -> int:
    from mediation_room.models import Hearing
    from voting.services import room_for_hearing

    return room_for_hearing(Hearing.objects.get(public_id=room)).last_seq


# --- viewers (separate processes) -------------------------------------------------------------


class WatchClient:
    """Holds /ws/watch/ open as watch.js does, reopening it with backoff."""

    def __init__(self, base: str, room: str) -> None:
        self.url = base.replace("http://", "ws://") + f"/ws/watch/{room}/"
        self.origin = base
        self.up = False
        self.down_since: float | None = time.monotonic()
        self.connects = 0
        self.longest_gap = 0.0
        self.failures: list[str] = []
        self.stopping = False

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        retry = 0.5
        while not self.stopping:
            try:
                async with connect(
                    self.url, origin=self.origin, ping_interval=5, ping_timeout=10, open_timeout=10
                ) as ws:
                    self.ws = ws
                    async for raw in ws:
                        if json.loads(raw).get("type") == "watch.state" and not self.up:
                            retry = 0.5
                            self.connects += 1
                            if self.connects > 1 and self.down_since is not None:
                                gap = time.monotonic() - self.down_since
                                self.longest_gap = max(self.longest_gap, gap)
                            self.up, self.down_since = True, None
            except (OSError, TimeoutError, WebSocketException):
                pass
            except Exception as exc:  # anything else: say so, and reconnect as the page would
                self.failures.append(repr(exc))
            if self.stopping:
                break
            if self.up:
                self.up, self.down_since = False, time.monotonic()
            await asyncio.sleep(retry * (0.5 + random.random()))  # jitter, as watch.js
            retry = min(retry * 2, 2.0)

    async def stop(self) -> None:
        self.stopping = True
        with contextlib.suppress(Exception):
            await self.ws.close()


def viewers_main(cfg: dict, count: int, ready, go, results) -> None:
    try:
        results.put(asyncio.run(_viewers(cfg, count, ready, go)))
    except BaseException as exc:  # report, don't hang the parent
        results.put({"error": repr(exc)})
        raise


async def _viewers(cfg: dict, count: int, ready, go) -> dict:
    from tests.faults.live_client import LiveClient

    live = [LiveClient(cfg["base"], cfg["room"], after=cfg["after"]) for _ in range(count)]
    watch = [WatchClient(cfg["base"], cfg["room"]) for _ in range(count)]
    tasks = []
    for n in range(count):
        tasks += [asyncio.ensure_future(live[n].run()), asyncio.ensure_future(watch[n].run())]
        if n % 20 == 19:
            await asyncio.sleep(0.2)  # join in waves, not all in one instant
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in live)), 300)
    ready.put(count)
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    for c in [*live, *watch]:
        await c.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "viewers": [
            {
                "shown": dict(c.shown),
                "live_back": c.connected.is_set(),
                "watch_back": w.up,
                "gap": max(c.longest_gap, w.longest_gap),
                "live_gap": c.longest_gap,
                "watch_gap": w.longest_gap,
                "failures": w.failures,
                "silence": c.longest_silence,
                "drops": c.drops,
            }
            for c, w in zip(live, watch, strict=True)
        ]
    }


# --- members ----------------------------------------------------------------------------------


class Member:
    """A room member as room.js: reopens the signaling socket, re-offers media after each hello."""

    def __init__(self, base: str, room: str, role: str, cookie: str) -> None:
        self.url = base.replace("http://", "ws://") + f"/ws/room/{room}/"
        self.origin = base
        self.role = role
        self.cookie = cookie
        self.peer = None
        self.joins = 0
        self.offers = 0
        self.ref: str | None = None
        self.failures: list[str] = []
        self.last = ""
        self.stopping = False

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        from streaming.media.probe import ProbePeer
        from streaming.protocol import VERSION

        while not self.stopping:
            try:
                async with connect(
                    self.url,
                    origin=self.origin,
                    additional_headers={"Cookie": self.cookie},
                    ping_interval=5,
                    ping_timeout=10,
                    open_timeout=10,
                    max_size=2**22,
                ) as ws:
                    self.ws = ws
                    async for raw in ws:
                        frame = json.loads(raw)
                        kind = frame.get("type")
                        if kind in ("hello", "waiting", "admitted", "answer", "error"):
                            self.last = kind if kind != "hello" else f"hello:{frame['admitted']}"
                        if (kind == "hello" and frame.get("admitted")) or kind == "admitted":
                            await self._close_peer()
                            self.peer = ProbePeer(analyse=False, slots=3, width=160, height=90)
                            offer = await self.peer.offer()
                            self.offers += 1
                            self.ref = f"join-{self.offers}"
                            await ws.send(
                                json.dumps(
                                    {"v": VERSION, "type": "join", "offer": offer, "ref": self.ref}
                                )
                            )
                        elif (
                            kind == "answer"
                            and self.peer is not None
                            and frame.get("ref") == self.ref
                            and self.peer.pc.signalingState == "have-local-offer"
                        ):
                            # (as room.js: an answer to an older offer is not for this peer)
                            await self.peer.accept(frame["sdp"])
                            self.joins += 1
                        elif kind == "lobby":
                            for waiting in frame.get("waiting", []):
                                await ws.send(
                                    json.dumps(
                                        {"v": VERSION, "type": "admit", "member": waiting["id"]}
                                    )
                                )
            except (OSError, TimeoutError, WebSocketException):
                pass
            except Exception as exc:  # anything else: say so, and reconnect as the page would
                self.failures.append(repr(exc))
            if not self.stopping:
                await asyncio.sleep(0.5)

    def frames(self) -> int:
        if self.peer is None:
            return 0
        return sum(s.frames for s in self.peer.streams.values())

    def connected(self) -> bool:
        return self.peer is not None and self.peer.pc.connectionState == "connected"

    async def _close_peer(self) -> None:
        if self.peer is not None:
            with contextlib.suppress(Exception):
                await self.peer.close()
            self.peer = None

    async def stop(self) -> None:
        self.stopping = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self._close_peer()


# --- the run ----------------------------------------------------------------------------------


async def session(args, cfg, cookies, members_cookies, redis, ready, procs: int, go) -> dict:
    from tests.faults.live_client import LiveClient

    base = cfg["base"]
    members = [Member(base, cfg["room"], r, c) for r, c in members_cookies.items()]
    posters = [LiveClient(base, cfg["room"], cookie=c, after=cfg["after"]) for c in cookies]
    tasks = [asyncio.ensure_future(x.run()) for x in [*members, *posters]]
    await asyncio.gather(*(p.connected.wait() for p in posters))
    loop = asyncio.get_running_loop()
    for _ in range(procs):
        await loop.run_in_executor(None, ready.get)
    print(f"all clients connected; load average {os.getloadavg()[0]:.1f}", flush=True)

    server = cfg["server"]
    start = time.monotonic()
    # the faults, at these shares of the duration
    faults = [(0.25, "web"), (0.45, "redis"), (0.70, "web")]
    schedule = [(start + share * args.duration, kind) for share, kind in faults]

    async def inject() -> None:
        for at, kind in schedule:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            t = time.monotonic() - start
            if kind == "web":
                print(f"{t:6.1f} s  web process killed and started again", flush=True)
                comments.stop_server(server[0], kill=True)
                server[0] = await loop.run_in_executor(
                    None, comments.start_server, "batched", args.port, args.processes
                )
            else:
                print(f"{t:6.1f} s  Redis stopped for {REDIS_DOWN:g} s", flush=True)
                await loop.run_in_executor(None, redis.stop)
                await asyncio.sleep(REDIS_DOWN)
                await loop.run_in_executor(None, redis.start)

    faults_task = asyncio.ensure_future(inject())

    async def progress() -> None:
        while True:
            await asyncio.sleep(10)
            up = sum(p.connected.is_set() for p in posters)
            errors = [e for p in posters for e in p.errors if e["type"] == "client"]
            print(
                f"{time.monotonic() - start:6.1f} s  posters connected {up}/{len(posters)}, "
                f"members {[(m.joins, m.last, m.connected()) for m in members]}, "
                f"load {os.getloadavg()[0]:.1f} {errors[-1:]}",
                flush=True,
            )

    progress_task = asyncio.ensure_future(progress())
    interval = 1.0 / args.rate
    n = 0
    while True:
        at = start + n * interval
        if at >= start + args.duration:
            break
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        poster = posters[n % len(posters)]
        await poster.post(f"soak-{n:08d}", f"soak {n}")
        n += 1
    await faults_task
    progress_task.cancel()
    give_up = time.monotonic() + args.drain
    while any(p.outbox for p in posters) and time.monotonic() < give_up:
        await asyncio.sleep(1.0)
        for p in posters:
            await p.resend_unacked()
    # let the last comments reach every viewer, and the members show their media
    frames_before = [m.frames() for m in members]
    await asyncio.sleep(5.0)
    media_back = [m.connected() for m in members]
    # frames each member received from the others in those 5 s
    media_flowing = [m.frames() - before for m, before in zip(members, frames_before, strict=True)]
    go.set()
    for x in [*members, *posters]:
        await x.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    acked = {cid for p in posters for cid in p.acked}
    return {
        "posted": n,
        "acked": acked,
        "unacked": sum(len(p.outbox) for p in posters),
        "media_back": media_back,
        "member_joins": [m.joins for m in members],
        "media_flowing": media_flowing,
        "member_failures": [f for m in members for f in m.failures],
    }


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cb-soak-"))
    from tests.faults.redis_server import PrivateRedis

    redis = PrivateRedis(workdir, args.redis_port)
    try:
        soak_env(redis.url())
        comments.ensure_database(os.environ["DATABASE_URL"])
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=ROOT,
            env=comments.env(),
            check=True,
        )
        fixture = comments.prepare(POSTERS)
        members_cookies = members_and_cookies(fixture["room"])
        after = room_last_seq(fixture["room"])
        from django.db import connection

        connection.close()
        print(
            f"bench/soak.py: {args.duration:g} s, 3 members, {args.viewers} viewers, "
            f"{args.rate:g} comments/s; the web process restarts twice and Redis once; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        media = start_media_node()
        server = [comments.start_server("batched", args.port, args.processes)]
        base = f"http://127.0.0.1:{args.port}"
        cfg = {"base": base, "room": fixture["room"], "after": after}
        ctx = mp.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        share = [
            args.viewers // args.clients + (1 if i < args.viewers % args.clients else 0)
            for i in range(args.clients)
        ]
        procs = [
            ctx.Process(target=viewers_main, args=(cfg, count, ready, go, results))
            for count in share
        ]
        for proc in procs:
            proc.start()
        try:
            out = asyncio.run(
                session(
                    args,
                    {**cfg, "server": server},
                    fixture["cookies"],
                    members_cookies,
                    redis,
                    ready,
                    len(procs),
                    go,
                )
            )
            parts = [results.get(timeout=300) for _ in procs]
            for proc in procs:
                proc.join(timeout=30)
        finally:
            comments.stop_server(server[0])
            media.terminate()
            try:
                media.wait(timeout=10)
            except subprocess.TimeoutExpired:
                media.kill()
    finally:
        redis.stop()
    errors = [p["error"] for p in parts if "error" in p]
    if errors:
        raise SystemExit("viewer process failed: " + "; ".join(errors))
    report(out, [v for p in parts for v in p["viewers"]])


def report(out: dict, viewers: list[dict]) -> None:
    acked_texts = {f"soak {int(cid.split('-')[1])}" for cid in out["acked"]}
    lost = dup = 0
    for v in viewers:
        shown = v["shown"]
        lost += sum(1 for t in acked_texts if t not in shown)
        dup += sum(n - 1 for n in shown.values() if n > 1)
    not_back = sum(1 for v in viewers if not (v["live_back"] and v["watch_back"]))
    live_not_back = sum(1 for v in viewers if not v["live_back"])
    watch_not_back = sum(1 for v in viewers if not v["watch_back"])
    gap = max((v["gap"] for v in viewers), default=0.0)
    silence = max((v["silence"] for v in viewers), default=0.0)
    print(f"\n== soak: {len(viewers)} viewers, {out['posted']} comments posted ==")
    print(f"  comments acknowledged          {len(out['acked'])} ({out['unacked']} never)")
    print(f"  comments lost                  {lost}   (viewer x comment)")
    print(f"  comments shown twice           {dup}")
    print(
        f"  viewers that did not come back {not_back}   (comment socket: {live_not_back}, "
        f"watch socket: {watch_not_back})"
    )
    live_gap = max((v["live_gap"] for v in viewers), default=0.0)
    watch_gap = max((v["watch_gap"] for v in viewers), default=0.0)
    print(
        f"  longest gap any viewer saw     {gap:.1f} s without a socket "
        f"(comment socket {live_gap:.1f} s, watch socket {watch_gap:.1f} s)"
    )
    failures = [f for v in viewers for f in v["failures"]]
    if failures:
        print(f"  watch client failures          {len(failures)}: {failures[:3]}")
    print(f"  longest silence between two comments at a viewer  {silence:.1f} s")
    print(
        f"  members connected at the end   {sum(out['media_back'])} of {len(out['media_back'])}"
        f" (media joins each: {out['member_joins']}; frames received in the last 5 s each:"
        f" {out['media_flowing']})"
    )
    if out["member_failures"]:
        print(f"  member client failures         {out['member_failures'][:5]}")
    print("  machine load average           {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()

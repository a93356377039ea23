"""A long live session under faults: members in the room, viewers, comments, and restarts.

3 members (aiortc peers) in the mediation room, V viewers each holding the live comment socket
(/ws/live/) and the watch socket (/ws/watch/), and R comments a second from 20 posters, for the
duration, against the production layout: the web server as `cloudbench.serve` runs it (two
daphne processes on one socket, with their standbys) and the media node in its own process.
Meanwhile every web process that serves is killed (SIGKILL) twice, as a crash would (serve
puts its standbys in their place, or starts new ones), Redis (this benchmark's own
redis-server, never the machine's shared one) is stopped for 5 seconds once, and the web
processes are replaced once, as a deploy does (SIGHUP to serve). Every client
reconnects by itself, as the pages do: the comment and watch clients behave as live.js and
watch.js (tests/faults/live_client.py), the members as room.js.

Prints comments lost and shown twice (per viewer, over every comment the server acknowledged),
viewers that did not come back, for each fault the distribution of per-viewer gaps (time
without a working socket: p50 / p95 / max), the longest silence between two comments any viewer
saw, and whether the members got their media back. serve's log (with the times each process
started, was ready, took over, drained) is server-batched.log in the run's log directory, which
is printed at the start.
Target: 0 lost, 0 twice, 0 not back, longest gap under 10 s after a crash, under 2 s in a deploy.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cb_bench_soak \\
    .venv/bin/python bench/soak.py [--duration 600] [--viewers 300] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

import comments  # noqa: E402  bench/comments.py: database, server and fixture helpers
from loopback import keep_media_on_loopback  # noqa: E402

POSTERS = 20
REDIS_DOWN = 5.0
# the faults, at these shares of the duration
FAULTS = [(0.2, "crash"), (0.4, "redis"), (0.6, "crash"), (0.8, "deploy")]
FAULT_NAMES = {
    "crash": "every web process killed",
    "redis": "Redis stopped",
    "deploy": "rolling restart",
}


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
    log = open(comments.log_dir() / "media-node.log", "wb")  # noqa: SIM115
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
    from voting.services.rooms import room_for_hearing

    return room_for_hearing(Hearing.objects.get(public_id=room)).last_seq


def serving_web_processes(server: subprocess.Popen, port: int) -> list[int]:
    """The daphne processes under serve that hold connections on the port (not the standbys)."""
    import psutil

    pids = []
    for child in psutil.Process(server.pid).children():
        try:
            if "cloudbench.webserver" in child.cmdline() and any(
                c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
                for c in child.net_connections(kind="tcp")
            ):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def wait_for_standbys(count: int) -> None:
    """serve starts its standbys once the processes that serve are ready: the crashes are
    meant to find them ready, as in a server that has been up for a while."""
    give_up = time.monotonic() + 300
    while time.monotonic() < give_up:
        lines = comments.server_log("batched").read_text(errors="replace").splitlines()
        if sum("standby (pid" in line and "ready after" in line for line in lines) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"the standbys did not start: see {comments.server_log('batched')}")


async def finish(tasks: list[asyncio.Future], within: float = 60.0) -> None:
    """Wait for the clients' loops to end after stop(); cancel those still running after
    ``within`` (a socket stuck in its closing handshake must not hold up the report)."""
    _done, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        task.cancel()
    if pending:
        print(f"{len(pending)} client loops still running after stop(): cancelled", flush=True)
        await asyncio.gather(*pending, return_exceptions=True)


# --- viewers (separate processes) -------------------------------------------------------------


def viewers_main(cfg: dict, count: int, ready, go, results) -> None:
    try:
        results.put(asyncio.run(_viewers(cfg, count, ready, go)))
    except BaseException as exc:  # report, don't hang the parent
        results.put({"error": repr(exc)})
        raise


async def _viewers(cfg: dict, count: int, ready, go) -> dict:
    from tests.faults.live_client import LiveClient, WatchClient

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
    # together: one at a time, each close waiting for a busy server, takes minutes
    await asyncio.gather(*(c.stop() for c in [*live, *watch]))
    await finish(tasks)
    return {
        "viewers": [
            {
                # numbers, not texts: 300 viewers' copies of 12,000 texts is a pickle that a
                # busy machine takes minutes to pass between processes
                "shown": sorted(int(text.split()[1]) for text in c.shown),
                "twice": sum(n - 1 for n in c.shown.values() if n > 1),
                "live_back": c.connected.is_set(),
                "watch_back": w.up,
                "gap": max(c.longest_gap, w.longest_gap),
                "live_gap": c.longest_gap,
                "watch_gap": w.longest_gap,
                "live_gaps": c.gaps,
                "watch_gaps": w.gaps,
                "live_phases": c.phases,
                "watch_phases": w.phases,
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
        self.ws = None

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        from cloudbench.serve import CLOSE_RESTART
        from streaming.protocol import VERSION
        from tests.faults.live_client import OPEN_TIMEOUT
        from tests.streaming.probe import ProbePeer

        while not self.stopping:
            self.ws = None
            try:
                async with connect(
                    self.url,
                    origin=self.origin,
                    additional_headers={"Cookie": self.cookie},
                    ping_interval=5,
                    ping_timeout=10,
                    open_timeout=OPEN_TIMEOUT,
                    max_size=2**22,
                ) as ws:
                    self.ws = ws
                    if self.stopping:
                        break  # stop() came while this socket was opening: nothing else closes it
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
            code = self.ws.close_code if self.ws is not None else None
            if not self.stopping and code != CLOSE_RESTART:  # restart code: at once, as room.js
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
    schedule = [(start + share * args.duration, kind) for share, kind in FAULTS]
    injected: list[tuple[float, str]] = []

    async def inject() -> None:
        for at, kind in schedule:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            t = time.monotonic() - start
            injected.append((time.monotonic(), kind))
            if kind == "crash":
                pids = serving_web_processes(server[0], args.port)
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                print(f"{t:6.1f} s  every web process that serves killed: {pids}", flush=True)
            elif kind == "deploy":
                os.kill(server[0].pid, signal.SIGHUP)
                print(f"{t:6.1f} s  rolling restart (SIGHUP to serve)", flush=True)
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
    await asyncio.gather(*(x.stop() for x in [*members, *posters]))
    await finish(tasks)
    acked = {cid for p in posters for cid in p.acked}
    return {
        "faults": injected,
        "posted": n,
        "acked": acked,
        "unacked": sum(len(p.outbox) for p in posters),
        "media_back": media_back,
        "member_joins": [m.joins for m in members],
        "media_flowing": media_flowing,
        "member_failures": [f for m in members for f in m.failures],
    }


def main() -> None:
    keep_media_on_loopback()  # the members here; the node process inherits ICE_HOST_ADDRESSES
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
        print("$ " + " ".join([sys.executable, *sys.argv]), flush=True)
        print(
            f"bench/soak.py: {args.duration:g} s, 3 members, {args.viewers} viewers, "
            f"{args.rate:g} comments/s; every web process is killed twice, Redis stopped "
            f"once, the web processes replaced once as in a deploy; {os.cpu_count()} CPUs, "
            "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()),
            flush=True,
        )
        media = start_media_node()
        server = [comments.start_server("batched", args.port, args.processes)]
        wait_for_standbys(args.processes)
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
            parts = [results.get(timeout=900) for _ in procs]
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


def spread(values: list[float]) -> str:
    if not values:
        return "no gap"
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return f"{q(0.5):.1f} / {q(0.95):.1f} / {ordered[-1]:.1f}, {len(ordered)}"


def report(out: dict, viewers: list[dict]) -> None:
    acked = {int(cid.split("-")[1]) for cid in out["acked"]}
    lost = dup = 0
    for v in viewers:
        lost += len(acked - set(v["shown"]))
        dup += v["twice"]
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
    print("  per-viewer gaps after each fault (s without a socket: p50 / p95 / max, viewers):")
    faults = out["faults"]
    for i, (at, kind) in enumerate(faults):
        until = faults[i + 1][0] if i + 1 < len(faults) else math.inf
        row = {}
        for key in ("live_gaps", "watch_gaps", None):
            worst = []
            for v in viewers:
                gaps = v["live_gaps"] + v["watch_gaps"] if key is None else v[key]
                within = [b - a for a, b in gaps if at - 0.5 <= a < until]
                if within:
                    worst.append(max(within))
            row[key] = worst
        print(
            f"    {FAULT_NAMES[kind]:<26} {spread(row[None])} "
            f"(comment socket {spread(row['live_gaps'])}; watch socket {spread(row['watch_gaps'])})"
        )
    print(
        "  where the gaps went (s from the drop to the last attempt's opening handshake, then to"
        " the greeting: p50 / p95 / max; attempts: p50 / max):"
    )
    for i, (at, kind) in enumerate(faults):
        until = faults[i + 1][0] if i + 1 < len(faults) else math.inf
        for key, name in (("live_phases", "comment"), ("watch_phases", "watch")):
            rows = [
                ph for v in viewers for ph in v[key] if at - 0.5 <= ph[0] < until and ph[2] >= ph[0]
            ]
            if not rows:
                continue
            attempts = sorted(r[1] for r in rows)
            print(
                f"    {FAULT_NAMES[kind]:<26} {name:<7} open {spread([r[2] - r[0] for r in rows])}"
                f"; greeted {spread([r[3] - r[2] for r in rows])}"
                f"; attempts {attempts[len(attempts) // 2]} / {attempts[-1]}"
            )
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

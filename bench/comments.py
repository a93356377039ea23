"""Live comments under load: N viewers in one room, K comments a second from 20 posters.

Starts the real server (daphne + the Redis channel layer, PostgreSQL in its own database),
connects the viewers, posts for the duration, and prints delivery latency p50/p95/p99,
deliveries per second, lost and duplicated comments, and the server's CPU and memory. Then the
same load against the baseline (one plain group_send per comment, Channels' default
RedisChannelLayer, each consumer encoding every event) and the ratio.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cb_bench_comments \\
    REDIS_URL=redis://127.0.0.1:6379/6 \\
    .venv/bin/python bench/comments.py [--viewers 2000] [--rate 50] [--posters 20] [--duration 60]

Latency is measured from the poster's send to a viewer's receipt, both on this machine's clock.
A comment counts as lost for a viewer when the server acknowledged it as shown and the viewer
never received it over its socket (the HTTP catch-up is not used here, so this is the raw
socket delivery).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HIST_MS = 60_000  # latency histogram: 1 ms buckets up to a minute


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--viewers", type=int, default=2000)
    p.add_argument("--rate", type=float, default=50.0, help="comments per second, all posters")
    p.add_argument("--posters", type=int, default=20)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of posting")
    p.add_argument("--drain", type=float, default=5.0, help="seconds to wait for stragglers")
    p.add_argument("--clients", type=int, default=2, help="client processes for the viewers")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--processes", type=int, default=2, help="daphne processes of the web server (one per core)"
    )
    p.add_argument("--modes", default="batched,plain", help="batched, plain or both")
    return p.parse_args()


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cb_bench_comments")
    e.setdefault("REDIS_URL", "redis://127.0.0.1:6379/6")
    e["CHANNEL_PREFIX"] = "benchcomments"
    e["CACHE_PREFIX"] = "benchcomments"
    e["CELERY_EAGER"] = "1"
    # Persistent database connections, as in production: a new connection per query batch
    # would cost more than the comment itself.
    e.setdefault("DB_CONN_MAX_AGE", "60")
    e["DJANGO_SETTINGS_MODULE"] = "bench_settings"
    e["PYTHONPATH"] = f"{ROOT / 'bench'}:{ROOT}"
    return e


# --- fixtures in the bench database -------------------------------------------------------------


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def prepare(posters: int) -> dict:
    """A live hearing every party agreed to stream, and signed-in sessions for the posters."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from tests.factories import (
        CommunityFactory,
        StreetFactory,
        UserFactory,
        advance,
        make_case,
        make_coordinator,
        make_expert,
    )

    # Each run adds its own people and room to the bench database; start the factories'
    # numbering where no earlier run can have been.
    stamp = int(time.time()) % 10**6 * 100
    for factory in (UserFactory, StreetFactory, CommunityFactory):
        factory.reset_sequence(stamp)
    community = CommunityFactory()

    def user():
        return UserFactory()

    case = make_case(community=community, applicant=user(), respondent=user())
    hearing = advance(
        case, "in_session", coordinator=make_coordinator(community), expert=make_expert()
    )
    cookies = []
    for _ in range(posters):
        u = user()
        session = SessionStore()
        session[SESSION_KEY] = str(u.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = u.get_session_auth_hash()
        session.create()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return {"room": hearing.public_id, "cookies": cookies}


# --- the server ----------------------------------------------------------------------------------


@functools.cache
def log_dir() -> Path:
    """This run's directory for the logs of the processes it starts (two runs never share a
    file); printed when it is made."""
    path = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    print(f"logs of the server processes in {path}", flush=True)
    return path


def server_log(mode: str) -> Path:
    return log_dir() / f"server-{mode}.log"


def start_server(mode: str, port: int, processes: int) -> subprocess.Popen:
    """The web server as production runs it: `cloudbench.serve` with `processes` daphne
    processes on one listening socket."""
    e = env()
    e["BENCH_MODE"] = mode
    # The server's output goes to a file: a pipe nobody reads fills up and blocks the server.
    log = open(server_log(mode), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudbench.serve",
            "--workers",
            str(processes),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            *(["--application", "plain_broadcast:application"] if mode == "plain" else []),
            "--",
            "-v",
            "0",
        ],
        cwd=ROOT,
        env=e,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # stop_server ends the launcher and its daphne processes together
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(2)  # every process is accepting, not only the first
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(Path(log.name).read_text()[-3000:]) from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the web server did not start")


def stop_server(server: subprocess.Popen, *, kill: bool = False) -> None:
    """Stop the web server: SIGTERM (or SIGKILL, a crash) to the launcher and its processes."""
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def server_cpu_seconds(server: subprocess.Popen) -> float:
    import psutil

    total = 0.0
    for p in [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def server_rss(server: subprocess.Popen) -> int:
    import psutil

    total = 0
    for p in psutil.Process(server.pid).children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


# --- the clients (separate processes) --------------------------------------------------------------


def client_main(index: int, cfg: dict, ready, go, go_at, results) -> None:
    try:
        results.put(asyncio.run(_client(index, cfg, ready, go, go_at)))
    except BaseException as exc:  # report, don't hang the parent
        results.put({"error": f"client {index}: {exc!r}"})
        raise


async def _client(index: int, cfg: dict, ready, go, go_at) -> dict:
    import psutil
    import wsclient
    from websockets.asyncio.client import connect

    path = f"/ws/live/{cfg['room']}/"
    uri = f"ws://127.0.0.1:{cfg['port']}{path}"
    origin = f"http://127.0.0.1:{cfg['port']}"
    n_viewers = cfg["viewers"][index]
    my_posters = [p for p in range(cfg["posters"]) if p % cfg["clients"] == index]
    slots = cfg["slots"]
    per_viewer_counts = [bytearray(slots) for _ in range(n_viewers)]
    hist = [0] * (HIST_MS + 1)
    # the same latency split at the moment the server stored the comment (the event's "at")
    hist_store = [0] * (HIST_MS + 1)
    hist_fanout = [0] * (HIST_MS + 1)
    at_cache: dict[str, float] = {}
    state = {
        "deliveries": 0,
        "frames": 0,
        "seq_gaps": 0,
        "errors": 0,
        "connect_failures": 0,
        "last_connect_error": "",
    }
    acked: list[int] = []
    sem = asyncio.Semaphore(50)
    stop = asyncio.Event()

    async def viewer(v: int, opened: asyncio.Event) -> None:
        counts = per_viewer_counts[v]
        last_seq = None
        welcomed = asyncio.Event()

        def on_text(raw: str) -> None:
            nonlocal last_seq
            now = time.time()
            frame = json.loads(raw)
            if last_seq is None:  # the welcome
                last_seq = frame["seq"]
                welcomed.set()
                return
            state["frames"] += 1
            if frame.get("type") != "events":
                return
            for event in frame["events"]:
                if event["seq"] != last_seq + 1:
                    state["seq_gaps"] += 1
                last_seq = max(last_seq, event["seq"])
                if event["kind"] != "comment":
                    continue
                _tag, slot, sent = event["text"].split(" ", 2)
                counts[int(slot)] += 1
                ms = int((now - float(sent)) * 1000)
                hist[min(max(ms, 0), HIST_MS)] += 1
                at = event.get("at")
                if at:
                    stored = at_cache.get(at)
                    if stored is None:
                        stored = at_cache[at] = datetime.fromisoformat(at).timestamp()
                    store_ms = int((stored - float(sent)) * 1000)
                    hist_store[min(max(store_ms, 0), HIST_MS)] += 1
                    fan_ms = int((now - stored) * 1000)
                    hist_fanout[min(max(fan_ms, 0), HIST_MS)] += 1
                state["deliveries"] += 1

        try:
            async with sem:
                # A hard limit on the whole join, so one stuck handshake cannot hold up the run.
                ws = await asyncio.wait_for(
                    wsclient.connect("127.0.0.1", cfg["port"], path, origin, on_text), timeout=150
                )
                await asyncio.wait_for(welcomed.wait(), timeout=60)
        except Exception as exc:  # counted and reported; the run goes on without this viewer
            state["connect_failures"] += 1
            state["last_connect_error"] = repr(exc)[:200]
            opened.set()
            return
        opened.set()
        try:
            await stop.wait()
        finally:
            await ws.close()

    async def poster(p: int) -> None:
        ws = await connect(
            uri,
            origin=origin,
            compression=None,
            additional_headers={"Cookie": cfg["cookies"][p]},
            max_size=2**22,
            ping_interval=None,
            open_timeout=60,
        )
        json.loads(await ws.recv())  # welcome

        async def read_acks() -> None:
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "comment.ack" and frame["state"] == "visible":
                    acked.append(int(frame["client_id"].split("-")[1]))
                elif frame["type"] == "error":
                    state["errors"] += 1

        reader = asyncio.ensure_future(read_acks())
        interval = cfg["posters"] / cfg["rate"]
        start = cfg["go_at"] + p / cfg["rate"]
        k = 0
        while True:
            at = start + k * interval
            if at >= cfg["go_at"] + cfg["duration"]:
                break
            await asyncio.sleep(max(0.0, at - time.time()))
            slot = k * cfg["posters"] + p
            text = f"bench {slot} {time.time():.6f}"
            await ws.send(
                json.dumps({"v": 1, "type": "comment", "client_id": f"b-{slot:08d}", "text": text})
            )
            k += 1
        await asyncio.sleep(cfg["drain"])
        reader.cancel()
        await ws.close()

    opened = [asyncio.Event() for _ in range(n_viewers)]
    viewer_tasks = [asyncio.ensure_future(viewer(v, opened[v])) for v in range(n_viewers)]
    await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), timeout=600)
    print(
        f"client {index}: {n_viewers - state['connect_failures']} of {n_viewers} viewers connected "
        f"{state['last_connect_error']}",
        file=sys.stderr,
        flush=True,
    )
    ready.put(index)
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    cfg["go_at"] = go_at.value
    me = psutil.Process()
    cpu0 = me.cpu_times()
    await asyncio.gather(*(poster(p) for p in my_posters))
    if not my_posters:
        await asyncio.sleep(max(0.0, cfg["go_at"] + cfg["duration"] + cfg["drain"] - time.time()))
    cpu1 = me.cpu_times()
    stop.set()
    await asyncio.gather(*viewer_tasks, return_exceptions=True)
    return {
        "hist": hist,
        "hist_store": hist_store,
        "hist_fanout": hist_fanout,
        "counts": [bytes(c) for c in per_viewer_counts],
        "acked": acked,
        "cpu": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        **state,
    }


# --- one run -------------------------------------------------------------------------------------------


def percentile(hist: list[int], q: float) -> float:
    total = sum(hist)
    if not total:
        return float("nan")
    target = q * total
    running = 0
    for ms, n in enumerate(hist):
        running += n
        if running >= target:
            return float(ms)
    return float(HIST_MS)


def run(mode: str, args: argparse.Namespace, fixture: dict) -> dict:

    server = start_server(mode, args.port, args.processes)
    try:
        share = [
            args.viewers // args.clients + (1 if i < args.viewers % args.clients else 0)
            for i in range(args.clients)
        ]
        per_poster = int(args.rate * args.duration / args.posters) + 2
        cfg = {
            "port": args.port,
            "room": fixture["room"],
            "cookies": fixture["cookies"],
            "viewers": share,
            "posters": args.posters,
            "clients": args.clients,
            "rate": args.rate,
            "duration": args.duration,
            "drain": args.drain,
            "slots": per_poster * args.posters,
            "go_at": 0.0,
        }
        ctx = mp.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        go_at = ctx.Value("d", 0.0)
        t_connect = time.time()
        procs = [
            ctx.Process(target=client_main, args=(i, cfg, ready, go, go_at, results))
            for i in range(args.clients)
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=900)
        connect_s = time.time() - t_connect
        rss_idle = server_rss(server)
        # Every poster schedules from the same start time, half a second from now.
        go_at.value = time.time() + 0.5
        cpu0 = server_cpu_seconds(server)
        wall0 = time.time()
        go.set()
        rss_peak = rss_idle
        end = time.time() + args.duration + args.drain + 1.5
        while time.time() < end:
            rss_peak = max(rss_peak, server_rss(server))
            time.sleep(0.5)
        outs = [results.get(timeout=120) for _ in procs]
        cpu1 = server_cpu_seconds(server)
        wall = time.time() - wall0
        for proc in procs:
            proc.join(timeout=30)
    finally:
        stop_server(server)
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError("; ".join(errors))
    hist = [sum(col) for col in zip(*(o["hist"] for o in outs), strict=True)]
    hist_store = [sum(col) for col in zip(*(o["hist_store"] for o in outs), strict=True)]
    hist_fanout = [sum(col) for col in zip(*(o["hist_fanout"] for o in outs), strict=True)]
    acked = sorted(slot for o in outs for slot in o["acked"])
    lost = dup = 0
    for o in outs:
        for counts in o["counts"]:
            for slot in acked:
                c = counts[slot]
                if c == 0:
                    lost += 1
                elif c > 1:
                    dup += c - 1
    deliveries = sum(o["deliveries"] for o in outs)
    server_cpu = cpu1 - cpu0
    return {
        "mode": mode,
        "viewers": args.viewers,
        "connect_s": connect_s,
        "posted": len(acked),
        "expected": len(acked) * args.viewers,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / args.duration,
        "frames": sum(o["frames"] for o in outs),
        "p50": percentile(hist, 0.50),
        "p95": percentile(hist, 0.95),
        "p99": percentile(hist, 0.99),
        "max": float(max((ms for ms, n in enumerate(hist) if n), default=0)),
        "store_p50": percentile(hist_store, 0.50),
        "store_p99": percentile(hist_store, 0.99),
        "fanout_p50": percentile(hist_fanout, 0.50),
        "fanout_p99": percentile(hist_fanout, 0.99),
        "lost": lost,
        "duplicated": dup,
        "seq_gaps": sum(o["seq_gaps"] for o in outs),
        "connect_failures": sum(o["connect_failures"] for o in outs),
        "load": os.getloadavg(),
        "post_errors": sum(o["errors"] for o in outs),
        "server_cpu_pct": 100 * server_cpu / wall,
        "server_rss_mb": rss_peak / 2**20,
        "server_rss_idle_mb": rss_idle / 2**20,
        "client_cpu_s": sum(o["cpu"] for o in outs),
    }


def show(r: dict) -> None:
    print(f"\n== {r['mode']}: {r['viewers']} viewers, {r['posted']} comments shown ==")
    print(f"  connect all viewers      {r['connect_s']:.1f} s ({r['connect_failures']} failed)")
    print(
        f"  latency p50/p95/p99/max  {r['p50']:.0f} / {r['p95']:.0f} / {r['p99']:.0f} / {r['max']:.0f} ms"
    )
    print(
        f"    of which post → stored p50/p99 {r['store_p50']:.0f} / {r['store_p99']:.0f} ms, "
        f"stored → viewer p50/p99 {r['fanout_p50']:.0f} / {r['fanout_p99']:.0f} ms"
    )
    print(
        f"  deliveries               {r['deliveries']} of {r['expected']} ({r['deliveries_per_s']:.0f}/s, {r['frames']} frames)"
    )
    print(
        f"  lost / duplicated        {r['lost']} / {r['duplicated']}   (sequence gaps seen: {r['seq_gaps']}, post errors: {r['post_errors']})"
    )
    print(f"  server CPU               {r['server_cpu_pct']:.0f}% of one core (all processes)")
    print(
        f"  server memory            {r['server_rss_mb']:.0f} MB peak ({r['server_rss_idle_mb']:.0f} MB with viewers idle)"
    )
    print(f"  client CPU               {r['client_cpu_s']:.1f} s over the run")
    print("  machine load average     {:.1f} {:.1f} {:.1f}".format(*r["load"]))


def main() -> None:
    args = parse_args()
    os.environ.update(env())
    sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
    ensure_database(os.environ["DATABASE_URL"])
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=env(),
        check=True,
    )
    print(
        f"bench/comments.py: {args.viewers} viewers, {args.rate:g} comments/s from {args.posters} "
        f"posters for {args.duration:g} s; server: {args.processes} daphne processes "
        f"(cloudbench.serve), {os.cpu_count()} CPUs"
    )
    results = []
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        fixture = prepare(args.posters)
        r = run(mode, args, fixture)
        show(r)
        results.append(r)
    if len(results) == 2:
        a, b = results
        print("\n== batched vs plain ==")
        print(f"  p99 latency              {b['p99'] / max(a['p99'], 1):.1f}x lower")
        print(
            f"  server CPU               {b['server_cpu_pct'] / max(a['server_cpu_pct'], 1):.1f}x less"
        )
        print(f"  lost                     {a['lost']} vs {b['lost']}")


if __name__ == "__main__":
    main()

"""Viewers of one livestream spread over 1, 2 and 3 media node processes, and a capacity model.

``viewers`` (``viewers_section``): ``manage.py medianode`` processes
on this machine (real Redis, a database of their own, loopback only); one live public hearing
whose room is on the first node (its home: it composes and encodes the broadcast once). For
N = 1, 2, 3 nodes, V viewers per node watch it: on the home node directly, on the others through
the relay of the home node's stream (``streaming.node.broadcast.relay``). The viewers are real
aiortc peers in separate niced processes that count frames at the socket without decoding
(``bench/broadcast.py``'s counting viewers). Printed per N and per node: CPU (% of one core) idle
(the broadcast running, no viewer) and with the viewers, CPU per viewer above idle, the relay
cost on the home node, frames delivered per viewer (share of the frames the home node encoded).

``model`` (``capacity_model``) prints how many nodes of 2, 8 and 32 cores carry
50 concurrent hearings, 20 of them livestreamed to 10,000 viewers each, from per-room and
per-viewer costs (measured ones by default, after a ``viewers`` run, or given on the command line);
its assumptions are in docs/operations.md ("Capacity model").

    python bench/cluster_viewers.py [viewers] [model] [--viewers 15] [--seconds 8] [--nodes 1 2 3]
    python bench/cluster_viewers.py model [--room-cpu 12] [--broadcast-cpu 25] [--viewer-cpu 0.4]

(``section_viewers`` and ``section_model`` are the same, as sections of ``bench/cluster.py``.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for path in (str(ROOT), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

import psutil  # noqa: E402

FIGURES = ROOT / "var" / "bench-cluster-viewers.json"
VIEWER_NICENESS = 10

# ---------------------------------------------------------------------------------------------
# viewers (separate processes): offers over the channel layer, as the watch socket sends them


async def viewer_worker(channel: str, home: str, public_id: str, count: int) -> None:
    from loopback import keep_media_on_loopback

    keep_media_on_loopback()
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from broadcast import count_frames_at_the_socket, skip_stun_parsing_for_media
    from channels.layers import get_channel_layer

    skip_stun_parsing_for_media()
    layer = get_channel_layer()
    counted = [0] * count
    pcs = []
    for index in range(count):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        reply_to = await layer.new_channel("bench-viewer.")
        await layer.send(
            channel,
            {
                "type": "broadcast.offer",
                "public_id": public_id,
                "sdp": pc.localDescription.sdp,
                "home": home,
                "reply_to": reply_to,
            },
        )
        reply = await asyncio.wait_for(layer.receive(reply_to), 60)
        if reply.get("type") != "watch.answer_ready":
            print(json.dumps({"error": reply}), flush=True)
            return
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        count_frames_at_the_socket(pc, reply["sdp"], counted, index)
        pcs.append(pc)
    for _ in range(600):
        if all(counted):
            break
        await asyncio.sleep(0.05)
    print(json.dumps({"ready": sum(1 for c in counted if c)}), flush=True)
    process = psutil.Process()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while (await stdin.readline()).decode().strip() == "mark":
        cpu = process.cpu_times()
        print(json.dumps({"counts": list(counted), "cpu": cpu.user + cpu.system}), flush=True)
    for pc in pcs:
        await pc.close()


class Viewers:
    def __init__(self, env: dict, channel: str, home: str, public_id: str, count: int) -> None:
        self.count = count
        self.proc = subprocess.Popen(
            ["nice", "-n", str(VIEWER_NICENESS), sys.executable, str(Path(__file__).resolve())]
            + ["--viewers-of", channel, home, public_id, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    async def read(self) -> dict:
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise RuntimeError("a viewer process ended early")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"a viewer was refused: {reply['error']}")
        return reply

    async def mark(self) -> dict:
        self.proc.stdin.write("mark\n")
        self.proc.stdin.flush()
        return await self.read()

    async def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        try:
            await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------------------------
# the nodes and the hearing


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")
    import django

    django.setup()


def live_public_hearing() -> str:
    from tests.factories import UserFactory, advance, make_case

    case = make_case(
        respondent=UserFactory(),
        respondent_consents={"video": True, "livestream": True, "recording": False},
    )
    return advance(case, "in_session").public_id


def start_node(env: dict, node_id: str, log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"node-{node_id}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "manage.py", "medianode"],
        cwd=ROOT,
        env={**env, "MEDIA_NODE_ID": node_id},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def ask(layer, channel: str, message: dict, wait: float = 5.0) -> dict:
    reply_to = await layer.new_channel("bench.")
    await layer.send(channel, {**message, "reply_to": reply_to})
    return await asyncio.wait_for(layer.receive(reply_to), wait)


async def until_answering(layer, channel: str) -> None:
    give_up = time.monotonic() + 240
    while True:
        try:
            await ask(layer, channel, {"type": "broadcast.stats"})
            return
        except TimeoutError:
            if time.monotonic() > give_up:
                raise RuntimeError(f"the node on {channel} never answered") from None


def cpu_seconds(procs: list[psutil.Process]) -> list[float]:
    return [sum(p.cpu_times()[:2]) for p in procs]


async def run_nodes(
    n_nodes: int, per_node: int, window: float, env: dict, public_id: str, log_dir: Path
) -> dict:
    from channels.layers import get_channel_layer

    from streaming.node.broadcast.ladder import default_ladder
    from streaming.plane import node_channel

    ids = [f"n{n_nodes}-{i}" for i in range(n_nodes)]
    channels = [node_channel(i) for i in ids]
    home = channels[0]
    nodes = [start_node(env, node_id, log_dir) for node_id in ids]
    procs = [psutil.Process(p.pid) for p in nodes]
    viewers: list[Viewers] = []
    layer = get_channel_layer()
    try:
        for channel in channels:
            await until_answering(layer, channel)
        # the broadcast starts on its home node (a watch page opened)
        await ask(layer, home, {"type": "broadcast.snapshot", "public_id": public_id}, 30)
        await asyncio.sleep(3)
        before, started = cpu_seconds(procs), time.monotonic()
        await asyncio.sleep(window)
        idle = [
            100 * (b - a) / (time.monotonic() - started)
            for a, b in zip(before, cpu_seconds(procs), strict=True)
        ]
        for channel in channels:
            viewers.append(Viewers(env, channel, home, public_id, per_node))
        for v in viewers:
            await v.read()  # ready
        await asyncio.sleep(2)
        stats_before = await ask(layer, home, {"type": "broadcast.stats"})
        marks_before = [await v.mark() for v in viewers]
        before, started = cpu_seconds(procs), time.monotonic()
        load_before = psutil.cpu_times()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - started
        busy = [100 * (b - a) / elapsed for a, b in zip(before, cpu_seconds(procs), strict=True)]
        marks_after = [await v.mark() for v in viewers]
        stats_after = await ask(layer, home, {"type": "broadcast.stats"})
        load_after = psutil.cpu_times()
        # the top layer of the ladder: the one relayed, and the one viewers start on
        key = f"broadcast-{default_ladder(640, 360, None)[0].name}:video"
        encoded = stats_after["encoded"].get(key, 0) - stats_before["encoded"].get(key, 0)
        per_node_rows = []
        for index in range(n_nodes):
            counts = [
                b - a
                for a, b in zip(
                    marks_before[index]["counts"], marks_after[index]["counts"], strict=True
                )
            ]
            delivered = [c / encoded if encoded else 0.0 for c in counts]
            per_node_rows.append(
                {
                    "node": ids[index],
                    "role": "home" if index == 0 else "relayed",
                    "idle_cpu": round(idle[index], 1),
                    "cpu": round(busy[index], 1),
                    "cpu_per_viewer": round((busy[index] - idle[index]) / per_node, 3),
                    "delivered_mean": round(sum(delivered) / len(delivered), 3),
                    "delivered_min": round(min(delivered), 3),
                    "viewer_cpu": round(
                        100 * (marks_after[index]["cpu"] - marks_before[index]["cpu"]) / elapsed,
                        1,
                    ),
                }
            )
        total_before = sum(load_before[:3])
        total_after = sum(load_after[:3])
        return {
            "nodes": n_nodes,
            "viewers_per_node": per_node,
            "encoded_frames": encoded,
            "fps": round(encoded / elapsed, 1),
            "machine_cpu": round(100 * (total_after - total_before) / elapsed, 1),
            "per_node": per_node_rows,
        }
    finally:
        for v in viewers:
            await v.close()
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(15)
            except subprocess.TimeoutExpired:
                node.kill()


def print_viewers_row(result: dict) -> None:
    print(
        f"\n{result['nodes']} node(s), {result['viewers_per_node']} viewers each: "
        f"{result['fps']} fps encoded once on the home node; machine CPU "
        f"{result['machine_cpu']} % (of {psutil.cpu_count()} cores x 100)"
    )
    print(
        f"  {'node':8} {'role':8} {'idle %':>7} {'with %':>7} {'%/viewer':>9} "
        f"{'delivered mean/min':>19} {'viewers %':>10}"
    )
    for row in result["per_node"]:
        print(
            f"  {row['node']:8} {row['role']:8} {row['idle_cpu']:7.1f} {row['cpu']:7.1f} "
            f"{row['cpu_per_viewer']:9.3f} {row['delivered_mean']:9.1%} / "
            f"{row['delivered_min']:6.1%} {row['viewer_cpu']:10.1f}"
        )


def viewers_section(args) -> dict:
    """Viewers over 1, 2, 3 nodes; prints per-node CPU and delivery, saves the figures for the
    capacity model."""
    from loopback import keep_media_on_loopback

    keep_media_on_loopback()
    prefix = os.environ.get("CHANNEL_PREFIX") or f"benchcascade{uuid.uuid4().hex[:6]}"
    os.environ["MEDIA_NODE_INPROCESS"] = "0"
    setup_django()
    # As the settings have them (bench/cluster.py may have set up its own database and prefix):
    # the nodes and viewers started here must use the same.
    from django.conf import settings
    from django.db import connection

    from streaming.plane import layer_prefix

    db = connection.settings_dict
    database = (
        f"postgres://{db.get('USER') or 'postgres'}"
        f"{':' + db['PASSWORD'] if db.get('PASSWORD') else ''}@{db.get('HOST') or '127.0.0.1'}"
        f":{db.get('PORT') or 5432}/{db['NAME']}"
    )
    prefix = layer_prefix() or prefix
    public_id = live_public_hearing()
    log_dir = ROOT / "var" / "bench-cluster"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}:{BENCH}",
        "DATABASE_URL": database,
        "CHANNEL_PREFIX": prefix,
        "REDIS_URL": settings.REDIS_URL,
        "ICE_SERVERS": "[]",
        "MEDIA_RELAY_HOST": "127.0.0.1",
        "BROADCAST_VIEWER_LIMIT": "10000",
        "BROADCAST_HLS_ROOT": str(log_dir / "hls"),
        "LOG_LEVEL": "WARNING",
    }
    results = []
    for n_nodes in args.nodes:
        result = asyncio.run(
            run_nodes(n_nodes, args.viewers, args.seconds, env, public_id, log_dir)
        )
        print_viewers_row(result)
        results.append(result)
    figures = measured_costs(results)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps({"results": results, "costs": figures}, indent=2))
    print(
        f"\nmeasured: broadcast (composite + encode once) {figures['broadcast_cpu']:.1f} % of a "
        f"core on its home node; per viewer {figures['viewer_cpu']:.3f} % on the home node, "
        f"{figures['relayed_viewer_cpu']:.3f} % on a relayed node; each relay "
        f"{figures['relay_cpu']:.2f} % on the home node (saved to "
        f"{FIGURES.relative_to(ROOT)})"
    )
    return figures


def measured_costs(results: list[dict]) -> dict:
    home_idle = [r["per_node"][0]["idle_cpu"] for r in results]
    home = [r["per_node"][0]["cpu_per_viewer"] for r in results]
    relayed = [row["cpu_per_viewer"] for r in results for row in r["per_node"][1:]]
    # what each relay costs the home node: its CPU with the same viewers of its own and N-1 relays,
    # against its CPU alone
    alone = [r["per_node"][0]["cpu"] for r in results if r["nodes"] == 1]
    relay = [
        (r["per_node"][0]["cpu"] - alone[0]) / (r["nodes"] - 1) for r in results if r["nodes"] > 1
    ]
    return {
        "relay_cpu": max(0.0, sum(relay) / len(relay)) if alone and relay else 0.0,
        "broadcast_cpu": sum(home_idle) / len(home_idle),
        "viewer_cpu": max(0.001, sum(home) / len(home)),
        "relayed_viewer_cpu": max(0.001, sum(relayed) / len(relayed)) if relayed else 0.0,
    }


# ---------------------------------------------------------------------------------------------
# the capacity model

HEARINGS, LIVESTREAMED, VIEWERS_EACH = 50, 20, 10_000
# A node process runs one event loop: it uses about one core whatever the machine has, so a
# machine runs one node per core, each loaded to at most this share of its core.
USABLE_SHARE = 0.7
MACHINE_CORES = (2, 8, 32)
# The WebRTC viewers one node process serves at most, whatever CPU is left (sockets, memory,
# the per-frame loop over all viewers within one frame interval).
VIEWERS_PER_NODE_CAP = 2000


def capacity_model(
    *, room_cpu: float, broadcast_cpu: float, viewer_cpu: float, relay_cpu: float
) -> dict:
    """Node processes (one per core) and machines of 2, 8, 32 cores for the target load; see
    docs/operations.md for the assumptions. CPU figures are % of one core."""
    budget = 100 * USABLE_SHARE
    viewers = LIVESTREAMED * VIEWERS_EACH
    # Viewer nodes: placement by most viewer room spreads every room's viewers over all of
    # them, so each receives one relay per livestreamed room.
    relay_in = LIVESTREAMED * relay_cpu
    per_viewer_node = max(1, min(VIEWERS_PER_NODE_CAP, int((budget - relay_in) / viewer_cpu)))
    viewer_nodes = math.ceil(viewers / per_viewer_node)
    # Room nodes: forwarding of every hearing, composite + encode of the livestreamed ones, and
    # one relay out per viewer node for each of those: all on the room's home node.
    home_load = room_cpu + broadcast_cpu + viewer_nodes * relay_cpu
    fanout = max(1, int(budget / relay_cpu))  # relays one node can send
    tiers = 1
    while fanout**tiers < viewer_nodes:
        tiers += 1
    if home_load <= budget:
        relay_nodes = 0
        rooms_per_node = max(1, int(budget / home_load))
        live_nodes = math.ceil(LIVESTREAMED / rooms_per_node)
    else:
        # The home node cannot send that many relays: it sends to relay nodes that send on
        # (one more hop), each room needing ceil(viewer nodes / fan-out) of them.
        relay_nodes = LIVESTREAMED * math.ceil(viewer_nodes / fanout)
        live_nodes = LIVESTREAMED
    other_rooms = HEARINGS - LIVESTREAMED
    quiet_nodes = math.ceil(other_rooms * room_cpu / budget)
    room_nodes = live_nodes + quiet_nodes
    hls_room_nodes = math.ceil((HEARINGS * room_cpu + LIVESTREAMED * broadcast_cpu) / budget)
    rows = []
    for cores in MACHINE_CORES:
        total = room_nodes + relay_nodes + viewer_nodes
        rows.append(
            {
                "cores": cores,
                "nodes": total,
                "machines": math.ceil(total / cores),
                "machines_hls": math.ceil(hls_room_nodes / cores),
            }
        )
    return {
        "viewer_nodes": viewer_nodes,
        "viewers_per_viewer_node": per_viewer_node,
        "room_nodes": room_nodes,
        "relay_nodes": relay_nodes,
        "home_relay_load": home_load,
        "relay_tiers": tiers,
        "hls_room_nodes": hls_room_nodes,
        "machines": rows,
    }


def model_section(args) -> None:
    costs = {}
    if FIGURES.exists():
        costs = json.loads(FIGURES.read_text())["costs"]
    room_cpu = args.room_cpu
    broadcast_cpu = args.broadcast_cpu or costs.get("broadcast_cpu") or 25.0
    viewer_cpu = args.viewer_cpu or costs.get("relayed_viewer_cpu") or costs.get("viewer_cpu")
    viewer_cpu = viewer_cpu or 0.4
    relay_cpu = args.relay_cpu or costs.get("relay_cpu") or 1.0
    source = "measured costs" if costs else "given/default costs"
    print(
        f"\ncapacity model ({source}): {HEARINGS} hearings, {LIVESTREAMED} livestreamed to "
        f"{VIEWERS_EACH:,} viewers each ({LIVESTREAMED * VIEWERS_EACH:,} WebRTC viewers)"
    )
    print(
        f"  % of one core: room forwarding {room_cpu:.1f}, composite + encode "
        f"{broadcast_cpu:.1f}, per viewer {viewer_cpu:.3f}, per relay {relay_cpu:.2f}; "
        f"a node = one process on one core used to {USABLE_SHARE:.0%}"
    )
    m = capacity_model(
        room_cpu=room_cpu, broadcast_cpu=broadcast_cpu, viewer_cpu=viewer_cpu, relay_cpu=relay_cpu
    )
    print(
        f"  viewer nodes {m['viewer_nodes']} ({m['viewers_per_viewer_node']} viewers each, "
        f"{LIVESTREAMED} relays in), room nodes {m['room_nodes']}, relay nodes "
        f"{m['relay_nodes']}; a live room's home node with one relay per viewer node: "
        f"{m['home_relay_load']:.0f} % of a core"
        + (
            f" -> over budget: a relay tier is needed ({m['relay_tiers']} hops of relays)"
            if m["relay_nodes"]
            else ""
        )
    )
    print(
        f"  {'machine':>8} {'node processes':>15} {'machines':>9} {'machines, HLS audiences':>24}"
    )
    for row in m["machines"]:
        print(
            f"  {row['cores']:>5} c. {row['nodes']:>15} {row['machines']:>9} "
            f"{row['machines_hls']:>24}"
        )


def add_arguments(parser) -> None:
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    add_section_arguments(parser)


def add_section_arguments(parser) -> None:
    """The options bench/cluster.py does not have already."""
    parser.add_argument("--viewers", type=int, default=15, help="viewers per node")
    parser.add_argument("--room-cpu", type=float, default=12.0, help="%% of a core per room")
    parser.add_argument("--broadcast-cpu", type=float, default=0.0)
    parser.add_argument("--viewer-cpu", type=float, default=0.0)
    parser.add_argument("--relay-cpu", type=float, default=0.0, help="%% of a core per relay")


DEFAULTS = {
    "viewers": 15,
    "seconds": 8.0,
    "nodes": [1, 2, 3],
    "room_cpu": 12.0,
    "broadcast_cpu": 0.0,
    "viewer_cpu": 0.0,
    "relay_cpu": 0.0,
}


def _options(args) -> argparse.Namespace:
    """``bench/cluster.py``'s arguments, with this section's defaults for what it lacks."""
    return argparse.Namespace(**{k: getattr(args, k, v) for k, v in DEFAULTS.items()})


# The sections as bench/cluster.py runs them (``SECTIONS``); they start their own nodes.
async def section_viewers(cluster, args) -> None:
    await asyncio.to_thread(viewers_section, _options(args))


async def section_model(cluster, args) -> None:
    model_section(_options(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", default=["viewers", "model"])
    add_arguments(parser)
    args = parser.parse_args()
    if "viewers" in args.sections:
        # a throwaway database, as bench/cluster.py has
        os.environ["CHANNEL_PREFIX"] = f"benchcascade{uuid.uuid4().hex[:6]}"
        setup_django()
        from django.conf import settings
        from django.db import connection
        from django.test.utils import setup_test_environment

        if not settings.REDIS_URL:
            raise SystemExit("the viewers section needs REDIS_URL (the pool lives in Redis)")
        setup_test_environment()
        old_name = connection.settings_dict["NAME"]
        # not the test suite's own test database
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_viewers_{old_name}"
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            viewers_section(args)
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    if "model" in args.sections:
        model_section(args)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--viewers-of":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")
        import django

        django.setup()
        channel, home, public_id, count = sys.argv[2:6]
        asyncio.run(viewer_worker(channel, home, public_id, int(count)))
    else:
        main()

"""Livestream benchmark: encode-once broadcast against aiortc's MediaRelay, same run.

One room of three synthetic members (640x360, 15 fps, with tones) is composed into one broadcast
picture; V receive-only aiortc viewers watch it, for V = 10, 50, 100, 200, 400:

* ``encode-once``: the composite is encoded once (VP8 + Opus) and every viewer gets the same
  packets (``streaming.broadcast.Broadcast``);
* ``mediarelay``: every viewer subscribes to the composite through ``MediaRelay`` (unbuffered, the
  bounded mode: the default buffered mode grows without bound once encoders fall behind) and
  aiortc's sender encodes VP8 + Opus for that viewer.

Viewers run in separate processes (``--worker``, niced), spread over several of them. Most
viewers count frames without decoding: each is a real aiortc peer (ICE, DTLS handshake, SRTP keys,
RTCP), but its SRTP packets are decrypted where they arrive and counted by the marker bit of the
last packet of each video frame, without aiortc's per-packet queue, parser, jitter buffer and
decoder, so that the viewers, which share the machine with the server, cost it little. A few
viewers decode and read the clock stamped into the mediator's picture when the member frame was
made, which gives the end-to-end delay.

Printed per step: server CPU (percent of one core, total and per viewer, and the marginal cost per
viewer above the idle broadcast), viewer processes' CPU, frames delivered per viewer as a share
of the frames the composite produced in the measuring window (mean and minimum), the share of
viewers held at >= 95 % delivery, the end-to-end delay (median, p95) of the decoding sample, and
the CPU that other processes on the machine used meanwhile (the figures mean little when that is
high: run it on a quiet machine).
A mode stops growing once its viewers get less than a quarter of the frames, or once two steps
in a row held no viewer at 95 %.

    python bench/broadcast.py            # V = 10 50 100 200 400, 8 s windows
    python bench/broadcast.py --quick    # V = 10 50, 4 s windows

MediaRelay also runs V = 2 and 5 (``--baseline-extra``), since it does not hold 10.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from aiortc import (  # noqa: E402
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

WIDTH, HEIGHT, FPS = 640, 360, 15
DECODING_VIEWERS = 3
VIEWER_NICENESS = 10
HELD = 0.95
# A mode stops growing once its viewers get less than this share of the frames: more viewers
# would only take longer to connect.
STOP_BELOW = 0.25


# ---------------------------------------------------------------------------------------------
# viewers (separate processes)


def count_frames_at_the_socket(pc: RTCPeerConnection, answer_sdp: str, counts, index) -> None:
    """A viewer that counts frames without decoding: a real DTLS-SRTP peer whose SRTP packets are
    decrypted as they arrive and counted by their RTP marker bit (the last packet of a video
    frame), without aiortc's per-packet queue, parsing, jitter buffer and decoder. DTLS, STUN and
    RTCP still take aiortc's own path."""
    import pylibsrtp
    from aiortc import sdp
    from aiortc.rtp import is_rtcp

    video = next(m for m in sdp.SessionDescription.parse(answer_sdp).media if m.kind == "video")
    video_type = video.rtp.codecs[0].payloadType
    dtls = pc.getTransceivers()[0].receiver.transport
    connection = dtls.transport._connection
    queue = connection._queue

    def data_received(data: bytes, component: int) -> None:
        srtp = dtls._rx_srtp
        if srtp is None or not 127 < data[0] < 192 or is_rtcp(data):
            queue.put_nowait((data, component))
            return
        if data[1] & 0x7F != video_type:
            return  # audio: not counted, not decrypted
        try:
            packet = srtp.unprotect(data)
        except pylibsrtp.Error:
            return  # not authentic: not counted
        if packet[1] & 0x80:
            counts[index] += 1

    connection.data_received = data_received


def skip_stun_parsing_for_media() -> None:
    """aioice tries to parse every datagram as STUN first; RTP and RTCP (first byte 128-191)
    never are, so the counting viewers hand them on directly."""
    from aioice.ice import StunProtocol

    parse_first = StunProtocol.datagram_received

    def datagram_received(self, data, addr):
        if 127 < data[0] < 192:
            self.receiver.data_received(data, self.local_candidate.component)
        else:
            parse_first(self, data, addr)

    StunProtocol.datagram_received = datagram_received


async def worker_main(port: int, count: int, decode: bool, tile: list[int]) -> None:
    if not decode:
        skip_stun_parsing_for_media()
    from aiortc.mediastreams import MediaStreamError

    from streaming.broadcast.synthetic import STAMP_MODULO, clock_ms, read_stamp

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pcs: list[RTCPeerConnection] = []
    decoded = [0] * count
    counted = [0] * count
    delays: list[int] = []
    measuring = False

    async def consume(index, track, video):
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not video:
                    continue
                decoded[index] += 1
                if measuring:
                    x, y, w, h = tile
                    rgb = frame.to_ndarray(format="rgb24")[y : y + h, x : x + w]
                    delay = (clock_ms() - read_stamp(rgb)[1]) % STAMP_MODULO
                    if delay < 10_000:  # a misread stamp is not a delay
                        delays.append(delay)

    for index in range(count):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")

        def on_track(track, index=index):
            asyncio.ensure_future(consume(index, track, track.kind == "video"))

        if decode:
            pc.on("track", on_track)
        await pc.setLocalDescription(await pc.createOffer())
        writer.write((json.dumps({"offer": pc.localDescription.sdp}) + "\n").encode())
        await writer.drain()
        reply = json.loads(await reader.readline())
        if "error" in reply:
            print(json.dumps({"error": reply["error"]}), flush=True)
            return
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["answer"], type="answer"))
        if not decode:
            count_frames_at_the_socket(pc, reply["answer"], counted, index)
        pcs.append(pc)

    def frame_counts() -> list[int]:
        return list(decoded if decode else counted)

    for _ in range(600):
        if sum(1 for c in frame_counts() if c > 0) == count:
            break
        await asyncio.sleep(0.05)
    process = psutil.Process()
    print(json.dumps({"ready": sum(1 for c in frame_counts() if c > 0)}), flush=True)

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while True:
        line = (await stdin.readline()).decode().strip()
        if line == "mark":
            measuring = True
            cpu = process.cpu_times()
            print(
                json.dumps(
                    {"counts": frame_counts(), "delays": delays, "cpu": cpu.user + cpu.system}
                ),
                flush=True,
            )
            delays = []
        else:
            break
    for pc in pcs:
        await pc.close()


# ---------------------------------------------------------------------------------------------
# the server (this process)


class RelayBroadcast:
    """The baseline: the same composite, relayed to each viewer, encoded by each sender."""

    def __init__(self, scene) -> None:
        from aiortc.contrib.media import MediaRelay

        from streaming.broadcast.audio import AudioMixerTrack
        from streaming.broadcast.compositor import CompositeVideoTrack

        self.video = CompositeVideoTrack(scene, width=WIDTH, height=HEIGHT, fps=FPS)
        self.audio = AudioMixerTrack(scene)
        self.relay = MediaRelay()
        self.viewers: list[RTCPeerConnection] = []
        self._drains: list[asyncio.Task] = []

    async def start(self) -> None:
        # Keep the composite running with no viewer, as the HLS output would.
        for track in (self.video, self.audio):
            proxy = self.relay.subscribe(track, buffered=False)
            self._drains.append(asyncio.ensure_future(_drain(proxy)))

    async def add_viewer(self, offer_sdp: str):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in pc.getTransceivers():
            mime = "video/VP8" if transceiver.kind == "video" else "audio/opus"
            transceiver.setCodecPreferences(
                [
                    c
                    for c in RTCRtpSender.getCapabilities(transceiver.kind).codecs
                    if c.mimeType == mime
                ]
            )
        pc.addTrack(self.relay.subscribe(self.video, buffered=False))
        pc.addTrack(self.relay.subscribe(self.audio, buffered=False))
        await pc.setLocalDescription(await pc.createAnswer())
        self.viewers.append(pc)
        return str(len(self.viewers)), pc.localDescription.sdp

    async def stop(self) -> None:
        for pc in self.viewers:
            await pc.close()
        for task in self._drains:
            task.cancel()
        self.video.stop()
        self.audio.stop()


async def _drain(track) -> None:
    from aiortc.mediastreams import MediaStreamError

    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


def make_scene():
    from streaming.broadcast.scene import BroadcastMember, Scene
    from streaming.broadcast.synthetic import SyntheticVideoTrack, ToneAudioTrack

    colours = {"mediator": (200, 40, 40), "applicant": (40, 200, 40), "respondent": (40, 40, 200)}
    members = [
        BroadcastMember(
            member_id=role,
            role=role,
            video=SyntheticVideoTrack(colour, width=WIDTH, height=HEIGHT, fps=FPS),
            audio=ToneAudioTrack(300 + 200 * index),
            show_face=True,  # no face in a synthetic picture; detection is not what is measured
        )
        for index, (role, colour) in enumerate(colours.items())
    ]
    return Scene(category="劳资纠纷", community="幸福里社区", state="live", members=members)


class Worker:
    niceness = VIEWER_NICENESS

    def __init__(self, port: int, count: int, decode: bool, tile) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # Niced: on a shared machine the viewers must not take the server's share of the CPU
        # (each process gets a fair share, and the viewers are many processes to its one).
        command = [
            "nice",
            "-n",
            str(Worker.niceness),
            sys.executable,
            str(Path(__file__).resolve()),
        ]
        command += ["--worker", str(port), str(count)]
        command += ["--decode"] if decode else []
        command += ["--tile", ",".join(str(v) for v in tile)]
        self.count = count
        self.decode = decode
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )

    async def read(self) -> dict:
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise RuntimeError("a viewer process ended early")
        return json.loads(line)

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


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_step(mode: str, viewers: int, window: float, processes: int) -> dict:
    from streaming.broadcast.broadcast import Broadcast

    scene = make_scene()
    if mode == "encode-once":
        server = Broadcast(scene, width=WIDTH, height=HEIGHT, fps=FPS, viewer_limit=10_000)
    else:
        server = RelayBroadcast(scene)
    await server.start()

    async def signaling(reader, writer):
        while line := await reader.readline():
            offer = json.loads(line)["offer"]
            try:
                _, answer = await server.add_viewer(offer)
                reply = {"answer": answer}
            except Exception as exc:  # report, do not hang the worker
                reply = {"error": str(exc)}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()

    tcp = await asyncio.start_server(signaling, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    me = psutil.Process()

    # idle cost of the broadcast itself (members, composition, encoding for encode-once)
    await asyncio.sleep(1.0)
    cpu0, t0 = me.cpu_times(), time.monotonic()
    await asyncio.sleep(2.0)
    cpu1, t1 = me.cpu_times(), time.monotonic()
    idle = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (t1 - t0)

    mediator = server.video.layout()["mediator"]
    tile = (mediator.x, mediator.y, mediator.width, mediator.height)
    decoding = min(DECODING_VIEWERS, viewers)
    counting = viewers - decoding
    workers = [Worker(port, decoding, True, tile)] if decoding else []
    split = max(1, min(processes, counting)) if counting else 0
    for index in range(split):
        share = counting // split + (1 if index < counting % split else 0)
        if share:
            workers.append(Worker(port, share, False, tile))
    setup_started = time.monotonic()
    ready = [await w.read() for w in workers]
    setup = time.monotonic() - setup_started
    if any("error" in r for r in ready):
        raise RuntimeError(f"viewers refused: {ready}")
    connected = sum(r["ready"] for r in ready)
    await asyncio.sleep(2.0)  # let every viewer settle past its first keyframe

    first = [await w.mark() for w in workers]
    fanout0 = dict(server.stats["video"]) if mode == "encode-once" else {}
    rtp0 = dict(server.stats.get("video_rtp", {})) if mode == "encode-once" else {}
    lag = LoopLag()
    frames0 = server.video.frames_sent
    machine0 = psutil.cpu_times()
    cpu0, t0 = me.cpu_times(), time.monotonic()
    await asyncio.sleep(window)
    cpu1, t1 = me.cpu_times(), time.monotonic()
    machine1 = psutil.cpu_times()
    frames1 = server.video.frames_sent
    served = len(server.viewers)
    lag.stop()
    fanout1 = dict(server.stats["video"]) if mode == "encode-once" else {}
    rtp1 = dict(server.stats.get("video_rtp", {})) if mode == "encode-once" else {}
    last = [await w.mark() for w in workers]
    for worker in workers:
        await worker.close()
    tcp.close()
    await server.stop()

    elapsed = t1 - t0
    sent = max(1, frames1 - frames0)
    server_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
    viewer_cpu = sum(b["cpu"] - a["cpu"] for a, b in zip(first, last, strict=True)) / elapsed
    busy = sum(
        getattr(machine1, f) - getattr(machine0, f)
        for f in ("user", "system", "nice", "irq", "softirq")
    )
    # Whatever else ran on the machine meanwhile (other test suites share these cores).
    others_cpu = max(0.0, busy / elapsed - server_cpu - viewer_cpu)
    shares = []
    for a, b in zip(first, last, strict=True):
        shares += [min(1.0, (y - x) / sent) for x, y in zip(a["counts"], b["counts"], strict=True)]
    delays = [d for b in last for d in b["delays"]]
    return {
        "mode": mode,
        "viewers": viewers,
        "connected": connected,
        "served": served,
        "setup_s": setup,
        "frames_sent": sent,
        "fps_sent": sent / elapsed,
        "server_cpu": server_cpu * 100,
        "idle_cpu": idle * 100,
        "cpu_per_viewer": server_cpu * 100 / viewers,
        "marginal_per_viewer": (server_cpu - idle) * 100 / viewers,
        "viewer_cpu": viewer_cpu * 100,
        "viewer_processes": len(workers),
        "others_cpu": others_cpu * 100,
        "delivered_mean": statistics.mean(shares),
        "delivered_min": min(shares),
        "held": sum(1 for s in shares if s >= HELD) / len(shares),
        "delay_median": percentile(delays, 0.5),
        "delay_p95": percentile(delays, 0.95),
        "loop_lag_p95": percentile(lag.samples, 0.95) * 1000,
        "fanout": {k: fanout1[k] - fanout0.get(k, 0) for k in fanout1 if k != "subscribers"},
        "rtp": {k: rtp1[k] - rtp0.get(k, 0) for k in rtp1},
    }


class LoopLag:
    """How late the server's event loop wakes up: a busy loop delays every sender."""

    def __init__(self, interval: float = 0.02) -> None:
        self.samples: list[float] = []
        self._task = asyncio.ensure_future(self._run(interval))

    async def _run(self, interval: float) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(interval)
            self.samples.append(time.monotonic() - started - interval)

    def stop(self) -> None:
        self._task.cancel()


HEADER = (
    f"{'mode':<12}{'V':>5}{'conn':>6}{'setup s':>8}{'fps':>6}{'srv cpu%':>9}{'idle%':>7}"
    f"{'%/viewer':>9}{'marg%/v':>8}{'viewers cpu%':>13}{'deliv':>7}{'min':>6}{'held95':>7}"
    f"{'delay ms p50/p95':>17}{'others cpu%':>12}"
)


def row(r: dict) -> str:
    return (
        f"{r['mode']:<12}{r['viewers']:>5}{r['connected']:>6}{r['setup_s']:>8.1f}"
        f"{r['fps_sent']:>6.1f}{r['server_cpu']:>9.0f}{r['idle_cpu']:>7.0f}"
        f"{r['cpu_per_viewer']:>9.2f}{r['marginal_per_viewer']:>8.2f}"
        f"{r['viewer_cpu']:>9.0f} ({r['viewer_processes']}p)"
        f"{r['delivered_mean']:>7.1%}{r['delivered_min']:>6.0%}{r['held']:>7.0%}"
        f"{r['delay_median']:>9.0f}/{r['delay_p95']:<6.0f}{r['others_cpu']:>8.0f}"
    )


async def bench(
    counts: list[int],
    window: float,
    processes: int,
    modes: list[str],
    baseline_extra: list[int],
    verbose: bool = False,
) -> None:
    print(
        f"one room, 3 members -> composite {WIDTH}x{HEIGHT} @ {FPS} fps, VP8 + Opus; "
        f"{psutil.cpu_count()} cores; window {window:.0f} s; viewers in separate processes "
        f"(up to {processes} counting + 1 decoding {DECODING_VIEWERS} viewers)"
    )
    print(HEADER, flush=True)
    results = []
    for mode in modes:
        # The baseline also gets a few smaller steps: it holds fewer than the smallest V.
        steps = sorted(set(counts) | set(baseline_extra)) if mode == "mediarelay" else counts
        for count in steps:
            result = await run_step(mode, count, window, processes)
            results.append(result)
            print(row(result), flush=True)
            if verbose:
                print(
                    f"    server holds {result['served']} viewers at the end; "
                    f"loop lag p95 {result['loop_lag_p95']:.0f} ms; fanout {result['fanout']}"
                    f"; video RTP {result['rtp']}"
                )
            if result["delivered_mean"] < STOP_BELOW:
                print(f"{mode:<12} stops here: viewers get less than {STOP_BELOW:.0%} of frames")
                break
            unheld = [r for r in results[-2:] if r["mode"] == mode and r["held"] == 0]
            if len(unheld) == 2:
                # more viewers cannot be held either; the baseline's encoders would only take
                # the machine from everyone else
                print(f"{mode:<12} stops here: two steps in a row held no viewer at 95 %")
                break
    held = {}
    for mode in modes:
        ok = [r["viewers"] for r in results if r["mode"] == mode and r["held"] >= HELD]
        held[mode] = max(ok) if ok else 0
    print()
    for mode, count in held.items():
        print(f"largest V with >= 95 % of viewers held at 95 % delivery, {mode}: {count}")
    if held.get("mediarelay"):
        print(f"ratio encode-once / mediarelay: {held['encode-once'] / held['mediarelay']:.1f}")
    elif "mediarelay" in held:
        print("mediarelay held no step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="V = 10 50 and 4 s windows")
    parser.add_argument("--viewers", type=int, nargs="*", help="the V values to run")
    parser.add_argument("--window", type=float, help="measuring window in seconds")
    parser.add_argument("--processes", type=int, default=4, help="counting viewer processes")
    parser.add_argument("--modes", nargs="*", default=["encode-once", "mediarelay"])
    parser.add_argument(
        "--baseline-extra", type=int, nargs="*", default=[2, 5], help="extra V for MediaRelay"
    )
    parser.add_argument("--verbose", action="store_true", help="event-loop lag, fanout stats")
    parser.add_argument(
        "--viewer-nice", type=int, default=VIEWER_NICENESS, help="niceness of viewer processes"
    )
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tile = [int(v) for v in args.tile.split(",")]
        asyncio.run(worker_main(args.worker[0], args.worker[1], args.decode, tile))
        return
    Worker.niceness = args.viewer_nice
    counts = args.viewers or ([10, 50] if args.quick else [10, 50, 100, 200, 400])
    window = args.window or (4.0 if args.quick else 8.0)
    asyncio.run(
        bench(counts, window, args.processes, args.modes, args.baseline_extra, args.verbose)
    )


if __name__ == "__main__":
    main()

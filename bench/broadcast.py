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

The ladder (``--ladder``): one broadcast with the default ladder (360p at 600 kbit/s, 180p at
250 kbit/s, audio only) and V counting viewers (not adaptive: the bench puts them on layers),
measured in phases that are interleaved, repetition by repetition, so that the machine's load
(other processes) falls on all of them alike:

* ``audio``: every viewer on audio only, no video encoder runs (the composite and the sound);
* ``360p`` / ``180p``: one viewer on that layer, the others on audio: the layer's encode;
* ``both``: one viewer on 360p, one on 180p: the ladder's encodes;
* ``all-360p``: every viewer on 360p (the single-layer broadcast: one encode, V viewers);
* ``spread``: viewers spread over 360p, 180p and audio only (a third each).

Printed: server CPU per phase (median of the repetitions, percent of one core), the load
average and the other processes' CPU meanwhile; CPU per layer (phase minus ``audio``), per
viewer on 360p and on 180p, and the ratio of the ladder's encode to the single layer's
(``both`` / ``360p``, above ``audio``), which must stay below 1.6.

    python bench/broadcast.py --ladder                 # V = 30, 3 repetitions of 5 s windows
    python bench/broadcast.py --ladder --viewers 60 --repeats 5
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

    from streaming.node.internals import aioice_private, aiortc_private

    video = next(m for m in sdp.SessionDescription.parse(answer_sdp).media if m.kind == "video")
    video_type = video.rtp.codecs[0].payloadType
    dtls = pc.getTransceivers()[0].receiver.transport
    connection = aiortc_private.ice_connection(dtls)
    queue = aioice_private.data_queue(connection)

    def data_received(data: bytes, component: int) -> None:
        _tx, srtp = aiortc_private.srtp_sessions(dtls)
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

    from streaming.node.broadcast.synthetic import STAMP_MODULO, clock_ms, read_stamp

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

        from streaming.node.broadcast.audio import AudioMixerTrack
        from streaming.node.broadcast.compositor import CompositeVideoTrack

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
    from streaming.node.broadcast.scene import BroadcastMember, Scene
    from streaming.node.broadcast.synthetic import SyntheticVideoTrack, ToneAudioTrack

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
    from streaming.node.broadcast.broadcast import Broadcast

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


LADDER_PHASES = ("audio", "360p", "180p", "both", "all-360p", "spread")
LADDER_LIMIT = 1.6


def ladder_layout(phase: str, viewers: int) -> list[int]:
    """The layer index of each viewer in ``phase`` (0 = 360p, 1 = 180p, 2 = audio only)."""
    if phase == "audio":
        return [2] * viewers
    if phase == "360p":
        return [0] + [2] * (viewers - 1)
    if phase == "180p":
        return [1] + [2] * (viewers - 1)
    if phase == "both":
        return [0, 1] + [2] * (viewers - 2)
    if phase == "all-360p":
        return [0] * viewers
    return [index % 3 for index in range(viewers)]


async def encode_only(repeats: int) -> float:
    """The encoders alone, on the same recorded composite frames: the single layer (360p) and
    the ladder (360p and 180p), alternating, each with fresh encoders as a broadcast has them.
    Returns the ladder's CPU over the single layer's."""
    from streaming.node.broadcast.compositor import CompositeVideoTrack
    from streaming.node.broadcast.ladder import default_ladder
    from streaming.node.media.fanout import _VideoEncoder

    track = CompositeVideoTrack(make_scene(), width=WIDTH, height=HEIGHT, fps=FPS)
    frames = [await track.recv() for _ in range(FPS * 6)]
    track.stop()
    layers = [layer for layer in default_ladder(WIDTH, HEIGHT) if layer.video]
    gop = FPS  # a keyframe a second, as the broadcast's encoders

    def encode(chosen) -> float:
        encoders = [
            (
                _VideoEncoder(
                    codec="vp8", bitrate=x.bitrate, size=(x.width, x.height), speed=x.speed
                ),
                x.frame_divisor,
            )
            for x in chosen
        ]
        started = time.thread_time()
        for index, frame in enumerate(frames):
            for encoder, divisor in encoders:
                if index % divisor == 0:  # a layer at a lower frame rate skips the others
                    encoder.encode(frame, index % gop == 0)
        return (time.thread_time() - started) * 1000 / len(frames)

    costs: dict[str, list[float]] = {"single": [], "ladder": []}
    for _ in range(repeats):
        costs["single"].append(encode(layers[:1]))
        costs["ladder"].append(encode(layers))
    single = statistics.median(costs["single"])
    ladder = statistics.median(costs["ladder"])
    print(
        f"encoders alone on {len(frames)} recorded composite frames, alternating x {repeats} "
        f"(load average {os.getloadavg()[0]:.1f}): single layer {single:.2f} ms/frame "
        f"({', '.join(f'{c:.2f}' for c in costs['single'])}), ladder {ladder:.2f} ms/frame "
        f"({', '.join(f'{c:.2f}' for c in costs['ladder'])}): ratio {ladder / single:.2f}",
        flush=True,
    )
    return ladder / single


async def bench_ladder(viewers: int, window: float, repeats: int, processes: int) -> None:
    from streaming.node.broadcast.broadcast import Broadcast

    encoders_ratio = await encode_only(max(repeats, 5))

    server = Broadcast(make_scene(), width=WIDTH, height=HEIGHT, fps=FPS, viewer_limit=10_000)
    await server.start()

    async def signaling(reader, writer):
        while line := await reader.readline():
            offer = json.loads(line)["offer"]
            try:
                _, answer = await server.add_viewer(offer, adaptive=False)
                reply = {"answer": answer}
            except Exception as exc:  # report, do not hang the worker
                reply = {"error": str(exc)}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()

    tcp = await asyncio.start_server(signaling, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    mediator = server.video.layout()["mediator"]
    tile = (mediator.x, mediator.y, mediator.width, mediator.height)
    split = max(1, min(processes, viewers))
    workers = [
        Worker(port, viewers // split + (1 if i < viewers % split else 0), False, tile)
        for i in range(split)
    ]
    ready = [await w.read() for w in workers]
    if any("error" in r for r in ready):
        raise RuntimeError(f"viewers refused: {ready}")
    connected = sum(r["ready"] for r in ready)
    print(
        f"ladder: {' / '.join(f'{layer.name} {layer.bitrate // 1000}k' for layer in server.ladder)}; "
        f"{viewers} viewers ({connected} receiving) in {len(workers)} processes; "
        f"{psutil.cpu_count()} cores; {repeats} x {window:.0f} s per phase, interleaved",
        flush=True,
    )
    print(
        f"{'rep':>4}{'phase':>10}{'srv cpu%':>10}{'ms/frame':>9}{'others%':>9}{'load1':>7}"
        "  frames encoded; encoder CPU % by layer"
    )
    me = psutil.Process()
    samples: dict[str, list[float]] = {phase: [] for phase in LADDER_PHASES}
    # CPU milliseconds per composed frame: the composite slows down when the machine is busy
    per_frame: dict[str, list[float]] = {phase: [] for phase in LADDER_PHASES}
    # each layer's encoder thread CPU (scaling + encoding) and frames encoded, by phase: the
    # CPU per encoded frame does not depend on how often a busy machine let the composite run
    layer_frames: dict[tuple[str, str], list[float]] = {}
    composed_frames: dict[str, int] = {}
    # each layer's packetise-and-write CPU (event loop) and the frames its viewers got
    layer_sends: dict[tuple[str, str], list[float]] = {}
    loads = []
    for repetition in range(repeats):
        for phase in LADDER_PHASES:
            # a viewer whose connection failed on the busy machine is gone: lay out the others
            ids = list(server.viewers)
            for viewer_id, index in zip(ids, ladder_layout(phase, len(ids)), strict=True):
                if server.viewers[viewer_id].layer_index != index:
                    server.set_viewer_layer(viewer_id, index)
            await asyncio.sleep(1.5)  # encoders start or stop, viewers reach a keyframe
            layers0 = server.layer_stats()
            composed0 = server.video.frames_sent
            machine0 = psutil.cpu_times()
            cpu0, t0 = me.cpu_times(), time.monotonic()
            await asyncio.sleep(window)
            cpu1, t1 = me.cpu_times(), time.monotonic()
            machine1 = psutil.cpu_times()
            elapsed = t1 - t0
            server_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
            busy = sum(
                getattr(machine1, f) - getattr(machine0, f)
                for f in ("user", "system", "nice", "irq", "softirq")
            )
            others = max(0.0, busy / elapsed - server_cpu)
            load = os.getloadavg()[0]
            loads.append(load)
            samples[phase].append(server_cpu * 100)
            composed = max(1, server.video.frames_sent - composed0)
            per_frame[phase].append(server_cpu * elapsed * 1000 / composed)
            composed_frames[phase] = composed_frames.get(phase, 0) + composed
            layers1 = server.layer_stats()
            encoded = {
                n: s["frames_encoded"] - layers0[n]["frames_encoded"] for n, s in layers1.items()
            }
            encode_cpu = {
                n: (s["encode_cpu_seconds"] - layers0[n]["encode_cpu_seconds"]) / elapsed * 100
                for n, s in layers1.items()
            }
            for name, layer in layers1.items():
                cpu_s = layer["encode_cpu_seconds"] - layers0[name]["encode_cpu_seconds"]
                totals = layer_frames.setdefault((phase, name), [0.0, 0])
                totals[0] += cpu_s
                totals[1] += encoded[name]
                sends = layer_sends.setdefault((phase, name), [0.0, 0])
                sends[0] += layer["send_cpu_seconds"] - layers0[name]["send_cpu_seconds"]
                sends[1] += layer["viewer_frames"] - layers0[name]["viewer_frames"]
            print(
                f"{repetition + 1:>4}{phase:>10}{server_cpu * 100:>10.0f}"
                f"{per_frame[phase][-1]:>9.1f}{others * 100:>9.0f}"
                f"{load:>7.1f}  {encoded}; "
                + ", ".join(f"{n} {v:.1f}" for n, v in encode_cpu.items() if n != "audio"),
                flush=True,
            )
    for worker in workers:
        await worker.close()
    tcp.close()
    await server.stop()

    cpu = {phase: statistics.median(values) for phase, values in samples.items()}
    base = cpu["audio"]
    top, low = cpu["360p"] - base, cpu["180p"] - base
    both = cpu["both"] - base
    per_top = (cpu["all-360p"] - cpu["360p"]) / max(1, viewers - 1)
    spread_viewers = ladder_layout("spread", viewers)
    print()
    print(
        f"medians of {repeats}, percent of one core; load average 1 min during the run: "
        f"{min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"  composite + sound, every viewer on audio only: {base:.1f}")
    video_spread = sum(1 for index in spread_viewers if index < 2)
    per_spread = (cpu["spread"] - cpu["both"]) / max(1, video_spread - 2)
    print(f"  layer 360p (encode + packetise):                {top:.1f}")
    print(f"  layer 180p (scale + encode + packetise):        {low:.1f}")
    print(f"  per viewer on 360p (all-360p minus 360p)/(V-1): {per_top:.3f}")
    print(f"  per video viewer, spread (spread minus both):   {per_spread:.3f}")
    print(
        f"  all {viewers} viewers on 360p: {cpu['all-360p']:.1f};  spread "
        f"({spread_viewers.count(0)} on 360p, {spread_viewers.count(1)} on 180p, "
        f"{spread_viewers.count(2)} audio only): {cpu['spread']:.1f}"
    )
    frame = {phase: statistics.median(values) for phase, values in per_frame.items()}
    top_ms, low_ms = frame["360p"] - frame["audio"], frame["180p"] - frame["audio"]
    both_ms = frame["both"] - frame["audio"]
    print(
        f"  per composed frame, ms CPU: composite + sound {frame['audio']:.1f}, "
        f"360p {top_ms:.2f}, 180p {low_ms:.2f}, both {both_ms:.2f}"
    )

    def ms_per_frame(phase: str, name: str) -> float:
        cpu_s, frames = layer_frames.get((phase, name), (0.0, 0))
        return cpu_s * 1000 / frames if frames else float("nan")

    single = ms_per_frame("360p", "360p")
    low_alone = ms_per_frame("180p", "180p")
    print(
        "  encoder thread CPU per encoded frame (scale + encode), ms: "
        f"360p alone {single:.2f}, 180p alone {low_alone:.2f}, ladder (both) "
        f"{ms_per_frame('both', '360p'):.2f} + {ms_per_frame('both', '180p'):.2f}; "
        f"at {FPS} and {FPS / 2:g} fps that is {single * FPS / 10:.1f} % and "
        f"{low_alone * FPS / 20:.1f} % of one core"
    )
    print(
        f"process CPU above the audio-only phase: ladder (both) {both:.1f} / single layer "
        f"(360p) {top:.1f} = {both / top if top > 0 else float('inf'):.2f}; per composed "
        f"frame {both_ms:.2f} / {top_ms:.2f} ms (noisy on a loaded machine)"
    )

    def us_per_viewer_frame(phase: str, name: str) -> float:
        cpu_s, frames = layer_sends.get((phase, name), (0.0, 0))
        return cpu_s * 1e6 / frames if frames else float("nan")

    top_view, low_view = (
        us_per_viewer_frame("spread", "360p"),
        us_per_viewer_frame("spread", "180p"),
    )
    print(
        "  per viewer, viewers spread over the layers (packetise once, header + SRTP + send per "
        f"viewer), µs per frame: 360p {top_view:.0f}, 180p {low_view:.0f}; at {FPS} fps "
        f"{top_view * FPS / 1e4:.3f} % and {low_view * FPS / 1e4:.3f} % of one core per viewer; "
        f"all on 360p: {us_per_viewer_frame('all-360p', '360p'):.0f} µs"
    )

    def ms_per_composed(phase: str, names: tuple[str, ...]) -> float:
        cpu_s = sum(layer_frames.get((phase, name), (0.0, 0))[0] for name in names)
        return cpu_s * 1000 / composed_frames[phase] if composed_frames.get(phase) else 0.0

    # per composed frame: a layer at a lower frame rate encodes only some of them
    live_single = ms_per_composed("360p", ("360p",))
    live_ladder = ms_per_composed("both", ("360p", "180p"))
    ratio = live_ladder / live_single if live_single > 0 else float("inf")
    print(
        f"live, encoder threads per composed frame: ladder {live_ladder:.2f} / single layer "
        f"{live_single:.2f} ms = {ratio:.2f}"
    )
    verdict = "ok" if encoders_ratio < LADDER_LIMIT else "TOO COSTLY"
    print(
        f"ladder encode / single-layer encode, encoders alone, alternating: "
        f"{encoders_ratio:.2f} (must be < {LADDER_LIMIT}): {verdict}"
    )


def main() -> None:
    from loopback import keep_media_on_loopback

    keep_media_on_loopback()  # the server's station, and each viewer worker (started through here)
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
    parser.add_argument("--ladder", action="store_true", help="the ladder's cost, by phase")
    parser.add_argument("--repeats", type=int, default=3, help="--ladder: repetitions")
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tile = [int(v) for v in args.tile.split(",")]
        asyncio.run(worker_main(args.worker[0], args.worker[1], args.decode, tile))
        return
    Worker.niceness = args.viewer_nice
    if args.ladder:
        viewers = (args.viewers or [30])[0]
        asyncio.run(bench_ladder(viewers, args.window or 5.0, args.repeats, args.processes))
        return
    counts = args.viewers or ([10, 50] if args.quick else [10, 50, 100, 200, 400])
    window = args.window or (4.0 if args.quick else 8.0)
    asyncio.run(
        bench(counts, window, args.processes, args.modes, args.baseline_extra, args.verbose)
    )


if __name__ == "__main__":
    main()

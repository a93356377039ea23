"""Mediation rooms on one media node: selective forwarding against aiortc's MediaRelay.

Rooms of three members publishing 640x360 video at 15 fps plus audio, for 1, 2, 4 and 8
concurrent rooms, once with the node's own forwarding (``fanout``: publishers' encoded frames
forwarded as they are, see streaming.node.media.forward) and once with aiortc's plain MediaRelay
(decode, then one encode per subscriber: bench/relay_node.py), in the same run. The node runs in its own process so
its CPU is measured alone; the members are aiortc peers in this process that publish pre-encoded
loops (answering keyframe requests with a keyframe, as a live encoder does) and count the frames
they receive without decoding them (the receiver's decoder thread is replaced by one that passes
completed frames through), so that on a small machine the members do not starve the node they
are measuring.

Prints, per mode and room count: time from join to the first received frame (median, p95),
node CPU per room (% of one core), frames delivered as a share of frames sent, frames delivered
per CPU-second of the node, the members' own CPU and the load average while measuring.

    python bench/room.py [--rooms 1 2 4 8] [--seconds 6] [--modes fanout relay]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import itertools
import multiprocessing
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import av
import psutil
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loopback import keep_media_on_loopback  # noqa: E402
from relay_node import RelayMediaNode  # noqa: E402

from streaming.node.media.synthetic import (  # noqa: E402
    EncodedVideoLoopTrack,
    ToneAudioTrack,
    encode_video_loop,
)
from tests.streaming.probe import ProbePeer, wait_until  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 15
LOOP_FRAMES = 300
MEMBERS = (("expert", "red", 440.0), ("applicant", "green", 660.0), ("respondent", "blue", 880.0))


def counting_decoder_worker(loop, input_q, output_q, decode_error) -> None:  # noqa: ANN001
    """Stands in for aiortc's decoder thread in the members: completed frames, not decoded."""
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            return
        _, encoded_frame = task
        asyncio.run_coroutine_threadsafe(output_q.put(encoded_frame), loop)


# -- the node process ------------------------------------------------------------------------


def node_process(conn, forwarding: str) -> None:  # noqa: ANN001
    keep_media_on_loopback()
    asyncio.run(_serve(conn, forwarding))


async def _serve(conn, forwarding: str) -> None:  # noqa: ANN001
    from streaming.node.media.node import MediaNode

    node = RelayMediaNode() if forwarding == "relay" else MediaNode()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def handle(request_id: int, op: str, args: tuple) -> None:
        try:
            if op == "join":
                result = await node.join(*args)
            elif op == "layout":
                result = node.layout(*args)
            elif op == "counters":
                result = _counters(node)
            elif op == "shutdown":
                await node.shutdown()
                result = None
                stop.set()
            else:
                raise ValueError(op)
            conn.send((request_id, True, result))
        except Exception as exc:  # reported to the parent, which fails the run
            conn.send((request_id, False, repr(exc)))

    def reader() -> None:
        while True:
            try:
                request_id, op, args = conn.recv()
            except EOFError:
                loop.call_soon_threadsafe(stop.set)
                return
            asyncio.run_coroutine_threadsafe(handle(request_id, op, args), loop)
            if op == "shutdown":
                return

    threading.Thread(target=reader, daemon=True).start()
    await stop.wait()


def _counters(node) -> dict:  # noqa: ANN001
    """Video frames the node dropped for slow subscribers, and keyframe requests it sent on."""
    totals = {"dropped": 0, "plis_sent": 0}
    for room_id in node.rooms():
        room = node.room(room_id)
        for member in room.members.values():
            publication = member.published.get("video")
            if publication is not None and publication.forwarder is not None:
                for key in totals:
                    totals[key] += publication.forwarder.stats[key]
    return totals


class NodeClient:
    """Requests to the node process, answered concurrently."""

    def __init__(self, forwarding: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=node_process, args=(child, forwarding), daemon=True)
        self.process.start()
        self.ps = psutil.Process(self.process.pid)
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future] = {}
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        while True:
            try:
                request_id, ok, result = self.conn.recv()
            except (EOFError, OSError):
                return
            future = self._pending.pop(request_id)
            if ok:
                self._loop.call_soon_threadsafe(future.set_result, result)
            else:
                self._loop.call_soon_threadsafe(future.set_exception, RuntimeError(result))

    async def call(self, op: str, *args):  # noqa: ANN201
        request_id = next(self._ids)
        future = self._loop.create_future()
        self._pending[request_id] = future
        self.conn.send((request_id, op, args))
        return await asyncio.wait_for(future, 30)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    async def close(self) -> None:
        await self.call("shutdown")
        self.process.join(10)


# -- members publishing pre-encoded loops ------------------------------------------------------


class ReplayTrack(MediaStreamTrack):
    """Replays pre-encoded packets at their pace, with fresh timestamps."""

    def __init__(self, kind: str, payloads: list[bytes], period: float, step: int, rate: int):
        super().__init__()
        self.kind = kind
        self.payloads = payloads
        self.period = period
        self.step = step
        self.time_base = fractions.Fraction(1, rate)
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            delay = self._start + self.sent * self.period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        packet = av.Packet(self.payloads[self.sent % len(self.payloads)])
        packet.pts = self.sent * self.step
        packet.time_base = self.time_base
        self.sent += 1
        return packet


async def encode_audio_loop(tone: float) -> list[bytes]:
    source = ToneAudioTrack(tone)
    source._start = -1e9  # unpaced: produce the whole loop at once
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = 48_000, "stereo", "s16"
    codec.bit_rate = 48_000
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000, frame_size=960)
    payloads = []
    while len(payloads) < 250:
        for chunk in resampler.resample(await source.recv()):
            payloads.extend(bytes(p) for p in codec.encode(chunk))
    return payloads


# -- one measurement ----------------------------------------------------------------------------


async def run_rooms(forwarding: str, rooms: int, seconds: float, loops: dict) -> dict:
    node = NodeClient(forwarding)
    await asyncio.sleep(0.5)  # let the process import
    members = []  # (room, member, peer, join_started_at, video track, audio track)

    async def join(room: str, member: str, colour: str, tone: float) -> None:
        video = EncodedVideoLoopTrack(*loops[("video", colour)], fps=FPS)
        audio = ReplayTrack("audio", loops[("audio", tone)], 0.02, 960, 48_000)
        peer = ProbePeer(video=video, audio=audio, slots=2, analyse=False)
        started = time.monotonic()
        offer = await peer.offer()
        video.wire(next(s for s in peer.pc.getSenders() if s.track is video))
        answer = await node.call("join", room, member, member, offer)
        await peer.accept(answer)
        members.append((room, member, peer, started, video))

    await asyncio.gather(
        *(
            join(f"room{r}", member, colour, tone)
            for r in range(rooms)
            for member, colour, tone in MEMBERS
        )
    )
    layouts = {
        (room, member): await node.call("layout", room, member) for room, member, *_ in members
    }
    by_key = {
        (room, member): (peer, started, video) for room, member, peer, started, video in members
    }

    def pairs():
        for (room, viewer), layout in layouts.items():
            peer, started, _ = by_key[(room, viewer)]
            for entry in layout:
                publisher = by_key[(room, entry["member"])]
                yield peer.stream(entry["video_mid"]), max(started, publisher[1]), publisher[2]

    await wait_until(lambda: all(s is not None and s.frames for s, _, _ in pairs()), within=10)
    first_frame = sorted(
        (s.first_frame_at - t0) for s, t0, _ in pairs() if s is not None and s.first_frame_at
    )
    missing = sum(1 for s, _, _ in pairs() if s is None or not s.first_frame_at)

    # steady state window
    await asyncio.sleep(1.0)
    before = [(s.frames if s else 0, pub.sent) for s, _, pub in pairs()]
    members_process = psutil.Process()
    members_before = sum(members_process.cpu_times()[:2])
    load_before = os.getloadavg()[0]
    cpu_before, wall_before = node.cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu_used = node.cpu_seconds() - cpu_before
    wall = time.monotonic() - wall_before
    cpu = cpu_used / wall
    members_cpu = (sum(members_process.cpu_times()[:2]) - members_before) / wall
    after = [(s.frames if s else 0, pub.sent) for s, _, pub in pairs()]
    counters = await node.call("counters")
    received = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    sent = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))

    for _, _, peer, _, _ in members:
        await peer.close()
    await node.close()
    return {
        "first_median": statistics.median(first_frame) if first_frame else float("nan"),
        "first_p95": first_frame[max(0, int(len(first_frame) * 0.95) - 1)]
        if first_frame
        else float("nan"),
        "missing": missing,
        "cpu_per_room": 100 * cpu / rooms,
        "delivered": received / sent if sent else 0.0,
        # frames delivered per CPU-second of the node: comparable even when the machine is
        # shared and the node gets less CPU than it asks for
        "frames_per_cpu_s": received / cpu_used if cpu_used > 0 else float("nan"),
        # the members' own process: when it is near 100% the members, not the node, limit
        # what is delivered
        "members_cpu": 100 * members_cpu,
        "load": (load_before + os.getloadavg()[0]) / 2,
        "node": counters,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--modes", nargs="+", default=["fanout", "relay"])
    args = parser.parse_args()
    keep_media_on_loopback()
    import aiortc.rtcrtpreceiver

    aiortc.rtcrtpreceiver.decoder_worker = counting_decoder_worker

    loops = {}
    for _, colour, tone in MEMBERS:
        # a keyframe a second, and the loop restarts on one
        loops[("video", colour)] = await encode_video_loop(
            colour, width=WIDTH, height=HEIGHT, fps=FPS, frames=LOOP_FRAMES, keyframe_interval=FPS
        )
        loops[("audio", tone)] = await encode_audio_loop(tone)

    print(
        f"rooms of 3 members, {WIDTH}x{HEIGHT} @ {FPS} fps + Opus; node in its own process; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start"
    )
    results = {}
    for rooms in args.rooms:
        for mode in args.modes:
            results[(mode, rooms)] = await run_rooms(mode, rooms, args.seconds, loops)
            r = results[(mode, rooms)]
            print(f"  measured {mode:6} x{rooms}: {r}", file=sys.stderr)

    header = (
        f"{'mode':8}{'rooms':>6}{'1st frame med':>15}{'p95':>8}"
        f"{'CPU/room':>10}{'delivered':>11}{'frames/CPU-s':>14}{'no frame':>10}"
        f"{'members CPU':>13}{'load':>6}"
    )
    print(header)
    print("-" * len(header))
    for (mode, rooms), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(
            f"{mode:8}{rooms:>6}{r['first_median'] * 1000:>13.0f}ms{r['first_p95'] * 1000:>6.0f}ms"
            f"{r['cpu_per_room']:>9.1f}%{r['delivered'] * 100:>10.1f}%"
            f"{r['frames_per_cpu_s']:>14.0f}{r['missing']:>10}"
            f"{r['members_cpu']:>12.0f}%{r['load']:>6.1f}"
        )
    if {"fanout", "relay"} <= set(args.modes):
        print()
        print(
            f"{'rooms':>6}{'CPU relay/fanout':>18}{'delivered fanout':>18}{'delivered relay':>17}"
            f"{'frames/CPU-s fanout/relay':>27}"
        )
        for rooms in args.rooms:
            f, r = results[("fanout", rooms)], results[("relay", rooms)]
            ratio = r["cpu_per_room"] / f["cpu_per_room"] if f["cpu_per_room"] else float("nan")
            efficiency = (
                f["frames_per_cpu_s"] / r["frames_per_cpu_s"]
                if r["frames_per_cpu_s"] > 0
                else float("nan")
            )
            print(
                f"{rooms:>6}{ratio:>17.2f}x{f['delivered'] * 100:>17.1f}%{r['delivered'] * 100:>16.1f}%"
                f"{efficiency:>26.2f}x"
            )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    asyncio.run(main())

"""How soon the media node names the member who starts speaking, from the levels in their RTP
packets (streaming/node/media/speaker.py), and what the detection costs.

Three aiortc members on loopback; the speaking one plays a tone, the others silence; the tone
moves from member to member ``--turns`` times. Prints the delay from the tone's start to the
node's ``speaker`` event (median and worst), the packets read, and the CPU time of the detection
itself (the per-packet reading and the ticks), measured around its two entry points.

    python bench/speaker.py [--turns 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loopback import keep_media_on_loopback  # noqa: E402

from streaming.node.media import speaker  # noqa: E402
from streaming.node.media.node import MediaNode  # noqa: E402
from tests.streaming.probe import ProbePeer, wait_until  # noqa: E402

MEMBERS = ("expert", "applicant", "respondent")


def timed(cost: list[float], function):
    def wrapper(*args, **kwargs):
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            cost[0] += time.thread_time() - started

    return wrapper


async def run(turns: int) -> None:
    cost = [0.0]
    speaker.SpeakerDetector.heard = timed(cost, speaker.SpeakerDetector.heard)
    speaker.SpeakerDetector.tick = timed(cost, speaker.SpeakerDetector.tick)
    events: list[tuple[float, str]] = []
    node = MediaNode(
        on_event=lambda room, member, event, data: (
            events.append((time.monotonic(), member)) if event == "speaker" else None
        )
    )
    peers = {}
    for member in MEMBERS:
        peer = ProbePeer(tone=440.0, analyse=False, slots=2)
        peer.audio.amplitude = 0.0
        await peer.accept(await node.join("bench", member, member, await peer.offer()))
        peers[member] = peer
    detector = node.room("bench").speakers
    await wait_until(lambda: detector.packets > 300, within=30)
    delays = []
    started_cpu = time.process_time()
    started = time.monotonic()
    for turn in range(turns):
        member = MEMBERS[turn % len(MEMBERS)]
        for other, peer in peers.items():
            peer.audio.amplitude = 0.3 if other == member else 0.0
        began = time.monotonic()
        named = await wait_until(
            lambda m=member, b=began: next((t for t, who in events if who == m and t >= b), None),
            within=10,
        )
        delays.append((named - began) if named else float("inf"))
        await asyncio.sleep(2.0)
    wall = time.monotonic() - started
    process_cpu = time.process_time() - started_cpu
    for peer in peers.values():
        await peer.close()
    await node.shutdown()
    print(f"turns: {turns}, speaker events: {len(events)}")
    print(
        f"delay from the first sound to the speaker event: median "
        f"{1000 * statistics.median(delays):.0f} ms, worst {1000 * max(delays):.0f} ms"
    )
    print(f"audio packets read: {detector.packets}")
    print(
        f"detection CPU: {1000 * cost[0]:.1f} ms in {wall:.1f} s "
        f"({100 * cost[0] / wall:.3f} % of a core; the whole process: {100 * process_cpu / wall:.0f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=8)
    args = parser.parse_args()
    keep_media_on_loopback()
    asyncio.run(run(args.turns))


if __name__ == "__main__":
    main()

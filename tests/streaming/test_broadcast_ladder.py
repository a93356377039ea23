"""The livestream's ladder on a real, throttled link: a viewer in a network namespace of its own,
behind a veth pair whose node side is limited to less than the top layer's bitrate (a ``tc tbf``
token bucket: packets beyond the rate wait, then are dropped, as on a congested mobile link),
moves to a lower layer and back up when the limit is lifted; every layer is encoded once however
many viewers take it. A second test puts random loss on one viewer's link (``tc netem``, or where
the kernel has no netem, a classic BPF filter on the link that drops packets at random): that
viewer steps down and back up when the loss ends, while a viewer on a clean link keeps the top
layer."""

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from streaming.node.broadcast.broadcast import Broadcast
from streaming.node.broadcast.scene import Scene
from streaming.node.internals import aioice_private
from tests.netns import needs_namespaces, run, veth_namespace
from tests.streaming.broadcast_peers import three_members, watch

pytestmark = [pytest.mark.media, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT, FPS = 640, 360, 15
LIMIT = ("tc", "qdisc", "add")
# Well below what the top layer sends (with sound), above what the audio-only layer needs.
LIMIT_OPTIONS = ("rate", "120kbit", "burst", "6kb", "latency", "100ms")


# A classic BPF program for a direct-action tc filter: drop (TC_ACT_SHOT) when a random 32-bit
# number is below LOSS × 2**32, else pass (TC_ACT_OK). "ld rand" is the ancillary load SKF_AD_RANDOM.
def random_drop_bytecode(loss: float) -> str:
    threshold = int(loss * 2**32)
    program = [
        (0x20, 0, 0, 0xFFFFF000 + 0x38),  # ld rand
        (0x35, 1, 0, threshold),  # jge threshold -> pass
        (0x06, 0, 0, 2),  # ret TC_ACT_SHOT
        (0x06, 0, 0, 0),  # ret TC_ACT_OK
    ]
    return ",".join([str(len(program)), *(" ".join(map(str, op)) for op in program)])


@contextlib.contextmanager
def random_loss(device: str, loss: float):
    """Packets leaving ``device`` are lost at random with probability ``loss`` until the block
    ends: netem where the kernel has it, else a BPF filter on the device's egress."""
    try:
        run("tc", "qdisc", "add", "dev", device, "root", "netem", "loss", f"{loss:.0%}")
        remove = ("tc", "qdisc", "del", "dev", device, "root")
    except subprocess.CalledProcessError:
        run("tc", "qdisc", "add", "dev", device, "clsact")
        remove = ("tc", "qdisc", "del", "dev", device, "clsact")
        run("tc", "filter", "add", "dev", device, "egress", "bpf", "da", "bytecode",
            random_drop_bytecode(loss))  # fmt: skip
    try:
        yield
    finally:
        run(*remove)


class NamespacedViewer:
    """tests/streaming/netns_viewer.py inside the namespace, and what it last reported."""

    def __init__(self, process):
        self.process = process
        self.report = {"frames": 0, "size": None}
        self._reader = None

    @classmethod
    async def start(cls, namespace, viewer_address, node_address):
        process = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "tests.streaming.netns_viewer",
            viewer_address,
            node_address,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return cls(process)

    async def offer(self) -> str:
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        return json.loads(line)["offer"]

    async def answer(self, sdp: str) -> None:
        self.process.stdin.write((json.dumps({"answer": sdp}) + "\n").encode())
        await self.process.stdin.drain()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self):
        while line := await self.process.stdout.readline():
            self.report = json.loads(line)

    async def frames_of(self, size, count, seconds):
        """Wait until ``count`` more frames of ``size`` arrived."""
        deadline = time.monotonic() + seconds
        start = None
        while time.monotonic() < deadline:
            if self.report.get("size") == list(size):
                if start is None:
                    start = self.report["frames"]
                elif self.report["frames"] - start >= count:
                    return True
            await asyncio.sleep(0.2)
        return False

    async def stop(self):
        if self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(self.process.wait(), 10)
        if self._reader is not None:
            self._reader.cancel()


async def layer_within(broadcast, viewer_id, wanted, seconds):
    """Seconds until the viewer is on a layer for which ``wanted(name)`` holds, or None."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if wanted(broadcast.viewer_layer(viewer_id)):
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    return None


def test_a_throttled_viewer_moves_down_the_ladder_and_back_up_and_each_layer_is_encoded_once(
    namespace,
):
    name, device, node_address, viewer_address = namespace
    # the node answers on loopback (the local viewers) and on its end of the veth pair
    aioice_private.confine_host_addresses(
        [*settings.ICE_HOST_ADDRESSES, node_address], remotes=[viewer_address]
    )

    async def scenario():
        scene = Scene(
            category="邻里纠纷", community="幸福里社区", state="live", members=three_members()
        )
        broadcast = Broadcast(scene, width=WIDTH, height=HEIGHT, fps=FPS)
        await broadcast.start()
        top = broadcast.ladder[0].name
        local = [await watch(broadcast), await watch(broadcast)]
        remote = await NamespacedViewer.start(name, viewer_address, node_address)
        result = {}
        try:
            viewer_id, answer = await broadcast.add_viewer(await remote.offer())
            await remote.answer(answer)
            # the throttled viewer sees the full picture first
            result["full_before"] = await remote.frames_of((WIDTH, HEIGHT), 15, 60)
            result["viewers_on_top"] = broadcast.layer_stats()[top]["viewers"]

            run(*LIMIT, "dev", device, "root", "tbf", *LIMIT_OPTIONS)
            result["down_after"] = await layer_within(broadcast, viewer_id, lambda n: n != top, 10)
            lowest_seen = set()
            # while the link is limited, the viewer stays below the top layer
            for _ in range(30):
                lowest_seen.add(broadcast.viewer_layer(viewer_id))
                await asyncio.sleep(0.2)
            result["while_limited"] = lowest_seen
            result["layers_while_limited"] = broadcast.layer_stats()
            result["layer_while_limited"] = broadcast.viewer_layer(viewer_id)
            result["composed_while_limited"] = broadcast.stats["frames_composed"]

            run("tc", "qdisc", "del", "dev", device, "root")
            result["up_after"] = await layer_within(broadcast, viewer_id, lambda n: n == top, 45)
            result["full_after"] = await remote.frames_of((WIDTH, HEIGHT), 5, 30)
            result["layers"] = broadcast.layer_stats()
            result["composed"] = broadcast.stats["frames_composed"]
            # the local viewers kept receiving throughout
            result["local_frames"] = [await viewer.frame() for viewer in local]
        finally:
            await remote.stop()
            for viewer in local:
                await viewer.close()
            await broadcast.stop()
        return result

    try:
        result = asyncio.run(scenario())
    finally:
        aioice_private.confine_host_addresses(settings.ICE_HOST_ADDRESSES)

    assert result["full_before"]
    assert result["viewers_on_top"] == 3
    # within 10 s of the limit the viewer is on a lower layer, and stays below the top
    assert result["down_after"] is not None
    assert "360p" not in result["while_limited"]
    # the two other viewers kept the top layer: one encode served both
    limited = result["layers_while_limited"]
    assert limited["360p"]["viewers"] == 2
    assert limited[result["layer_while_limited"]]["viewers"] == 1
    # back on the top layer once the link recovers, with the full picture arriving again
    assert result["up_after"] is not None
    assert result["full_after"]
    # every layer encoded once, however many viewers took it: no layer encoded more frames than
    # were composed, with three viewers on the top layer at the start
    for layers, composed in (
        (result["layers_while_limited"], result["composed_while_limited"]),
        (result["layers"], result["composed"]),
    ):
        for name, layer in layers.items():
            assert layer["frames_encoded"] <= composed, (name, layer, composed)
    assert result["layers"]["180p"]["frames_encoded"] > 0  # the lower layer did run
    assert all(frame is not None for frame in result["local_frames"])


def test_random_loss_moves_the_lossy_viewer_down_and_back_up_while_a_clean_one_stays_on_top():
    needs_namespaces()
    with veth_namespace() as lossy, veth_namespace() as clean:
        aioice_private.confine_host_addresses(
            [*settings.ICE_HOST_ADDRESSES, lossy[2], clean[2]], remotes=[lossy[3], clean[3]]
        )
        try:
            result = asyncio.run(lossy_and_clean(lossy, clean))
        finally:
            aioice_private.confine_host_addresses(settings.ICE_HOST_ADDRESSES)

    assert result["full_before"] == [True, True]
    # within 10 s of the loss the lossy viewer is on a lower layer, and stays below the top
    assert result["down_after"] is not None
    assert "360p" not in result["lossy_while_lossy"]
    # the viewer on the clean link never left the top layer
    assert result["clean_layers"] == {"360p"}
    assert result["clean_switches"] == 0
    assert result["clean_frames_while_lossy"]
    # the loss ends: back on the top layer with the full picture arriving
    assert result["up_after"] is not None
    assert result["full_after"]


async def lossy_and_clean(lossy, clean):
    scene = Scene(
        category="邻里纠纷", community="幸福里社区", state="live", members=three_members()
    )
    broadcast = Broadcast(scene, width=WIDTH, height=HEIGHT, fps=FPS)
    await broadcast.start()
    top = broadcast.ladder[0].name
    viewers, ids = [], []
    result = {}
    try:
        for name, _device, node_address, viewer_address in (lossy, clean):
            viewer = await NamespacedViewer.start(name, viewer_address, node_address)
            viewers.append(viewer)
            viewer_id, answer = await broadcast.add_viewer(await viewer.offer())
            await viewer.answer(answer)
            ids.append(viewer_id)
        result["full_before"] = [
            await viewer.frames_of((WIDTH, HEIGHT), 15, 60) for viewer in viewers
        ]
        clean_layers = {broadcast.viewer_layer(ids[1])}
        with random_loss(lossy[1], 0.10):
            result["down_after"] = await layer_within(broadcast, ids[0], lambda n: n != top, 10)
            clean_layers.add(broadcast.viewer_layer(ids[1]))
            seen = set()
            clean_frames = viewers[1].report["frames"]
            for _ in range(40):  # 8 s more of loss
                seen.add(broadcast.viewer_layer(ids[0]))
                clean_layers.add(broadcast.viewer_layer(ids[1]))
                await asyncio.sleep(0.2)
            result["lossy_while_lossy"] = seen
            result["clean_frames_while_lossy"] = viewers[1].report["frames"] - clean_frames > 60
        result["up_after"] = await layer_within(broadcast, ids[0], lambda n: n == top, 60)
        clean_layers.add(broadcast.viewer_layer(ids[1]))
        result["full_after"] = await viewers[0].frames_of((WIDTH, HEIGHT), 5, 30)
        result["clean_layers"] = clean_layers
        result["clean_switches"] = broadcast.viewers[ids[1]].policy.switches
    finally:
        for viewer in viewers:
            await viewer.stop()
        await broadcast.stop()
    return result


# a deadlocked encoder thread would hold the broadcast's stop for ever: fail sooner
@pytest.mark.timeout(180)
def test_a_viewer_back_from_sound_only_gets_the_picture_of_each_layer_it_steps_up_to(tmp_path):
    """From the audio-only layer to the half-size picture, then the full one: each step brings
    pictures of that size (the half-size layer had no viewer while this one was on sound). HLS
    runs too, as in production: its half-size rendition scales the same composite frames as the
    WebRTC layer, in another thread (through one shared swscale context, the two deadlocked and
    the WebRTC layer sent nothing again)."""

    async def frames_of(viewer, size, count):
        got = 0
        deadline = time.monotonic() + 15
        while got < count and time.monotonic() < deadline:
            frame = await viewer.frame()
            if (frame.width, frame.height) == size:
                got += 1
        return got

    async def scenario():
        scene = Scene(
            category="邻里纠纷", community="幸福里社区", state="live", members=three_members()
        )
        broadcast = Broadcast(
            scene, width=WIDTH, height=HEIGHT, fps=FPS, hls_directory=tmp_path / "hls"
        )
        await broadcast.start()
        viewer = await watch(broadcast)
        (viewer_id,) = broadcast.viewers
        result = {}
        try:
            result["top"] = await frames_of(viewer, (WIDTH, HEIGHT), 5)
            broadcast.set_viewer_layer(viewer_id, 1)
            result["half"] = await frames_of(viewer, (WIDTH // 2, HEIGHT // 2), 5)
            broadcast.set_viewer_layer(viewer_id, len(broadcast.ladder) - 1)
            # long enough for the half-size layer's encoder to have stopped (no one on it)
            await asyncio.sleep(10)
            broadcast.set_viewer_layer(viewer_id, 1)
            result["half_again"] = await frames_of(viewer, (WIDTH // 2, HEIGHT // 2), 15)
            broadcast.set_viewer_layer(viewer_id, 0)
            result["top_again"] = await frames_of(viewer, (WIDTH, HEIGHT), 5)
        finally:
            await viewer.close()
            await broadcast.stop()
        return result

    # (15 half-size frames: two seconds of its half frame rate, not one keyframe and a stall)
    assert asyncio.run(scenario()) == {"top": 5, "half": 5, "half_again": 15, "top_again": 5}

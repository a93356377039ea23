import asyncio
import io
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest
from django.core.management import call_command

from privacy.sealed import CHUNK, HEADER, NONCE, TAG, SealedReader, SealError
from streaming.node.media.compose import GridCompositor, Tile, grid_shape
from streaming.node.media.node import MediaNode
from streaming.node.media.synthetic import PALETTE, SyntheticVideoTrack, closest_colour
from tests.streaming.probe import ProbePeer, wait_until

MEMBERS = {"expert": ("red", 440.0), "applicant": ("green", 660.0), "respondent": ("blue", 880.0)}


def tile_colours(frame, count):
    """The palette colour at the centre of each grid cell."""
    columns, rows = grid_shape(count)
    rgb_like = frame.reformat(format="yuv420p")
    data = rgb_like.to_ndarray()
    h, w = frame.height, frame.width
    y = data[:h]
    chroma = data[h:].reshape(-1)
    q = (h // 2) * (w // 2)
    u = chroma[:q].reshape(h // 2, w // 2)
    v = chroma[q:].reshape(h // 2, w // 2)
    names = []
    for index in range(count):
        cx = (index % columns) * (w // columns) + w // columns // 2
        cy = (index // columns) * (h // rows) + h // rows // 3
        got = (int(y[cy, cx]), int(u[cy // 2, cx // 2]), int(v[cy // 2, cx // 2]))
        names.append(
            min(
                PALETTE,
                key=lambda n: sum((a - b) ** 2 for a, b in zip(PALETTE[n], got, strict=True)),
            )
        )
    return names


def test_grid_compositor_places_each_member_in_its_cell():
    async def frames():
        return [await SyntheticVideoTrack(c).recv() for c in ("red", "green", "blue")]

    tiles = [
        Tile(label=label, frame=f)
        for label, f in zip(("调解员", "申请人", "被申请人"), asyncio.run(frames()), strict=True)
    ]
    frame = GridCompositor(width=640, height=360).compose(tiles)
    assert (frame.width, frame.height) == (640, 360)
    assert tile_colours(frame, 3) == ["red", "green", "blue"]


def test_two_compositors_scale_one_shared_frame_from_two_threads_at_once():
    """A member's decoded frame goes to the recorder (a worker thread) and to the broadcast
    (the event loop) at the same time. Scaling it through the frame's own swscale context from
    both crashed or deadlocked the process; each compositor scales with its own. Run in a child
    process so that a regression fails this test instead of killing the test run."""
    script = textwrap.dedent(
        """
        import threading, time
        import numpy as np
        from av import VideoFrame
        from streaming.node.media.compose import GridCompositor, Tile

        shared = VideoFrame.from_ndarray(
            np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8),
            format="rgb24",
        ).reformat(format="yuv420p")
        until = time.monotonic() + 1.5
        made = []

        def compose(width, height):
            compositor = GridCompositor(width=width, height=height)
            count = 0
            while time.monotonic() < until:
                compositor.compose([Tile(label="申请人", frame=shared)] * 2)
                count += 1
            made.append(count)

        threads = [threading.Thread(target=compose, args=size, daemon=True)
                   for size in ((640, 360), (426, 240))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        print("stuck" if any(t.is_alive() for t in threads) else f"ok {min(made)}")
        """
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok "), result.stdout
    assert int(result.stdout.split()[1]) > 0


def test_a_recording_opens_its_encoders_before_its_loops_encode_on_two_threads(tmp_path):
    """The video loop encodes on a worker thread while the audio loop muxes on the event loop,
    and PyAV's first mux opens every encoder not yet open: left to the loops, the video encoder
    could be opened on two threads at once (a crash). start() opens both and writes the header
    before either loop runs."""
    from streaming.node.media.recorder import RoomRecorder

    async def scenario():
        recorder = RoomRecorder(lambda: [], tmp_path / "early.mp4")
        await recorder.start()
        # nothing has run on the loops yet: start() did not yield to them after making them
        opened = (recorder._video.codec_context.is_open, recorder._audio.codec_context.is_open)
        written = recorder._sink.size
        await recorder.stop()
        return opened, written

    opened, written = asyncio.run(scenario())
    assert opened == (True, True)
    assert written > 0  # the header (empty moov) is on its way to the disk


@pytest.mark.media
def test_recording_writes_a_playable_composite_mp4_with_its_sha256(tmp_path):
    path = tmp_path / "hearing.mp4"

    async def scenario():
        node = MediaNode(video_size=(320, 180))
        peers = {}
        for member, (colour, tone) in MEMBERS.items():
            peer = ProbePeer(colour=colour, tone=tone)
            await peer.accept(await node.join("r1", member, member, await peer.offer()))
            peers[member] = peer
        await wait_until(
            lambda: all(
                node.publication("r1", m, "video") and node.publication("r1", m, "video").hub.latest
                for m in MEMBERS
            )
        )
        await node.start_recording("r1", str(path))
        await asyncio.sleep(2.5)
        result = await node.stop_recording("r1")
        for peer in peers.values():
            await peer.close()
        await node.shutdown()
        return result

    result = asyncio.run(scenario())

    assert result["path"] == str(path)
    with SealedReader(path) as reader:
        assert result["sha256"] == reader.sha256() and result["size"] == reader.size
    assert (tmp_path / "hearing.mp4.sha256").read_text().startswith(result["sha256"])
    # sealed on disk: not an MP4 there, only through the reader
    assert b"ftyp" not in path.read_bytes()[:4096]
    with SealedReader(path) as reader, av.open(reader) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        frames = list(container.decode(video=0))
    with SealedReader(path) as reader, av.open(reader) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    video_seconds = float(frames[-1].pts * frames[-1].time_base)
    assert abs(video_seconds - result["duration"]) < 0.6
    assert abs(len(samples) / 48000 - result["duration"]) < 0.6
    assert tile_colours(frames[-1], 3) == ["red", "green", "blue"]
    # the three tones are mixed in
    assert np.sqrt(np.mean(samples[-24000:] ** 2)) > 0.1


STRIDE = CHUNK + NONCE + TAG


def test_a_recording_cut_short_by_a_crash_still_plays(tmp_path):
    path = tmp_path / "crashed.mp4"
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from streaming.node.media.hub import FrameHub
        from streaming.node.media.recorder import RoomRecorder
        from streaming.node.media.synthetic import SyntheticVideoTrack, ToneAudioTrack

        async def main():
            video = FrameHub(SyntheticVideoTrack("green"), kind="video")
            audio = FrameHub(ToneAudioTrack(500), kind="audio")
            recorder = RoomRecorder(lambda: [("m", "expert", video, audio)], {str(path)!r}, fps=15)
            await recorder.start()
            # a few fragments' worth of frames (one keyframe a second), however slow the machine,
            # and two whole sealed chunks on disk (what is still being filled is lost)
            for _ in range(1200):
                if recorder.video_frames >= 40 and os.path.getsize({str(path)!r}) > {2 * STRIDE + HEADER.size}:
                    break
                await asyncio.sleep(0.05)
            os._exit(3)  # no trailer, no close: what a crash leaves behind

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=".", timeout=60, check=False)
    assert done.returncode == 3
    # sealed as it was written: unreadable as it is (no final chunk), readable once finished
    with pytest.raises(SealError):
        SealedReader(path)
    call_command("finish_recording", str(path), stdout=io.StringIO())
    with SealedReader(path) as reader, av.open(reader) as container:
        frames = list(container.decode(video=0))
    assert len(frames) >= 15
    assert closest_colour(frames[-1]) == "green"

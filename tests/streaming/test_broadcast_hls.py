import asyncio

import av
import pytest

from streaming.node.broadcast.broadcast import Broadcast
from streaming.node.broadcast.hls import MASTER_PLAYLIST_NAME, PLAYLIST_NAME
from streaming.node.broadcast.scene import Scene
from streaming.node.broadcast.synthetic import read_stamp
from tests.streaming.broadcast_peers import three_members, tile

pytestmark = pytest.mark.media

WIDTH, HEIGHT, FPS = 320, 180, 15


def segments_listed(playlist) -> list[str]:
    if not playlist.exists():
        return []
    return [line for line in playlist.read_text().splitlines() if line.endswith(".ts")]


async def wait_for_segments(playlist, count: int) -> None:
    # a safety net for a broken writer, not a timing assertion
    for _ in range(300):
        if len(segments_listed(playlist)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} segments in {playlist}")


def first_picture(path):
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24"), container.streams.audio[0].codec_context.name


def test_hls_playlist_and_segments_appear_play_and_advance_and_are_kept_with_recording_consent(
    tmp_path,
):
    directory = tmp_path / "hls" / "hearing"

    async def scenario():
        scene = Scene(
            category="邻里纠纷", community="幸福里社区", state="live", members=three_members()
        )
        broadcast = Broadcast(
            scene, width=WIDTH, height=HEIGHT, fps=FPS, hls_directory=directory, keep_replay=True
        )
        await broadcast.start()
        await wait_for_segments(directory / PLAYLIST_NAME, 2)
        layout = broadcast.video.layout()
        replay = await broadcast.stop()
        return layout, replay

    layout, replay = asyncio.run(scenario())

    playlist = (directory / PLAYLIST_NAME).read_text()
    segments = segments_listed(directory / PLAYLIST_NAME)
    assert replay == directory
    assert "#EXT-X-ENDLIST" in playlist
    assert "#EXT-X-TARGETDURATION:2" in playlist
    counters = []
    for name in segments[:2]:
        picture, audio_codec = first_picture(directory / name)
        assert picture.shape == (HEIGHT, WIDTH, 3)
        assert audio_codec == "aac"
        counters.append(read_stamp(tile(picture, layout["mediator"]))[0])
    # each segment starts with a keyframe two seconds of picture after the previous one
    assert counters[1] - counters[0] >= FPS
    with av.open(str(directory / PLAYLIST_NAME)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) >= 2 * FPS

    # the ladder: a master playlist naming a rendition per layer, best first
    master = (directory / MASTER_PLAYLIST_NAME).read_text().splitlines()
    assert master[0] == "#EXTM3U"
    variants = [line for line in master if line and not line.startswith("#")]
    assert variants == [PLAYLIST_NAME, "90p.m3u8", "audio.m3u8"]
    streams = [line for line in master if line.startswith("#EXT-X-STREAM-INF:")]
    assert "RESOLUTION=320x180" in streams[0] and "RESOLUTION=160x90" in streams[1]
    assert 'CODECS="mp4a.40.2"' in streams[2]
    bandwidths = [int(line.split("BANDWIDTH=")[1].split(",")[0]) for line in streams]
    assert bandwidths == sorted(bandwidths, reverse=True)
    # the lower rendition: the same picture at half the size, with the same sound
    lower = segments_listed(directory / "90p.m3u8")
    assert [name.startswith("90p_segment_") for name in lower] == [True] * len(lower)
    picture, audio_codec = first_picture(directory / lower[0])
    assert picture.shape == (HEIGHT // 2, WIDTH // 2, 3)
    assert audio_codec == "aac"
    # segments of every rendition start at the same picture: as many of them, as long
    assert len(lower) == len(segments)
    # the audio-only rendition has no picture
    sound = segments_listed(directory / "audio.m3u8")
    assert sound
    with av.open(str(directory / sound[0])) as container:
        assert not container.streams.video
        assert container.streams.audio[0].codec_context.name == "aac"


def test_hls_without_consent_to_recording_is_live_only_and_leaves_nothing_behind(tmp_path):
    directory = tmp_path / "hls" / "hearing"

    async def scenario():
        scene = Scene(state="live", members=three_members())
        broadcast = Broadcast(
            scene, width=WIDTH, height=HEIGHT, fps=FPS, hls_directory=directory, keep_replay=False
        )
        await broadcast.start()
        await wait_for_segments(directory / PLAYLIST_NAME, 1)
        live_playlist = (directory / PLAYLIST_NAME).read_text()
        replay = await broadcast.stop()
        return live_playlist, replay

    live_playlist, replay = asyncio.run(scenario())

    assert "#EXT-X-PLAYLIST-TYPE:EVENT" not in live_playlist
    assert replay is None
    assert not directory.exists()


def test_a_replay_is_not_kept_when_recording_consent_is_withdrawn_before_the_end(tmp_path):
    directory = tmp_path / "hls" / "hearing"

    async def scenario():
        scene = Scene(state="live", members=three_members())
        broadcast = Broadcast(
            scene, width=WIDTH, height=HEIGHT, fps=FPS, hls_directory=directory, keep_replay=True
        )
        await broadcast.start()
        await wait_for_segments(directory / PLAYLIST_NAME, 1)
        return await broadcast.stop(keep_replay=False)

    assert asyncio.run(scenario()) is None
    assert not directory.exists()

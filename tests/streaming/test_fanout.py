import asyncio
import fractions

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming.node.media.fanout import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFanout
from streaming.node.media.synthetic import (
    SyntheticVideoTrack,
    ToneAudioTrack,
    audio_rms,
    audio_samples,
    closest_colour,
    dominant_frequency,
    read_counter,
)


class CountingSource(MediaStreamTrack):
    """Wraps a source and counts how often it was read."""

    def __init__(self, inner):
        super().__init__()
        self.kind = inner.kind
        self.inner = inner
        self.reads = 0

    async def recv(self):
        self.reads += 1
        return await self.inner.recv()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


async def take(track, n):
    return [await asyncio.wait_for(track.recv(), 5) for _ in range(n)]


def decode_video(packets):
    decoder = av.CodecContext.create("libvpx", "r")
    frames = []
    for packet in packets:
        frames.extend(decoder.decode(av.Packet(bytes(packet))))
    return frames


def test_every_subscriber_gets_the_same_packets_from_one_encode():
    async def scenario():
        fanout = EncodedFanout(SyntheticVideoTrack("blue", fps=60), kind="video")
        subscribers = [fanout.subscribe() for _ in range(3)]
        received = await asyncio.gather(*(take(s, 20) for s in subscribers))
        stats = dict(fanout.stats)
        await fanout.stop()
        return received, stats

    received, stats = asyncio.run(scenario())

    first, second, third = received
    # same objects, not copies: one encode serves all
    assert all(a is b is c for a, b, c in zip(first, second, third, strict=True))
    assert stats["subscribers"] == 3
    assert stats["packets_out"] >= 20
    assert stats["frames_in"] - 1 <= stats["packets_out"] <= stats["frames_in"]
    assert first[0].is_keyframe
    assert all(p.time_base == VIDEO_TIME_BASE for p in first)
    pts = [p.pts for p in first]
    assert pts == sorted(set(pts))
    frames = decode_video(first)
    assert {closest_colour(f) for f in frames} == {"blue"}
    counters = [read_counter(f) for f in frames]
    assert counters == sorted(counters) and counters[-1] > counters[0]


def test_slow_subscriber_drops_oldest_and_never_slows_the_others():
    async def scenario():
        fanout = EncodedFanout(SyntheticVideoTrack("green", fps=60), kind="video", queue_size=4)
        slow = fanout.subscribe()
        fast = fanout.subscribe()
        got = await take(fast, 40)
        stats = dict(fanout.stats)
        backlog = len(slow._queue)
        await fanout.stop()
        return got, stats, slow, backlog

    got, stats, slow, backlog = asyncio.run(scenario())

    assert len(got) == 40
    assert stats["frames_in"] <= 41  # the fast one was never held back by the slow one
    assert backlog <= 4
    assert slow.dropped > 0 and stats["dropped"] == slow.dropped
    # after an overflow the slow subscriber resumes at a keyframe, never mid-GOP
    queued = list(slow._queue)
    assert not queued or queued[0].is_keyframe


def test_encodes_only_while_subscribed():
    async def scenario():
        source = CountingSource(SyntheticVideoTrack("red", fps=100))
        fanout = EncodedFanout(source, kind="video")
        await asyncio.sleep(0.1)
        idle_reads = source.reads
        track = fanout.subscribe()
        await take(track, 5)
        fanout.unsubscribe(track)
        await asyncio.sleep(0.05)
        after_unsubscribe = source.reads
        await asyncio.sleep(0.1)
        stats = dict(fanout.stats)
        reads_later = source.reads
        await fanout.stop()
        return idle_reads, after_unsubscribe, reads_later, stats

    idle_reads, after_unsubscribe, reads_later, stats = asyncio.run(scenario())

    assert idle_reads == 0
    assert after_unsubscribe >= 5
    assert reads_later == after_unsubscribe
    assert stats["subscribers"] == 0


class StepSource(MediaStreamTrack):
    """Frames on demand, advancing a fake clock by one frame each time."""

    kind = "video"

    def __init__(self, clock, fps=30):
        super().__init__()
        self.clock = clock
        self.fps = fps
        self.inner = SyntheticVideoTrack("yellow", fps=1e9)

    async def recv(self):
        self.clock.now += 1 / self.fps
        await asyncio.sleep(0)
        return await self.inner.recv()


def test_keyframe_requests_are_rate_limited_and_gop_is_short():
    async def scenario():
        clock = FakeClock()
        fanout = EncodedFanout(
            StepSource(clock), kind="video", gop_seconds=1.0, keyframe_min_interval=0.5, clock=clock
        )
        track = fanout.subscribe()
        packets = []
        for _ in range(90):  # 3 s of video, a keyframe request before every frame
            fanout.request_keyframe()
            packets.append(await asyncio.wait_for(track.recv(), 5))
        await fanout.stop()
        quiet_clock = FakeClock()
        quiet = EncodedFanout(
            StepSource(quiet_clock), kind="video", gop_seconds=1.0, clock=quiet_clock
        )
        quiet_track = quiet.subscribe()
        quiet_packets = [await asyncio.wait_for(quiet_track.recv(), 5) for _ in range(90)]
        await quiet.stop()
        return packets, quiet_packets

    packets, quiet_packets = asyncio.run(scenario())

    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    # one every 0.5 s (15 frames) at most, however many requests
    assert 5 <= len(keyframes) <= 7
    assert all(b - a >= 14 for a, b in zip(keyframes, keyframes[1:], strict=False))
    quiet_keyframes = [i for i, p in enumerate(quiet_packets) if p.is_keyframe]
    # without requests, the GOP is one second
    assert 3 <= len(quiet_keyframes) <= 4


def test_set_source_switches_content_for_existing_subscribers():
    async def scenario():
        fanout = EncodedFanout(SyntheticVideoTrack("red", fps=60), kind="video")
        track = fanout.subscribe()
        before = await take(track, 10)
        fanout.set_source(SyntheticVideoTrack("cyan", fps=60))
        after = await take(track, 30)
        await fanout.stop()
        return before, after

    before, after = asyncio.run(scenario())

    frames = decode_video(before + after)
    assert closest_colour(frames[0]) == "red"
    assert closest_colour(frames[-1]) == "cyan"
    pts = [p.pts for p in before + after]
    assert pts == sorted(set(pts))


def test_subscriber_moves_between_fanouts_with_advancing_timestamps():
    async def scenario():
        a = EncodedFanout(SyntheticVideoTrack("red", fps=60), kind="video")
        b = EncodedFanout(SyntheticVideoTrack("magenta", fps=60), kind="video")
        track = a.subscribe()
        first = await take(track, 5)
        b.subscribe(track)
        second = await take(track, 5)
        stats = (dict(a.stats), dict(b.stats))
        await a.stop()
        await b.stop()
        return first, second, stats

    first, second, (stats_a, stats_b) = asyncio.run(scenario())

    assert second[0].is_keyframe
    assert second[0].pts > first[-1].pts
    assert stats_a["subscribers"] == 0 and stats_b["subscribers"] == 1
    assert closest_colour(decode_video(second)[-1]) == "magenta"


def test_audio_is_encoded_once_to_opus_with_continuous_timestamps():
    async def scenario():
        fanout = EncodedFanout(ToneAudioTrack(600), kind="audio")
        one, two = fanout.subscribe(), fanout.subscribe()
        got = await asyncio.gather(take(one, 25), take(two, 25))
        await fanout.stop()
        return got

    one, two = asyncio.run(scenario())

    assert all(a is b for a, b in zip(one, two, strict=True))
    assert all(p.time_base == AUDIO_TIME_BASE for p in one)
    steps = {b.pts - a.pts for a, b in zip(one, one[1:], strict=False)}
    assert steps == {960}
    decoder = av.CodecContext.create("libopus", "r")
    samples = np.concatenate(
        [audio_samples(f) for p in one for f in decoder.decode(av.Packet(bytes(p)))]
    )
    assert np.sqrt(np.mean(samples[4800:] ** 2)) > 0.1
    assert abs(dominant_frequency(samples[4800:]) - 600) < 15


def test_stop_ends_subscribers():
    async def scenario():
        fanout = EncodedFanout(ToneAudioTrack(300), kind="audio")
        track = fanout.subscribe()
        await take(track, 2)
        await fanout.stop()
        try:
            await asyncio.wait_for(track.recv(), 1)
        except MediaStreamError:
            return True
        return False

    assert asyncio.run(scenario())


def test_source_ending_leaves_fanout_idle_until_a_new_source():
    class Short(MediaStreamTrack):
        kind = "audio"

        def __init__(self):
            super().__init__()
            self.inner = ToneAudioTrack(440)
            self.left = 3

        async def recv(self):
            if not self.left:
                raise MediaStreamError
            self.left -= 1
            return await self.inner.recv()

    async def scenario():
        fanout = EncodedFanout(Short(), kind="audio")
        track = fanout.subscribe()
        first = await take(track, 3)
        fanout.set_source(ToneAudioTrack(880))
        later = await take(track, 3)
        await fanout.stop()
        return first, later

    first, later = asyncio.run(scenario())
    assert later[0].pts > first[-1].pts


def test_audio_rms_of_tone_frame():
    async def scenario():
        return await ToneAudioTrack(440, amplitude=0.5).recv()

    frame = asyncio.run(scenario())
    assert 0.3 < audio_rms(frame) < 0.4
    assert frame.time_base == fractions.Fraction(1, 48000)

import asyncio
import time

import pytest

from streaming.node.media.node import MediaNode, OfferRejected
from tests.streaming.probe import ProbePeer
from tests.streaming.probe import wait_until as eventually

pytestmark = pytest.mark.media

MEMBERS = {
    "expert": ("red", 440.0),
    "applicant": ("green", 660.0),
    "respondent": ("blue", 880.0),
}


async def join(node, room, member_id, **kwargs):
    colour, tone = MEMBERS[member_id]
    peer = ProbePeer(colour=colour, tone=tone, **kwargs)
    answer = await node.join(room, member_id, member_id, await peer.offer())
    await peer.accept(answer)
    return peer


def view(node, room, peers, viewer):
    """publisher id -> (audio stream, video stream) as received by ``viewer``."""
    return peers[viewer].slot_streams(node.layout(room, viewer))


def receives(node, room, peers, viewer, publisher):
    audio, video = view(node, room, peers, viewer)[publisher]
    colour = MEMBERS[publisher][0]
    return (
        video is not None
        and video.colour == colour
        and len(set(video.counters)) >= 5
        and audio is not None
        and audio.loudness() > 0.05
    )


async def full_room(node, room="r1"):
    peers = {m: await join(node, room, m) for m in MEMBERS}
    for viewer in MEMBERS:
        for publisher in MEMBERS:
            if viewer != publisher:
                assert await eventually(
                    lambda v=viewer, p=publisher: receives(node, room, peers, v, p)
                )
    return peers


async def close_all(node, peers):
    for peer in peers.values():
        await peer.close()
    await node.shutdown()


def test_every_member_receives_every_other_members_picture_and_voice_without_a_decode():
    async def scenario():
        node = MediaNode()
        peers = await full_room(node)
        result = {}
        for viewer in MEMBERS:
            for publisher, (audio, video) in view(node, "r1", peers, viewer).items():
                result[(viewer, publisher)] = (
                    video.colour,
                    video.counters[-1] > video.counters[0],
                    audio.frequency(),
                    audio.loudness(),
                )
        forwarders = {m: dict(node.publication("r1", m, "video").forwarder.stats) for m in MEMBERS}
        decoded = {
            (m, kind): node.publication("r1", m, kind).hub.frames_in
            for m in MEMBERS
            for kind in ("audio", "video")
        }
        stats = await node.stats("r1")
        await close_all(node, peers)
        return result, forwarders, decoded, stats

    result, forwarders, decoded, stats = asyncio.run(scenario())

    assert len(result) == 6
    for (_, publisher), (colour, advancing, frequency, loudness) in result.items():
        assert colour == MEMBERS[publisher][0]
        assert advancing
        assert abs(frequency - MEMBERS[publisher][1]) < 20
        assert loudness > 0.05
    for forwarder in forwarders.values():
        assert forwarder["subscribers"] == 2
        assert forwarder["packets_out"] > 0
    # nobody needs pictures (no livestream, no recording, every slot negotiated VP8)
    assert set(decoded.values()) == {0}
    assert set(stats) == set(MEMBERS)
    assert all(s["connection"] == "connected" for s in stats.values())
    assert all(s["quality"] in ("good", "fair") for s in stats.values())
    assert all(s["video_fps_in"] > 0 for s in stats.values())


def test_caucus_isolates_the_member_on_hold_on_the_media():
    async def scenario():
        node = MediaNode(video_size=(320, 180))
        peers = await full_room(node)
        on_hold = node.set_caucus("r1", {"expert", "applicant"})
        held = view(node, "r1", peers, "respondent")
        assert await eventually(
            lambda: all(v.colour == "grey" for _, v in held.values()), within=20
        )
        # audio already in flight when the caucus began may still land: wait for it to stop
        await eventually(
            lambda: all(a.last_frame_at < time.monotonic() - 0.4 for a, _ in held.values())
        )
        marks = {p: (a.mark(), v.mark()) for p, (a, v) in held.items()}
        await asyncio.sleep(1.0)
        during = {
            p: (
                a.frames_since(marks[p][0]),
                v.frames_since(marks[p][1]),
                v.colours_since(marks[p][1]),
            )
            for p, (a, v) in held.items()
        }
        caucus_sees_each_other = receives(node, "r1", peers, "expert", "applicant") and receives(
            node, "r1", peers, "applicant", "expert"
        )
        expert_view_of_respondent = view(node, "r1", peers, "expert")["respondent"][1].colour
        node.set_caucus("r1", None)
        back = await eventually(
            lambda: all(
                receives(node, "r1", peers, "respondent", p) for p in ("expert", "applicant")
            )
        )
        await close_all(node, peers)
        return on_hold, marks, during, caucus_sees_each_other, expert_view_of_respondent, back

    on_hold, marks, during, caucus_ok, expert_view, back = asyncio.run(scenario())

    assert on_hold == {"expert": False, "applicant": False, "respondent": True}
    for audio_frames, video_frames, recent in during.values():
        # nothing from the caucus: the slate only, and no audio at all
        assert set(recent) == {"grey"}
        assert video_frames > 0
        assert audio_frames == 0
    assert caucus_ok
    assert expert_view == "grey"
    assert back


def test_mute_stops_forwarding_that_members_audio_and_video():
    async def scenario():
        node = MediaNode()
        peers = await full_room(node)
        node.mute("r1", "applicant", audio=True)
        audio, video = view(node, "r1", peers, "respondent")["applicant"]
        # audio already in flight when the mute began may still land: wait for it to stop
        await eventually(lambda: audio.last_frame_at < time.monotonic() - 0.4)
        audio_mark, video_mark = audio.mark(), video.mark()
        await asyncio.sleep(1.0)
        silent_frames = audio.frames_since(audio_mark)
        video_frames = video.frames_since(video_mark)
        node.mute("r1", "applicant", audio=False)
        unmuted = await eventually(lambda: audio.frames_since(audio_mark) > 20)
        await close_all(node, peers)
        return silent_frames, video_frames, unmuted

    silent_frames, video_frames, unmuted = asyncio.run(scenario())
    assert silent_frames == 0
    assert video_frames >= 3
    assert unmuted


def test_leave_rejoin_and_reconnect_keep_the_room_working():
    async def scenario():
        node = MediaNode()
        peers = await full_room(node)
        await node.leave("r1", "respondent")
        await peers.pop("respondent").close()
        layout_after_leave = node.layout("r1", "expert")
        peers["respondent"] = await join(node, "r1", "respondent")
        rejoined = await eventually(
            lambda: (
                receives(node, "r1", peers, "expert", "respondent")
                and receives(node, "r1", peers, "respondent", "applicant")
            )
        )
        # a network drop: the applicant reconnects with a fresh connection
        old = peers["applicant"]
        colour, tone = MEMBERS["applicant"]
        fresh = ProbePeer(colour=colour, tone=tone)
        answer = await node.restart_ice("r1", "applicant", await fresh.offer())
        await fresh.accept(answer)
        await old.close()
        peers["applicant"] = fresh
        _, expert_video = view(node, "r1", peers, "expert")["applicant"]
        mark = expert_video.mark()
        reconnected = await eventually(
            lambda: (
                receives(node, "r1", peers, "applicant", "expert")
                and len(expert_video.counters_since(mark)) > 5
            )
        )
        stats = await node.stats("r1")
        await close_all(node, peers)
        return layout_after_leave, rejoined, reconnected, stats

    layout_after_leave, rejoined, reconnected, stats = asyncio.run(scenario())
    assert [entry["member"] for entry in layout_after_leave] == ["applicant"]
    assert rejoined
    assert reconnected
    assert stats["applicant"]["connections"] == 2


@pytest.mark.signalling
@pytest.mark.parametrize(
    "sdp",
    [
        "",
        "garbage",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio x\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\n" + "a=x\r\n" * 20000,
    ],
)
def test_bad_offers_are_refused_and_leave_no_room_behind(sdp):
    async def scenario():
        node = MediaNode()
        with pytest.raises(OfferRejected):
            await node.join("r2", "expert", "expert", sdp)
        return node.rooms()

    assert asyncio.run(scenario()) == []

"""The media node forwards publishers' encoded frames as they are (no decode, no encode)."""

import asyncio

import pytest

from streaming.node.internals import aiortc_private
from streaming.node.media.node import MediaNode
from streaming.node.media.synthetic import EncodedVideoLoopTrack, closest_colour, encode_video_loop
from tests.streaming.probe import ProbePeer
from tests.streaming.probe import wait_until as eventually

pytestmark = pytest.mark.media


def is_vp8_keyframe(data):
    return not data[0] & 0x01


async def loop_publisher(node, room, member_id, colour="red"):
    """A member publishing a pre-encoded VP8 loop that answers keyframe requests."""
    frames, keyframes = await encode_video_loop(colour, frames=90)
    video = EncodedVideoLoopTrack(frames, keyframes)
    peer = ProbePeer(video=video, slots=2)
    answer = await node.join(room, member_id, member_id, await peer.offer())
    video.wire(next(s for s in peer.pc.getSenders() if s.track is video))
    await peer.accept(answer)
    return peer, video


async def subscriber(node, room, member_id, colour, **kwargs):
    peer = ProbePeer(colour=colour, slots=2, capture_encoded=True, **kwargs)
    await peer.accept(await node.join(room, member_id, member_id, await peer.offer()))
    return peer


def slot_of(node, room, viewer, publisher):
    return next(e for e in node.layout(room, viewer) if e["member"] == publisher)


def test_a_subscriber_receives_the_publishers_exact_encoded_frames_and_nothing_is_decoded():
    async def scenario():
        node = MediaNode()
        publisher, video = await loop_publisher(node, "r", "expert")
        peer = await subscriber(node, "r", "applicant", "green")
        mid = slot_of(node, "r", "applicant", "expert")["video_mid"]
        received = peer.encoded[mid]
        await eventually(lambda: len(received) >= 30, within=15)
        picture = peer.stream(mid).colour
        decoded = node.publication("r", "expert", "video").hub.frames_in
        await publisher.close()
        await peer.close()
        await node.shutdown()
        return video, list(received), picture, decoded

    video, received, picture, decoded = asyncio.run(scenario())

    assert len(received) >= 30
    published = set(video.frames) | set(video.keyframes)
    assert all(frame in published for frame in received)
    assert is_vp8_keyframe(received[0])
    assert picture == "red"
    assert decoded == 0


def test_a_subscribers_keyframe_request_reaches_the_publisher_rate_limited():
    async def scenario():
        node = MediaNode()
        publisher, video = await loop_publisher(node, "r", "expert")
        peer = await subscriber(node, "r", "applicant", "green")
        mid = slot_of(node, "r", "applicant", "expert")["video_mid"]
        received = peer.encoded[mid]
        await eventually(lambda: len(received) >= 20, within=15)
        receiver = next(t.receiver for t in peer.pc.getTransceivers() if t.mid == mid)
        ssrc = receiver.getSynchronizationSources()[0].source
        requests_before, mark = video.keyframe_requests, len(received)
        # a burst of picture loss indications, as a decoder in trouble sends them
        for _ in range(10):
            await aiortc_private.send_pli(receiver, ssrc)
        reached = await eventually(lambda: video.keyframe_requests > requests_before)
        await asyncio.sleep(1.0)
        requests = video.keyframe_requests - requests_before
        await eventually(lambda: len(received) > mark + 10)
        after = list(received[mark:])
        await publisher.close()
        await peer.close()
        await node.shutdown()
        return video, reached, requests, after

    video, reached, requests, after = asyncio.run(scenario())

    assert reached
    # ten requests in a burst reach the publisher as one or two (a PLI at most every 0.3 s)
    assert 1 <= requests <= 4
    # the keyframe made on request (not one of the loop's own) reached the subscriber
    made_on_request = set(video.keyframes) - set(video.frames)
    assert any(frame in made_on_request for frame in after)


def test_a_subscriber_back_from_hold_resumes_on_a_keyframe():
    async def scenario():
        node = MediaNode(video_size=(320, 180))
        publisher, video = await loop_publisher(node, "r", "expert")
        applicant = await subscriber(node, "r", "applicant", "green")
        respondent = await subscriber(node, "r", "respondent", "blue")
        mid = slot_of(node, "r", "respondent", "expert")["video_mid"]
        received = respondent.encoded[mid]
        stream = respondent.stream
        await eventually(lambda: stream(mid) is not None and stream(mid).colour == "red")
        published = set(video.frames) | set(video.keyframes)

        node.set_caucus("r", {"expert", "applicant"})
        held = await eventually(lambda: stream(mid).colour == "grey", within=20)
        mark = len(received)
        requests = video.keyframe_requests
        node.set_caucus("r", None)
        back = await eventually(
            lambda: sum(1 for f in received[mark:] if f in published) >= 10, within=15
        )
        colour = await eventually(lambda: stream(mid).colour == "red")
        after = [f for f in received[mark:] if f in published]
        asked = video.keyframe_requests > requests
        for peer in (publisher, applicant, respondent):
            await peer.close()
        await node.shutdown()
        return held, back, colour, after, asked

    held, back, colour, after, asked = asyncio.run(scenario())

    assert held
    assert back
    assert colour
    # the first of the publisher's frames after the hold is a keyframe, asked for at the switch
    assert is_vp8_keyframe(after[0])
    assert asked


def test_decoding_runs_only_while_something_reads_the_pictures():
    async def scenario():
        node = MediaNode()
        publisher = ProbePeer(colour="red", slots=1)
        await publisher.accept(await node.join("r", "expert", "expert", await publisher.offer()))
        peer = await subscriber(node, "r", "applicant", "green")
        mid = slot_of(node, "r", "applicant", "expert")["video_mid"]
        await eventually(lambda: len(peer.encoded[mid]) >= 10, within=15)
        publication = node.publication("r", "expert", "video")
        before = publication.hub.frames_in
        # what the livestream compositor does: read the publisher's pictures
        tap = publication.hub.tap(queue_size=1)
        picture = await asyncio.wait_for(tap.recv(), 10)
        decoding_while_read = publication.forwarder.decoding
        tap.stop()
        stopped = publication.forwarder.decoding
        await asyncio.sleep(0.5)
        settled = publication.hub.frames_in
        await asyncio.sleep(1.0)
        later = publication.hub.frames_in
        await publisher.close()
        await peer.close()
        await node.shutdown()
        return before, closest_colour(picture), decoding_while_read, stopped, later - settled

    before, colour, decoding_while_read, stopped, decoded_after = asyncio.run(scenario())

    assert before == 0
    assert colour == "red"
    assert decoding_while_read
    assert not stopped
    assert decoded_after == 0


def test_a_subscriber_that_negotiated_h264_gets_one_shared_transcode():
    async def scenario():
        node = MediaNode()
        publisher = ProbePeer(colour="red", slots=2)
        await publisher.accept(await node.join("r", "expert", "expert", await publisher.offer()))
        vp8 = await subscriber(node, "r", "applicant", "green")
        h264 = await subscriber(node, "r", "respondent", "blue", receive_video_codec="video/H264")
        vp8_mid = slot_of(node, "r", "applicant", "expert")["video_mid"]
        h264_mid = slot_of(node, "r", "respondent", "expert")["video_mid"]
        seen = await eventually(
            lambda: all(
                s is not None and s.colour == "red" and len(set(s.counters)) >= 5
                for s in (vp8.stream(vp8_mid), h264.stream(h264_mid))
            ),
            within=20,
        )
        publication = node.publication("r", "expert", "video")
        codecs = (
            node.room("r").members["applicant"].slots[0].video_codec,
            node.room("r").members["respondent"].slots[0].video_codec,
        )
        transcoders = sorted(publication.transcoders)
        forwarded = publication.forwarder.stats["subscribers"]
        await node.leave("r", "respondent")
        await h264.close()
        after_leave = (sorted(publication.transcoders), publication.forwarder.decoding)
        await publisher.close()
        await vp8.close()
        await node.shutdown()
        return seen, codecs, transcoders, forwarded, after_leave

    seen, codecs, transcoders, forwarded, after_leave = asyncio.run(scenario())

    assert seen
    assert codecs == ("video/vp8", "video/h264")
    assert transcoders == ["video/h264"]
    assert forwarded == 1
    # the last H.264 subscriber gone, nothing is transcoded or decoded any more
    assert after_leave == ([], False)

"""Chromium publishes to the media node; its encoded frames are forwarded as they are.

The node runs in the test process so that what it forwards (and that it decodes nothing) can be
looked at; the subscribers are aiortc peers that keep every encoded frame they receive.
"""

import asyncio

import pytest

from streaming.node.media.node import MediaNode
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.streaming.probe import ProbePeer
from tests.streaming.probe import wait_until as eventually

pytestmark = [pytest.mark.e2e, pytest.mark.media]

# A red canvas with a moving bar, published like the room page publishes a camera. A canvas
# stream needs no secure context, so the page can be about:blank.
PUBLISH = """async (codec) => {
    const canvas = document.createElement('canvas');
    canvas.width = 320; canvas.height = 180;
    const g = canvas.getContext('2d');
    let n = 0;
    setInterval(() => {
        g.fillStyle = 'rgb(255,0,0)'; g.fillRect(0, 0, 320, 180);
        g.fillStyle = 'rgb(250,0,0)'; g.fillRect((n++ * 8) % 320, 0, 8, 20);
    }, 66);
    const stream = canvas.captureStream(15);
    const pc = new RTCPeerConnection({bundlePolicy: 'max-bundle'});
    window.publisher = pc;
    const sending = pc.addTransceiver(stream.getVideoTracks()[0], {direction: 'sendonly'});
    if (codec) {
        const codecs = RTCRtpSender.getCapabilities('video').codecs
            .filter(c => c.mimeType.toLowerCase() === codec);
        if (!codecs.length) return null;
        sending.setCodecPreferences(codecs);
    }
    pc.addTransceiver('audio', {direction: 'recvonly'});
    pc.addTransceiver('video', {direction: 'recvonly'});
    await pc.setLocalDescription();
    if (pc.iceGatheringState !== 'complete') {
        await new Promise(done => pc.addEventListener('icegatheringstatechange',
            () => pc.iceGatheringState === 'complete' && done()));
    }
    return pc.localDescription.sdp;
}"""
ACCEPT = "async (sdp) => window.publisher.setRemoteDescription({type: 'answer', sdp})"


async def publish_from_chromium(node, codec=None):
    from playwright.async_api import async_playwright

    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = await browser.new_page()
    offer = await page.evaluate(PUBLISH, codec)
    if offer is None:
        await browser.close()
        await playwright.stop()
        return None
    answer = await node.join("r", "expert", "expert", offer)
    await page.evaluate(ACCEPT, answer)

    async def close():
        await browser.close()
        await playwright.stop()

    return close


async def subscribe(node, member_id, colour, **kwargs):
    peer = ProbePeer(colour=colour, slots=2, capture_encoded=True, **kwargs)
    await peer.accept(await node.join("r", member_id, member_id, await peer.offer()))
    entry = next(e for e in node.layout("r", member_id) if e["member"] == "expert")
    return peer, entry["video_mid"]


def test_chromiums_vp8_frames_reach_a_subscriber_byte_for_byte_without_a_decode():
    async def scenario():
        node = MediaNode()
        close = await publish_from_chromium(node)
        peer, mid = await subscribe(node, "applicant", "green")
        seen = await eventually(
            lambda: (
                peer.stream(mid) is not None
                and peer.stream(mid).colour == "red"
                and len(peer.encoded[mid]) > 10
            ),
            within=30,
        )
        publication = node.publication("r", "expert", "video")
        result = {
            "seen": seen,
            "codec": publication.forwarder.codec,
            "frames_in": publication.forwarder.stats["frames_in"],
            "received": len(peer.encoded[mid]),
            "decoded": publication.hub.frames_in,
        }
        await peer.close()
        await close()
        await node.shutdown()
        return result

    result = asyncio.run(scenario())

    assert result["seen"]
    assert result["codec"] == "video/vp8"
    assert result["received"] > 10
    # no more frames than the publisher sent (nothing re-encoded), and the node decoded none
    assert result["received"] <= result["frames_in"]
    assert result["decoded"] == 0


def test_chromium_publishing_h264_is_forwarded_to_h264_and_transcoded_once_for_vp8():
    async def scenario():
        node = MediaNode()
        close = await publish_from_chromium(node, codec="video/h264")
        if close is None:
            await node.shutdown()
            return None
        vp8, vp8_mid = await subscribe(node, "applicant", "green")
        h264, h264_mid = await subscribe(
            node, "respondent", "blue", receive_video_codec="video/H264"
        )
        seen = await eventually(
            lambda: all(
                s is not None and s.colour == "red"
                for s in (vp8.stream(vp8_mid), h264.stream(h264_mid))
            ),
            within=30,
        )
        publication = node.publication("r", "expert", "video")
        result = {
            "seen": seen,
            "codec": publication.forwarder.codec,
            "forwarded_to": publication.forwarder.stats["subscribers"],
            "transcoders": sorted(publication.transcoders),
        }
        for peer in (vp8, h264):
            await peer.close()
        await close()
        await node.shutdown()
        return result

    result = asyncio.run(scenario())
    if result is None:
        pytest.skip("this Chromium cannot encode H.264")

    assert result["seen"]
    assert result["codec"] == "video/h264"
    assert result["forwarded_to"] == 1
    assert result["transcoders"] == ["video/vp8"]

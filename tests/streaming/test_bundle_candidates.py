"""A browser's max-bundle offer lists its ICE candidates on the first m-section only; the node's
one bundled transport must still know them: through a TURN relay nothing reaches the node before
it has sent to the browser's candidates itself."""

from __future__ import annotations

import asyncio
import re

import pytest

from streaming.node.media.bundle import bundled_candidates
from streaming.node.media.node import MediaNode
from tests.streaming.probe import ProbePeer

OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n"
    "m=audio 50000 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    "a=candidate:1 1 udp 41885439 127.0.0.1 50000 typ relay raddr 0.0.0.0 rport 0\r\n"
    "a=candidate:2 1 udp 25108223 127.0.0.1 50002 typ relay raddr 0.0.0.0 rport 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n"
)


def first_section_only(sdp: str) -> str:
    """Candidates and end-of-candidates on the first m-section only, as Chromium writes them."""
    head, *sections = re.split(r"(?m)^(?=m=)", sdp)
    kept = [sections[0]] + [
        "".join(
            line
            for line in section.splitlines(keepends=True)
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        for section in sections[1:]
    ]
    return head + "".join(kept)


def candidates_by_mid(sdp: str) -> dict[str, list[str]]:
    found = {}
    for section in re.split(r"(?m)^(?=m=)", sdp)[1:]:
        mid = re.search(r"(?m)^a=mid:(\S+)", section).group(1)
        found[mid] = re.findall(r"(?m)^a=candidate:.*$", section)
    return found


def test_every_section_of_the_bundle_group_lists_the_groups_candidates():
    result = candidates_by_mid(bundled_candidates(OFFER))
    first = candidates_by_mid(OFFER)["0"]
    assert len(first) == 2
    assert result["0"] == result["1"] == result["2"] == first
    # a section outside the group keeps what it had (nothing)
    assert result["3"] == []
    # line endings and everything else unchanged
    assert bundled_candidates(OFFER).count("\r\n") == OFFER.count("\r\n") + 4
    assert "\n" not in bundled_candidates(OFFER).replace("\r\n", "")


def test_an_offer_without_a_bundle_group_is_left_as_it_is():
    plain = OFFER.replace("a=group:BUNDLE 0 1 2\r\n", "")
    assert bundled_candidates(plain) == plain


@pytest.mark.media
def test_the_nodes_bundled_transport_learns_the_first_sections_candidates():
    async def scenario():
        node = MediaNode()
        peer = ProbePeer(colour="red", slots=1)
        offer = first_section_only(await peer.offer())
        first = re.findall(r"(?m)^a=candidate:\S+ 1 udp \d+ (\S+ \d+)", offer)
        await node.join("r", "m1", "expert", offer)
        pc = node._rooms["r"].members["m1"].pc
        transport = pc.getTransceivers()[0].receiver.transport.transport
        known = {f"{c.ip} {c.port}" for c in transport.getRemoteCandidates()}
        await peer.close()
        await node.shutdown()
        return set(first), known

    first, known = asyncio.run(scenario())
    assert first and first <= known

"""The relay between nodes on real UDP sockets: frames reassembled in order, a loss answered with
a PLI to the home node and a wait for the next keyframe."""

import asyncio

from streaming.node.broadcast.relay import RelayedBroadcast, RelaySink, vp8_keyframe


def vp8_packets(picture_id: int, *, keyframe: bool, count: int = 3) -> list[bytes]:
    """A frame as aiortc packetises VP8: descriptor (X, S on the first packet, 15-bit picture
    id), then the VP8 payload, whose first byte's low bit is clear on a keyframe."""
    packets = []
    for index in range(count):
        first = 0x90 if index == 0 else 0x80
        descriptor = bytes([first, 0x80, 0x80 | (picture_id >> 8), picture_id & 0xFF])
        body = bytes([0x00 if keyframe else 0x01]) if index == 0 else b"\x55"
        packets.append(descriptor + body + bytes([picture_id & 0xFF, index]) * 20)
    return packets


def test_frames_arrive_whole_and_a_loss_waits_for_a_keyframe_asked_for_with_a_pli():
    async def scenario():
        loop = asyncio.get_running_loop()
        relayed = RelayedBroadcast(
            "hearing", node="serving", home_channel="home", host="127.0.0.1", viewer_limit=1
        )
        await loop.create_datagram_endpoint(lambda: relayed, local_addr=("127.0.0.1", 0))
        asked = []
        sink = await RelaySink(
            "serving", relayed.address, relayed.ssrc, lambda: asked.append(1)
        ).open()
        transport = sink.transport
        sent = []

        class Lossy:
            # the sink's own socket, losing the datagram it is told to
            def __init__(self):
                self.lose = None

            def is_closing(self):
                return transport.is_closing()

            def sendto(self, data):
                sent.append(data)
                if len(sent) != self.lose:
                    transport.sendto(data)

        lossy = Lossy()
        sink.transport = lossy
        delivered = relayed._video_rtp.stats

        async def settle():
            await asyncio.sleep(0.1)
            return delivered["frames"]

        sink.video(vp8_packets(1, keyframe=True), 1000, True)
        sink.video(vp8_packets(2, keyframe=False), 4000, False)
        sink.audio([b"opus-frame"], 960, False)
        whole = await settle()
        lossy.lose = len(sent) + 2
        # the middle packet of the next frame is lost on the way
        sink.video(vp8_packets(3, keyframe=False), 7000, False)
        sink.video(vp8_packets(4, keyframe=False), 10000, False)
        after_loss = await settle()
        plis = len(asked)
        sink.video(vp8_packets(5, keyframe=True), 13000, True)
        sink.video(vp8_packets(6, keyframe=False), 16000, False)
        resumed = await settle()
        audio = relayed._audio_rtp.stats["frames"]
        transport.close()
        relayed.transport.close()
        return whole, after_loss, plis, resumed, audio, dict(relayed.stats)

    whole, after_loss, plis, resumed, audio, stats = asyncio.run(scenario())

    assert whole == 2
    assert after_loss == 2  # the broken frame and the delta after it are not passed on
    assert plis >= 1
    assert resumed == 4  # from the keyframe on
    assert audio == 1
    assert stats["lost"] >= 1


def test_a_keyframe_is_told_from_its_payload_descriptor():
    assert vp8_keyframe(vp8_packets(7, keyframe=True)[0])
    assert not vp8_keyframe(vp8_packets(7, keyframe=False)[0])
    assert not vp8_keyframe(vp8_packets(7, keyframe=True)[1])  # not the frame's first packet

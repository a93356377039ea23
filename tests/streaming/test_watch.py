import asyncio
import json

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import ChannelNameRouter
from channels.testing import WebsocketCommunicator
from channels.worker import Worker

from asgi import application
from mediation_room import services
from mediation_room.models import CaseEvent
from streaming.broadcast.services import broadcast_pause
from streaming.node.broadcast import station as station_module
from streaming.node.broadcast.overlay import render_slate
from streaming.node.broadcast.scene import SLATE_TEXT
from streaming.node.broadcast.synthetic import STAMP_MODULO, clock_ms, colour_area, read_stamp
from streaming.node.process import get_station, reset_station
from streaming.node.worker import MediaNodeConsumer, reset_media_node
from streaming.plane import node_channel
from tests.factories import UserFactory, advance, make_case
from tests.streaming.broadcast_peers import RED, three_members, tile

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]

HEADERS = [(b"origin", b"http://localhost")]


@pytest.fixture(autouse=True)
def station_settings(room_settings, tmp_path):
    # The node runs in this process (room_settings) unless a test moves it behind the layer.
    room_settings.BROADCAST_HLS_ROOT = tmp_path / "hls"
    room_settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    return room_settings


def signed_ms(delta: int) -> int:
    """A difference of two 16-bit millisecond stamps, between -32.8 s and +32.8 s."""
    return (delta + STAMP_MODULO // 2) % STAMP_MODULO - STAMP_MODULO // 2


async def stop_node() -> None:
    """Each scenario runs in its own event loop: stop what it started in this process."""
    await reset_station()
    await reset_media_node()


def live_hearing(*, respondent_livestream: bool = True):
    respondent = UserFactory()
    case = make_case(
        respondent=respondent,
        respondent_consents={"video": True, "livestream": respondent_livestream, "recording": True},
    )
    hearing = advance(case, "in_session")
    return hearing, respondent


async def open_socket(public_id: str) -> tuple[WebsocketCommunicator, dict]:
    communicator = WebsocketCommunicator(application, f"/ws/watch/{public_id}/", headers=HEADERS)
    connected, _ = await communicator.connect()
    assert connected
    return communicator, await communicator.receive_json_from(timeout=10)


async def watch_over_socket(communicator):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tracks = {}
    pc.on("track", lambda track: tracks.setdefault(track.kind, track))
    await pc.setLocalDescription(await pc.createOffer())
    await communicator.send_json_to({"type": "watch.offer", "sdp": pc.localDescription.sdp})
    while True:
        reply = await communicator.receive_json_from(timeout=10)
        if reply["type"] == "watch.answer":
            break
        assert reply["type"] == "watch.state", reply
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
    for _ in range(100):
        if "video" in tracks:
            break
        await asyncio.sleep(0.05)
    return pc, tracks["video"]


async def states_until(communicator, predicate, limit=20):
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=10)
        if message["type"] == "watch.state" and predicate(message):
            return message
    raise AssertionError("the expected watch.state never came")


def test_anyone_can_watch_a_public_session_and_gets_the_composite_and_the_viewer_count():
    hearing, _ = live_hearing()

    async def scenario():
        communicator, hello = await open_socket(hearing.public_id)
        pc, video = await watch_over_socket(communicator)
        broadcast = get_station().broadcasts[hearing.public_id]
        broadcast.set_members(three_members())
        counted = await states_until(communicator, lambda m: m["viewers"] == 1)
        layout = broadcast.video.layout()
        colours = []
        for _ in range(15):
            rgb = (await asyncio.wait_for(video.recv(), 10)).to_ndarray(format="rgb24")
            colours.append(colour_area(tile(rgb, layout["mediator"])).mean(axis=(0, 1)))
        await pc.close()
        await communicator.disconnect()
        await stop_node()
        return hello, counted, colours

    hello, counted, colours = asyncio.run(scenario())

    assert hello["type"] == "watch.state"
    assert hello["hls"].endswith(f"/{hearing.public_id}/index.m3u8")
    assert counted["state"] == "live"
    assert np.abs(colours[-1] - RED).max() < 40


@pytest.mark.signalling
def test_a_private_case_and_an_unknown_session_refuse_viewers():
    hearing, _ = live_hearing(respondent_livestream=False)

    async def scenario():
        replies = []
        for public_id in (hearing.public_id, "no-such-session-123"):
            communicator = WebsocketCommunicator(
                application, f"/ws/watch/{public_id}/", headers=HEADERS
            )
            await communicator.connect()
            replies.append(await communicator.receive_json_from(timeout=10))
            replies.append(await communicator.receive_output(timeout=10))
        broadcasts = dict(get_station().broadcasts)
        await stop_node()
        return replies, broadcasts

    replies, broadcasts = asyncio.run(scenario())

    assert replies[0]["code"] == "private"
    assert replies[1] == {"type": "websocket.close", "code": 4403}
    assert replies[2]["code"] == "not_found"
    assert replies[3] == {"type": "websocket.close", "code": 4404}
    # nothing of the private session was composed or written
    assert broadcasts == {}


def test_withdrawing_consent_mid_session_turns_viewers_to_the_slate_and_is_a_case_event():
    hearing, respondent = live_hearing()
    party = hearing.case.parties.get(role="respondent")

    async def scenario():
        communicator, _ = await open_socket(hearing.public_id)
        pc, video = await watch_over_socket(communicator)
        broadcast = get_station().broadcasts[hearing.public_id]
        broadcast.set_members(three_members())
        await states_until(communicator, lambda m: m["state"] == "live")
        slate = render_slate(broadcast.width, broadcast.height, SLATE_TEXT).astype(np.int16)
        mediator = broadcast.video.layout()["mediator"]
        # The viewer plays continuously, noting for each picture whether it is the slate and,
        # if not, when the mediator's camera captured it (the clock stamped in the picture).
        seen = []

        async def play():
            while True:
                frame = await asyncio.wait_for(video.recv(), 10)
                rgb = frame.to_ndarray(format="rgb24")
                is_slate = np.abs(rgb.astype(np.int16) - slate).mean() < 12
                seen.append((is_slate, None if is_slate else read_stamp(tile(rgb, mediator))[1]))

        player = asyncio.ensure_future(play())
        for _ in range(200):
            if len(seen) >= 5:
                break
            await asyncio.sleep(0.05)
        await database_sync_to_async(services.consent_set)(
            party=party, actor=respondent, kind="livestream", granted=False
        )
        withdrawn_at, shown_before = clock_ms(), len(seen)
        held = await states_until(communicator, lambda m: m["state"] == "hold")
        for _ in range(200):
            if any(is_slate for is_slate, _ in seen[-3:]):
                break
            await asyncio.sleep(0.05)
        player.cancel()
        await pc.close()
        await communicator.disconnect()
        await stop_node()
        return held, withdrawn_at, seen[shown_before:]

    held, withdrawn_at, after = asyncio.run(scenario())

    assert held["state"] == "hold"
    assert any(is_slate for is_slate, _ in after)
    # Nothing the cameras captured later than one second after the withdrawal reached the
    # viewer (measured on the picture's own clock, whatever the delay of the network).
    captured_after = [signed_ms(stamp - withdrawn_at) for is_slate, stamp in after if not is_slate]
    assert max(captured_after, default=0) <= 1000
    event = CaseEvent.objects.filter(case=hearing.case, kind="consent_withdrawn").get()
    assert event.data == {"kind": "livestream", "role": "respondent"}


def test_bad_messages_get_an_error_frame_and_the_socket_keeps_working():
    hearing, _ = live_hearing()

    async def scenario():
        communicator, _ = await open_socket(hearing.public_id)
        replies = []
        for raw in (
            "not json",
            json.dumps([1, 2]),
            json.dumps({"type": "watch.offer", "sdp": 42}),
            json.dumps({"type": "watch.offer", "sdp": "v=0\r\n" + "a" * 70000}),
            json.dumps({"type": "launch.missiles"}),
            json.dumps({"type": "watch.offer", "sdp": "v=0\r\nnot really sdp"}),
            json.dumps({"type": "ping"}),
        ):
            await communicator.send_to(text_data=raw)
            while True:
                reply = await communicator.receive_json_from(timeout=10)
                if reply["type"] != "watch.state":
                    break
            replies.append(reply)
        # a second offer while the first is being answered
        garbage = {"type": "watch.offer", "sdp": "v=0\r\nnot really sdp"}
        await communicator.send_json_to(garbage)
        await communicator.send_json_to(garbage)
        overlapping = set()
        while len(overlapping) < 2:
            reply = await communicator.receive_json_from(timeout=10)
            if reply["type"] == "error":
                overlapping.add(reply["code"])
        await communicator.disconnect()
        await stop_node()
        return replies, overlapping

    replies, overlapping = asyncio.run(scenario())

    assert [r.get("code", r["type"]) for r in replies] == [
        "bad_json",
        "bad_frame",
        "bad_offer",
        "too_large",
        "unknown_type",
        "offer_refused",
        "pong",
    ]
    assert overlapping == {"busy", "offer_refused"}


def test_signaling_reaches_a_media_node_process_through_the_channel_layer(settings):
    # No in-process node: the consumer that `manage.py medianode` runs answers instead.
    settings.MEDIA_NODE_INPROCESS = False
    hearing, _ = live_hearing()

    async def scenario():
        layer = get_channel_layer()
        node = Worker(
            application=ChannelNameRouter({node_channel(): MediaNodeConsumer.as_asgi()}),
            channels=[node_channel()],
            channel_layer=layer,
        )
        node_task = asyncio.ensure_future(node.handle())
        communicator, hello = await open_socket(hearing.public_id)
        pc, video = await watch_over_socket(communicator)
        frame = await asyncio.wait_for(video.recv(), 10)
        counted = await states_until(communicator, lambda m: m["viewers"] == 1)
        await communicator.send_json_to({"type": "watch.leave"})
        left = await states_until(communicator, lambda m: m["viewers"] == 0)
        await pc.close()
        await communicator.disconnect()
        node_task.cancel()
        await stop_node()
        return hello, frame, counted, left

    hello, frame, counted, left = asyncio.run(scenario())

    assert hello["type"] == "watch.state"
    assert frame.width == 640
    assert counted["state"] == "live"
    assert left["viewers"] == 0


def test_the_mediator_pausing_holds_the_broadcast_and_resuming_brings_it_back():
    hearing, _ = live_hearing()
    expert = hearing.case.expert

    async def scenario():
        communicator, hello = await open_socket(hearing.public_id)
        seen = [hello["state"]]
        for paused in (True, False):
            await database_sync_to_async(broadcast_pause)(
                hearing=hearing, actor=expert, paused=paused
            )
            wanted = "hold" if paused else "live"
            seen.append(
                (await states_until(communicator, lambda m, w=wanted: m["state"] == w))["state"]
            )
        await communicator.disconnect()
        await stop_node()
        return seen

    assert asyncio.run(scenario()) == ["live", "hold", "live"]


def test_the_end_of_the_session_ends_the_broadcast_and_keeps_the_replay_with_consent(
    monkeypatch, settings
):
    monkeypatch.setattr(station_module, "ENDED_GRACE_SECONDS", 0.2)
    hearing, _ = live_hearing()

    async def scenario():
        communicator, _ = await open_socket(hearing.public_id)
        playlist = settings.BROADCAST_HLS_ROOT / hearing.public_id / "live.m3u8"
        for _ in range(200):
            if playlist.exists() and ".ts" in playlist.read_text():
                break
            await asyncio.sleep(0.05)
        await database_sync_to_async(services.session_conclude)(
            hearing=hearing, actor=hearing.case.expert, agreed=True
        )
        ended = await states_until(communicator, lambda m: m["state"] == "ended")
        # the replay is known once the broadcast has stopped (its last segment written)
        for _ in range(400):
            if get_station().replays.get(hearing.public_id):
                break
            await asyncio.sleep(0.05)
        await communicator.disconnect()
        replay = get_station().replays.get(hearing.public_id)
        await stop_node()
        return ended, replay, playlist

    ended, replay, playlist = asyncio.run(scenario())

    assert ended["state"] == "ended"
    assert replay == playlist.parent
    assert "#EXT-X-ENDLIST" in playlist.read_text()


def test_a_viewer_the_ladder_moves_to_sound_only_is_told_on_its_socket():
    hearing, _ = live_hearing()

    async def scenario():
        communicator, _hello = await open_socket(hearing.public_id)
        pc, _video = await watch_over_socket(communicator)
        broadcast = get_station().broadcasts[hearing.public_id]
        broadcast.set_members(three_members())
        (viewer_id,) = broadcast.viewers
        told = []

        async def next_layer():
            while True:
                message = await communicator.receive_json_from(timeout=10)
                if message["type"] == "watch.layer":
                    return message

        # what the viewer's policy does on a link too weak for a picture, and when it recovers
        audio_only = len(broadcast.ladder) - 1
        broadcast.set_viewer_layer(viewer_id, audio_only)
        told.append(await next_layer())
        broadcast.set_viewer_layer(viewer_id, 0)
        told.append(await next_layer())
        await pc.close()
        await communicator.disconnect()
        await stop_node()
        return told, [layer.name for layer in broadcast.ladder]

    told, ladder = asyncio.run(scenario())

    assert told == [
        {"type": "watch.layer", "layer": ladder[-1], "video": False},
        {"type": "watch.layer", "layer": ladder[0], "video": True},
    ]

import asyncio

import numpy as np
import pytest

from streaming.node.broadcast.broadcast import Broadcast, BroadcastError, ViewerLimitReached
from streaming.node.broadcast.compositor import NO_PICTURE_AFTER, CompositeVideoTrack
from streaming.node.broadcast.overlay import render_slate
from streaming.node.broadcast.privacy import detect_faces
from streaming.node.broadcast.scene import ENDED_TEXT, SLATE_TEXT, WAITING_TEXT, Scene
from streaming.node.broadcast.synthetic import (
    STAMP_MODULO,
    SyntheticVideoTrack,
    clock_ms,
    colour_area,
    read_stamp,
)
from tests.streaming.broadcast_peers import BLUE, GREEN, RED, three_members, tile, watch

pytestmark = pytest.mark.media

WIDTH, HEIGHT, FPS = 640, 360, 15


def make_broadcast(members, **options) -> Broadcast:
    scene = Scene(category="劳资纠纷", community="幸福里社区", state="live", members=members)
    return Broadcast(scene, width=WIDTH, height=HEIGHT, fps=FPS, **options)


def distance(rgb: np.ndarray, picture: np.ndarray) -> float:
    return float(np.abs(rgb.astype(np.int16) - picture.astype(np.int16)).mean())


def test_viewers_receive_the_composite_of_every_member_with_advancing_counters_and_sound():
    async def scenario():
        broadcast = make_broadcast(three_members())
        await broadcast.start()
        viewers = [await watch(broadcast), await watch(broadcast)]
        layout = broadcast.video.layout()
        pictures = {index: [] for index in range(len(viewers))}
        for _ in range(12):
            for index, viewer in enumerate(viewers):
                pictures[index].append(await viewer.rgb())
        loudness = list(viewers[0].loudness)
        composed = broadcast.stats
        for viewer in viewers:
            await viewer.close()
        await broadcast.stop()
        return layout, pictures, loudness, composed

    layout, pictures, loudness, composed = asyncio.run(scenario())

    assert set(layout) == {"mediator", "applicant", "respondent"}
    for frames in pictures.values():
        first, last = frames[1], frames[-1]
        for member_id, colour in (("mediator", RED), ("applicant", GREEN), ("respondent", BLUE)):
            seen = colour_area(tile(last, layout[member_id])).mean(axis=(0, 1))
            assert np.abs(seen - colour).max() < 40, (member_id, seen)
            assert (
                read_stamp(tile(last, layout[member_id]))[0]
                > read_stamp(tile(first, layout[member_id]))[0]
            )
    # one encode and one packetisation served both viewers
    assert composed["video"]["frames_in"] <= composed["frames_composed"]
    assert composed["video"]["subscribers"] == 1
    assert composed["video_rtp"]["viewer_frames"] > composed["video_rtp"]["frames"] >= 12
    assert max(loudness) > 1000


def test_hold_turns_the_picture_into_the_slate_within_a_second_of_frames_and_back():
    slate = render_slate(WIDTH, HEIGHT, SLATE_TEXT)
    ended_slate = render_slate(WIDTH, HEIGHT, ENDED_TEXT)

    async def scenario():
        broadcast = make_broadcast(three_members())
        await broadcast.start()
        viewer = await watch(broadcast)
        mediator = broadcast.video.layout()["mediator"]
        # The viewer plays continuously; each picture is noted with what it shows and when the
        # mediator's camera captured it (the clock stamped in the picture), so the checks are
        # about the pictures, not about how fast this test or the machine runs.
        seen = []

        async def play():
            while True:
                frame = await viewer.frame()
                rgb = frame.to_ndarray(format="rgb24")
                colour = colour_area(tile(rgb, mediator)).mean(axis=(0, 1))
                # the two slates differ only in their text: the closer one is what is shown
                to_slate, to_ended = distance(rgb, slate), distance(rgb, ended_slate)
                if min(to_slate, to_ended) < 12:
                    shows = "slate" if to_slate < to_ended else "ended"
                elif np.abs(colour - RED).max() < 40:
                    shows = "room"
                else:
                    shows = "other"
                seen.append((read_stamp(tile(rgb, mediator))[1], shows))

        async def until(what):
            for _ in range(200):
                if seen and seen[-1][1] == what:
                    return True
                await asyncio.sleep(0.05)
            return False

        player = asyncio.ensure_future(play())
        await until("room")
        broadcast.set_state("hold")
        held_at, shown_before = clock_ms(), len(seen)
        held = await until("slate")
        after_hold = seen[shown_before:]
        for _ in range(10):
            await asyncio.sleep(0.1)
        silent = list(viewer.loudness)[-5:]
        broadcast.set_state("live")
        back_live = await until("room")
        broadcast.set_state("ended")
        ended = await until("ended")
        player.cancel()
        await viewer.close()
        await broadcast.stop()
        return held, held_at, after_hold, silent, back_live, ended

    held, held_at, after_hold, silent, back_live, ended = asyncio.run(scenario())

    assert held
    # nothing captured later than a second after the switch reached the viewer
    captured = [(stamp - held_at) % STAMP_MODULO for stamp, shows in after_hold if shows == "room"]
    assert all(delta <= 1000 or delta > STAMP_MODULO // 2 for delta in captured)
    # What was already on its way may still play; the last audio on hold is silent.
    assert max(silent) < 50
    assert back_live
    assert ended


def test_the_face_of_a_party_who_did_not_agree_to_show_it_is_blurred_for_viewers():
    async def scenario():
        # Both parties are the same portrait; only the respondent chose to show their face.
        members = three_members(face_for=("applicant", "respondent"), show_face=("respondent",))
        broadcast = make_broadcast(members)
        await broadcast.start()
        viewer = await watch(broadcast)
        frames = [await viewer.rgb() for _ in range(20)]
        layout = broadcast.video.layout()
        await viewer.close()
        await broadcast.stop()
        return frames, layout

    frames, layout = asyncio.run(scenario())

    hidden = [detect_faces(tile(rgb, layout["applicant"])) for rgb in frames]
    # (the first pictures may show an empty tile until the member's first frame arrives)
    shown = [detect_faces(tile(rgb, layout["respondent"])) for rgb in frames[5:]]
    # The same detector finds the face where it is shown, so its absence means it was hidden.
    assert all(shown)
    assert not any(hidden)


def test_a_party_name_never_reaches_the_picture_only_the_role_and_the_mediator_name():
    members = three_members()
    members[1].name = "张三"

    scene = Scene(members=members)
    labels = {m.member_id: m.label for m in scene.members}

    assert labels == {
        "mediator": "调解员 · 林志远",
        "applicant": "申请人",
        "respondent": "被申请人",
    }


def test_the_viewer_limit_and_unusable_offers_are_refused_clearly():
    async def scenario():
        broadcast = make_broadcast(three_members(), viewer_limit=1)
        await broadcast.start()
        viewer = await watch(broadcast)
        errors = []
        for offer in (viewer.pc.localDescription.sdp, "v=0\r\nthis is not sdp"):
            try:
                await broadcast.add_viewer(offer)
            except BroadcastError as exc:
                errors.append(exc)
        count_at_limit = broadcast.viewer_count
        await broadcast.remove_viewer(next(iter(broadcast.viewers)))
        try:
            await broadcast.add_viewer("v=0\r\nthis is not sdp")
        except BroadcastError as exc:
            errors.append(exc)
        count_after = broadcast.viewer_count
        await viewer.close()
        await broadcast.stop()
        return errors, count_at_limit, count_after

    errors, count_at_limit, count_after = asyncio.run(scenario())

    assert [type(e) for e in errors] == [ViewerLimitReached, ViewerLimitReached, BroadcastError]
    assert count_at_limit == 1
    assert count_after == 0


def test_a_member_without_video_gets_an_empty_tile_and_the_layout_follows_the_members():
    async def scenario():
        members = three_members()
        members[2].video = None
        scene = Scene(state="live", members=members)
        track = CompositeVideoTrack(scene, width=320, height=180, fps=FPS)
        for _ in range(3):
            await track.recv()
        before = track.layout()
        scene.set_members(members[:2])
        frame = await track.recv()
        after = track.layout()
        track.stop()
        return before, after, frame

    before, after, frame = asyncio.run(scenario())

    assert len(before) == 3 and set(after) == {"mediator", "applicant"}
    assert frame.width == 320 and frame.height == 180


def test_on_air_with_nobody_in_the_room_the_picture_waits_with_the_case_never_black():
    waiting = render_slate(320, 180, WAITING_TEXT, subtitle="劳资纠纷 · 幸福里社区")
    hold = render_slate(320, 180, SLATE_TEXT)

    async def scenario():
        scene = Scene(category="劳资纠纷", community="幸福里社区", state="live")
        track = CompositeVideoTrack(scene, width=320, height=180, fps=FPS)
        empty = (await track.recv()).to_ndarray(format="rgb24")
        scene.set_members(three_members())
        for _ in range(3):
            await track.recv()
        room = (await track.recv()).to_ndarray(format="rgb24")
        scene.set_members([])
        again = (await track.recv()).to_ndarray(format="rgb24")
        track.stop()
        return empty, room, again

    empty, room, again = asyncio.run(scenario())

    assert distance(empty, waiting) < 6  # the waiting picture, its text and the case's banner
    assert distance(empty, hold) > distance(empty, waiting) + 1
    assert empty.mean() > 30 and empty.max() > 200  # not black: a lit background and white text
    assert distance(room, waiting) > 20  # members in: the grid
    assert distance(again, waiting) < 6


class StoppableCamera(SyntheticVideoTrack):
    """A camera a member turns off on their page: the track stays, its frames stop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on = asyncio.Event()
        self.on.set()

    async def recv(self):
        await self.on.wait()
        return await super().recv()


def test_the_composite_counts_the_members_it_shows_with_a_picture_and_says_when_that_changes():
    async def scenario():
        members = three_members()
        members[2].video = None  # muted: no track at all
        cameras = [StoppableCamera(RED), StoppableCamera(GREEN)]
        members[0].video, members[1].video = cameras
        scene = Scene(state="live", members=members)
        track = CompositeVideoTrack(scene, width=320, height=180, fps=FPS)
        told = []
        track.on_pictures = told.append
        for _ in range(8):
            await track.recv()
        with_cameras = track.pictures
        for camera in cameras:
            camera.on.clear()
        for _ in range(int(FPS * (NO_PICTURE_AFTER + 1))):
            await track.recv()
        without = track.pictures
        cameras[1].on.set()
        for _ in range(8):
            await track.recv()
        one_back = track.pictures
        track.stop()
        return with_cameras, without, one_back, told

    with_cameras, without, one_back, told = asyncio.run(scenario())

    assert (with_cameras, without, one_back) == (2, 0, 1)
    assert told == [2, 0, 1]

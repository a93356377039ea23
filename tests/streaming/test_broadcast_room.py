"""The livestream of a real room: members join the media node as aiortc peers, the station
composes them for viewers with each party's privacy choice, and a caucus puts viewers on hold."""

import asyncio

import numpy as np
import pytest

from mediation_room.models import Party
from streaming.node.broadcast.overlay import render_slate
from streaming.node.broadcast.privacy import detect_faces
from streaming.node.broadcast.scene import SLATE_TEXT
from streaming.node.broadcast.synthetic import SyntheticVideoTrack, colour_area
from streaming.node.process import get_media_node, get_station, reset_station
from streaming.node.worker import reset_media_node
from streaming.selectors import room_member_id
from tests.factories import UserFactory, advance, make_case
from tests.streaming.broadcast_peers import RED, face_picture, tile, watch
from tests.streaming.probe import ProbePeer

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def station_settings(room_settings, tmp_path):
    room_settings.BROADCAST_HLS_ROOT = tmp_path / "hls"
    return room_settings


def test_the_broadcast_shows_the_rooms_members_by_role_with_their_face_choice_and_holds_in_caucus():
    respondent = UserFactory()
    case = make_case(respondent=respondent)
    hearing = advance(case, "in_session")
    # the respondent chose to show their face; the applicant did not (the default)
    Party.objects.filter(case=case, role="respondent").update(show_face=True)
    users = {
        "expert": case.expert,
        "applicant": case.parties.get(role="applicant").user,
        "respondent": respondent,
    }
    ids = {role: room_member_id(hearing.public_id, user.pk) for role, user in users.items()}

    async def scenario():
        node = get_media_node()
        station = get_station()
        peers = {}
        for role in ("expert", "applicant", "respondent"):
            image = None if role == "expert" else face_picture()
            video = SyntheticVideoTrack(RED, image=image)
            peer = ProbePeer(video=video, slots=2, analyse=False)
            answer = await node.join(hearing.public_id, ids[role], role, await peer.offer())
            await peer.accept(answer)
            peers[role] = peer
        broadcast = await station.open(hearing.public_id)
        viewer = await watch(broadcast)
        for _ in range(40):  # until every member's picture is in
            rgb = await viewer.rgb()
            layout = broadcast.video.layout()
            if len(layout) == 3 and detect_faces(tile(rgb, layout[ids["respondent"]])):
                break
        frames = [await viewer.rgb() for _ in range(8)]
        labels = {m.member_id: m.label for m in broadcast.scene.members}
        node.set_caucus(hearing.public_id, [ids["expert"], ids["applicant"]])
        slate = render_slate(broadcast.width, broadcast.height, SLATE_TEXT).astype(np.int16)
        on_hold = False
        for _ in range(45):
            rgb = (await viewer.rgb()).astype(np.int16)
            if np.abs(rgb - slate).mean() < 12:
                on_hold = True
                break
        state_in_caucus = str(broadcast.state)
        await viewer.close()
        for peer in peers.values():
            await peer.close()
        await reset_station()
        await reset_media_node()
        return layout, labels, frames, on_hold, state_in_caucus

    layout, labels, frames, on_hold, state_in_caucus = asyncio.run(scenario())

    assert labels == {
        ids["expert"]: f"调解员 · {case.expert.display_name}",
        ids["applicant"]: "申请人",
        ids["respondent"]: "被申请人",
    }
    expert_colour = colour_area(tile(frames[-1], layout[ids["expert"]])).mean(axis=(0, 1))
    assert np.abs(expert_colour - RED).max() < 40
    assert all(detect_faces(tile(rgb, layout[ids["respondent"]])) for rgb in frames)
    assert not any(detect_faces(tile(rgb, layout[ids["applicant"]])) for rgb in frames)
    assert on_hold and state_in_caucus == "hold"

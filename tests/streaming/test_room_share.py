"""Screen sharing in the room: one share at a time, shown to the room; on the livestream only after
the mediator's switch and never during a caucus; every change in the case's audit trail."""

import pytest

from mediation_room.models import CaseEvent
from streaming.node.process import get_station
from tests.factories import UserFactory, advance, make_case, make_expert
from tests.streaming.test_room_consumer import full_room, run

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_room(room_settings, tmp_path):
    room_settings.BROADCAST_HLS_ROOT = tmp_path / "hls"
    applicant, respondent, expert = UserFactory(), UserFactory(), make_expert()
    case = make_case(
        applicant=applicant,
        respondent=respondent,
        respondent_consents={"video": True, "livestream": True, "recording": False},
    )
    hearing = advance(case, "in_session", expert=expert)
    return {"hearing": hearing, "applicant": applicant, "respondent": respondent, "expert": expert}


def on_air(broadcast, member_id):
    """(the member's picture is in the composite, it is shown as the large screen share)"""
    member = next(m for m in broadcast.scene.members if m.member_id == member_id)
    return member.video is not None, member.screen


def test_one_share_at_a_time_on_air_only_by_the_mediator_and_never_in_a_caucus(live_room):
    public_id = live_room["hearing"].public_id

    async def scenario():
        expert, applicant, respondent = await full_room(live_room)
        broadcast = await get_station().open(public_id)
        seen = {"before": on_air(broadcast, applicant.member_id)}

        await applicant.send({"type": "share", "active": True})
        for client in (expert, applicant, respondent):
            await client.expect("share", member=applicant.member_id, on_air=False)
        seen["shared"] = on_air(broadcast, applicant.member_id)
        await respondent.send({"type": "share", "active": True})
        busy = await respondent.expect("error", code="share_busy")
        await applicant.send({"type": "share_air", "on_air": True})
        forbidden = await applicant.expect("error", code="forbidden")

        await expert.send({"type": "share_air", "on_air": True})
        await respondent.expect("share", member=applicant.member_id, on_air=True)
        seen["on_air"] = on_air(broadcast, applicant.member_id)

        respondent.frames.clear()
        await expert.send({"type": "caucus", "member": respondent.member_id})
        await respondent.expect("share", member=applicant.member_id, on_air=False)
        seen["caucus"] = on_air(broadcast, applicant.member_id)
        state_in_caucus = str(broadcast.state)
        await expert.send({"type": "share_air", "on_air": True})
        refused = await expert.expect("error", code="caucus")
        await expert.send({"type": "caucus", "member": None})
        await respondent.expect("caucus", active=False)
        seen["after_caucus"] = on_air(broadcast, applicant.member_id)

        respondent.frames.clear()
        await applicant.send({"type": "share", "active": False})
        stopped = await respondent.expect("share", member=None)
        seen["stopped"] = on_air(broadcast, applicant.member_id)
        for client in (expert, applicant, respondent):
            await client.close()
        return seen, busy, forbidden, refused, stopped, state_in_caucus

    seen, busy, forbidden, refused, stopped, state_in_caucus = run(scenario)

    assert seen["before"] == (True, False)  # the camera is on air
    assert seen["shared"] == (False, False)  # the screen is not, until the mediator says
    assert busy["ref"] == "share" and forbidden["ref"] == "share_air"
    assert seen["on_air"] == (True, True)  # on air, shown large
    assert seen["caucus"] == (False, False) and state_in_caucus == "hold"
    assert refused["ref"] == "share_air"
    assert seen["after_caucus"] == (False, False)  # back off air until switched on again
    assert stopped["on_air"] is False and seen["stopped"] == (True, False)
    kinds = list(
        CaseEvent.objects.filter(case=live_room["hearing"].case, kind__startswith="room_share")
        .order_by("pk")
        .values_list("kind", flat=True)
    )
    assert kinds == [
        "room_share_started",
        "room_share_on_air",
        "room_share_off_air",  # by the caucus
        "room_share_stopped",
    ]

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from mediation_room.models import CaseEvent
from streaming.node.worker import reset_media_node
from streaming.routing import websocket_urlpatterns
from tests.factories import UserFactory, advance, make_case, make_expert
from tests.streaming.probe import wait_until
from tests.streaming.room_client import RoomClient

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hearing_room(room_settings):
    applicant, respondent, expert = UserFactory(), UserFactory(), make_expert()
    # no recording consent: these tests are about the room, and a recorder would only add load
    case = make_case(
        applicant=applicant,
        respondent=respondent,
        respondent_consents={"video": True, "livestream": True, "recording": False},
    )
    hearing = advance(case, "scheduled", expert=expert)
    return {"hearing": hearing, "applicant": applicant, "respondent": respondent, "expert": expert}


def run(scenario):
    async def wrapped():
        try:
            return await scenario()
        finally:
            await reset_media_node()

    return async_to_sync(wrapped)()


async def enter(room, who, colour, tone):
    client = RoomClient(room[who], room["hearing"].public_id, colour=colour, tone=tone)
    await client.connect()
    await client.expect("hello")
    return client


async def full_room(room):
    expert = await enter(room, "expert", "red", 440.0)
    assert expert.frames[0]["admitted"] is True
    applicant = await enter(room, "applicant", "green", 660.0)
    respondent = await enter(room, "respondent", "blue", 880.0)
    for party in (applicant, respondent):
        assert party.frames[0]["admitted"] is False
        await party.expect("waiting")
        await expert.send({"type": "admit", "member": party.member_id})
        await party.expect("admitted")
    for client in (expert, applicant, respondent):
        await client.join()
    members = (expert, applicant, respondent)
    for viewer in members:
        for other in members:
            if viewer is not other:
                assert await wait_until(lambda v=viewer, o=other: v.sees(o), within=30), (
                    viewer.user,
                    other.user,
                )
    return expert, applicant, respondent


async def expert_in_media_and_admitted_applicant(room):
    expert = await enter(room, "expert", "red", 440.0)
    applicant = await enter(room, "applicant", "green", 660.0)
    await expert.send({"type": "admit", "member": applicant.member_id})
    await applicant.expect("admitted")
    await expert.join()
    return expert, applicant


def test_members_admitted_from_the_lobby_receive_each_others_media(hearing_room):
    async def scenario():
        expert, applicant, respondent = await full_room(hearing_room)
        lobby = [f for f in expert.frames if f["type"] == "lobby"]
        members = expert.last("members")["members"]
        for client in (expert, applicant, respondent):
            await client.close()
        return lobby, members

    lobby, members = run(scenario)

    assert any(len(f["waiting"]) == 1 for f in lobby)
    assert lobby[-1]["waiting"] == []
    assert {m["label"] for m in members} == {"调解员", "申请人（甲方）", "被申请人（乙方）"}
    assert all(m["in_media"] for m in members)
    # no names or phone numbers travel to the room
    assert not any(key in m for m in members for key in ("name", "phone", "display_name"))
    kinds = list(
        CaseEvent.objects.filter(case=hearing_room["hearing"].case).values_list("kind", flat=True)
    )
    assert kinds.count("room_joined") == 3
    assert kinds.count("room_member_admitted") == 2
    assert kinds.count("room_left") == 3


def test_admitting_a_member_twice_admits_once_and_keeps_their_media(hearing_room):
    """The mediator's admit sent twice (a double click, or two lobby lists) neither restarts the
    member's media nor records a second admission."""

    async def scenario():
        expert, applicant, respondent = await full_room(hearing_room)
        admitted_before = len([f for f in applicant.frames if f["type"] == "admitted"])
        await expert.send({"type": "admit", "member": applicant.member_id})
        await expert.send({"type": "admit", "member": applicant.member_id})
        await expert.expect("lobby")
        await asyncio.sleep(1.0)
        admitted_after = len([f for f in applicant.frames if f["type"] == "admitted"])
        still_seen = await wait_until(lambda: expert.sees(applicant), within=10)
        for client in (expert, applicant, respondent):
            await client.close()
        return admitted_before, admitted_after, still_seen

    before, after, still_seen = run(scenario)
    assert before == after == 1
    assert still_seen
    kinds = list(
        CaseEvent.objects.filter(case=hearing_room["hearing"].case).values_list("kind", flat=True)
    )
    assert kinds.count("room_member_admitted") == 2


def test_caucus_puts_the_other_party_on_hold_on_the_media(hearing_room):
    async def scenario():
        expert, applicant, respondent = await full_room(hearing_room)
        await expert.send({"type": "caucus", "member": applicant.member_id})
        hold = await respondent.expect("caucus", active=True)
        audio_e, video_e = respondent.streams_of(expert.member_id)
        audio_a, video_a = respondent.streams_of(applicant.member_id)
        assert await wait_until(
            lambda: video_e.colour == "grey" and video_a.colour == "grey", within=20
        )
        await wait_until(
            lambda: max(audio_e.last_frame_at, audio_a.last_frame_at) < time.monotonic() - 0.4
        )
        marks = (audio_e.mark(), audio_a.mark(), video_e.mark(), video_a.mark())
        await asyncio.sleep(1.0)
        during = (
            audio_e.frames_since(marks[0]),
            audio_a.frames_since(marks[1]),
            video_e.frames_since(marks[2]),
            video_e.colours_since(marks[2]) | video_a.colours_since(marks[3]),
        )
        caucus_ok = expert.sees(applicant) and applicant.sees(expert)
        await expert.send({"type": "caucus", "member": None})
        await respondent.expect("caucus", active=False)
        back = await wait_until(
            lambda: respondent.sees(expert) and respondent.sees(applicant), within=10
        )
        for client in (expert, applicant, respondent):
            await client.close()
        return hold, during, caucus_ok, back

    hold, (audio_e, audio_a, video_frames, colours), caucus_ok, back = run(scenario)

    assert hold["on_hold"] is True
    assert (audio_e, audio_a) == (0, 0)
    assert video_frames > 0 and colours == {"grey"}
    assert caucus_ok and back
    kinds = set(
        CaseEvent.objects.filter(case=hearing_room["hearing"].case).values_list("kind", flat=True)
    )
    assert {"room_caucus_started", "room_caucus_ended"} <= kinds


def test_a_caucus_that_ends_because_its_party_left_is_ended_in_the_audit_trail(hearing_room):
    """A node that takes the room over later (failover, drain) rebuilds it from the trail: the
    caucus must not come back there."""
    from streaming.selectors import room_state_from_trail

    async def scenario():
        expert, applicant, respondent = await full_room(hearing_room)
        await expert.send({"type": "caucus", "member": applicant.member_id})
        await respondent.expect("caucus", active=True)
        await applicant.close()
        ended = await respondent.expect("caucus", active=False)
        await expert.expect("caucus", active=False)
        for client in (expert, respondent):
            await client.close()
        return ended, applicant.member_id

    ended, applicant_id = run(scenario)

    assert ended["on_hold"] is False
    events = list(
        CaseEvent.objects.filter(
            case=hearing_room["hearing"].case, kind__startswith="room_caucus"
        ).values_list("kind", "actor", "data")
    )
    assert [kind for kind, _actor, _data in events] == ["room_caucus_started", "room_caucus_ended"]
    _kind, actor, data = events[-1]
    assert actor == hearing_room["expert"].pk  # recorded once, by the host who stays
    assert data["member"] == applicant_id and data["reason"] == "left"
    assert room_state_from_trail(hearing_room["hearing"].public_id)["caucus"] is None


def test_expert_removes_a_member_who_cannot_come_back(hearing_room):
    async def scenario():
        expert = await enter(hearing_room, "expert", "red", 440.0)
        respondent = await enter(hearing_room, "respondent", "blue", 880.0)
        # a forged member id changes nothing and is not written to the audit trail
        await expert.send({"type": "remove", "member": "forged-member-id"})
        await expert.expect("error", code="bad_member")
        await expert.send({"type": "remove", "member": respondent.member_id})
        await expert.expect("done", action="remove")
        removed = await respondent.expect("removed")
        await wait_until(lambda: respondent.closed is not None)
        again = RoomClient(hearing_room["respondent"], hearing_room["hearing"].public_id)
        await again.connect()
        second = await again.expect("removed")
        await wait_until(lambda: again.closed is not None)
        closed = (respondent.closed, again.closed)
        await expert.close()
        return removed, second, closed

    removed, second, closed = run(scenario)
    assert removed["type"] == second["type"] == "removed"
    assert closed == (4410, 4410)
    assert CaseEvent.objects.filter(kind="room_member_removed").count() == 1


@pytest.mark.signalling
def test_refusals_for_strangers_anonymous_and_other_cases(hearing_room):
    other_party = UserFactory()
    make_case(applicant=other_party)
    viewer = UserFactory()

    async def attempt(user):
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/room/{hearing_room['hearing'].public_id}/"
        )
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        frame = await communicator.receive_json_from(timeout=5)
        closed = await communicator.receive_output(timeout=5)
        return connected, frame, closed

    async def scenario():
        return [await attempt(user) for user in (AnonymousUser(), viewer, other_party)]

    results = run(scenario)
    codes = [frame["code"] for _, frame, _ in results]
    assert codes == ["login_required", "forbidden", "forbidden"]
    assert all(frame["type"] == "refused" for _, frame, _ in results)
    assert all(closed == {"type": "websocket.close", "code": 4403} for _, _, closed in results)


@pytest.mark.signalling
def test_bad_frames_get_error_frames_and_a_flood_is_cut_off(hearing_room):
    async def scenario():
        applicant = await enter(hearing_room, "applicant", "green", 660.0)
        await applicant.send("not json")
        await applicant.send({"type": "teleport"})
        await applicant.send({"type": "join", "offer": "v=0 " + "x" * 70_000})
        await applicant.send({"type": "mute", "member": "x", "audio": True})
        await applicant.send({"type": "join", "offer": "v=0\r\ngarbage"})
        codes_before_admit = await wait_until(
            lambda: (
                [f["code"] for f in applicant.frames if f["type"] == "error"]
                if len([f for f in applicant.frames if f["type"] == "error"]) >= 5
                else None
            )
        )
        expert = await enter(hearing_room, "expert", "red", 440.0)
        await expert.send({"type": "admit", "member": applicant.member_id})
        await applicant.expect("admitted")
        await applicant.send(
            {"type": "join", "offer": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}
        )
        bad_offer = await applicant.expect("error", code="bad_offer")
        for _ in range(120):
            await applicant.send({"type": "ping"})
        await wait_until(lambda: applicant.closed is not None)
        rate_limited = [f for f in applicant.frames if f.get("code") == "rate_limited"]
        closed = applicant.closed
        await expert.close()
        return codes_before_admit, bad_offer, rate_limited, closed

    codes, bad_offer, rate_limited, closed = run(scenario)
    assert codes == ["bad_json", "unknown_type", "too_large", "forbidden", "not_admitted"]
    assert bad_offer["ref"] == "join"
    assert rate_limited
    assert closed == 4429


@pytest.mark.signalling
def test_websocket_from_another_origin_is_refused(hearing_room):
    from asgi import application

    async def scenario():
        communicator = WebsocketCommunicator(
            application,
            f"/ws/room/{hearing_room['hearing'].public_id}/",
            headers=[(b"origin", b"https://evil.example"), (b"host", b"localhost")],
        )
        connected, _ = await communicator.connect()
        return connected

    assert run(scenario) is False


def test_after_a_network_drop_a_member_reconnects_with_a_fresh_connection(hearing_room):
    from tests.streaming.probe import ProbePeer

    async def scenario():
        expert, applicant = await expert_in_media_and_admitted_applicant(hearing_room)
        await applicant.join()
        assert await wait_until(
            lambda: expert.sees(applicant) and applicant.sees(expert), within=30
        )
        # the applicant's connection dies; the page offers a fresh one on the same socket
        dropped = applicant.peer
        applicant.peer = ProbePeer(colour="green", tone=660.0)
        applicant.frames.clear()
        await applicant.send({"type": "reconnect", "offer": await applicant.peer.offer()})
        answer = await applicant.expect("answer", within=20)
        await applicant.peer.accept(answer["sdp"])
        await dropped.close()
        _, expert_view = expert.streams_of(applicant.member_id)
        mark = expert_view.mark()
        back = await wait_until(
            lambda: applicant.sees(expert) and len(set(expert_view.counters_since(mark))) >= 5,
            within=30,
        )
        await applicant.close()
        await expert.close()
        return back

    assert run(scenario)
    joins = CaseEvent.objects.filter(kind="room_joined", case=hearing_room["hearing"].case)
    # a reconnection is not a second join
    assert joins.count() == 2


def test_a_member_who_offers_twice_at_once_ends_on_the_latest_offer_alone(hearing_room):
    """Two join offers sent back to back (a double click, a page that retried) are answered in
    order: the second replaces the first connection, and the member joined once."""
    from streaming.node.process import get_media_node
    from tests.streaming.probe import ProbePeer

    public_id = hearing_room["hearing"].public_id

    async def scenario():
        expert, applicant = await expert_in_media_and_admitted_applicant(hearing_room)
        earlier = ProbePeer(colour="green", tone=660.0)
        applicant.peer = ProbePeer(colour="green", tone=660.0)
        offers = [await earlier.offer(), await applicant.peer.offer()]
        await applicant.send({"type": "join", "offer": offers[0], "ref": "join-1"})
        await applicant.send({"type": "join", "offer": offers[1], "ref": "join-2"})
        answer = await applicant.expect("answer", within=20, ref="join-2")
        await applicant.peer.accept(answer["sdp"])
        both = await wait_until(
            lambda: expert.sees(applicant) and applicant.sees(expert), within=30
        )
        answers = [f["ref"] for f in applicant.frames if f["type"] == "answer"]
        connections = get_media_node().members(public_id)[applicant.member_id]["connections"]
        await earlier.close()
        await applicant.close()
        await expert.close()
        return both, answers, connections

    both, answers, connections = run(scenario)
    assert both
    assert answers == ["join-1", "join-2"]
    # the second offer replaced the first connection instead of making a member of its own
    assert connections == 2
    joins = CaseEvent.objects.filter(kind="room_joined", case=hearing_room["hearing"].case)
    assert joins.count() == 2


@pytest.mark.signalling
def test_the_cases_coordinator_enters_without_waiting_but_has_no_mediator_controls(hearing_room):
    from tests.factories import make_coordinator

    coordinator = make_coordinator(hearing_room["hearing"].case.community)

    async def scenario():
        client = RoomClient(coordinator, hearing_room["hearing"].public_id)
        await client.connect()
        hello = await client.expect("hello")
        await client.send({"type": "caucus", "member": None})
        refused = await client.expect("error", code="forbidden")
        await client.close()
        return hello, refused

    hello, refused = run(scenario)
    assert hello["admitted"] is True
    assert hello["me"]["role"] == "coordinator" and hello["me"]["label"] == "协调员"
    assert refused["ref"] == "caucus"


@pytest.mark.signalling
def test_the_check_pages_connection_test_only_pings_and_never_takes_a_members_place(hearing_room):
    """The check page's socket (?probe=1) answers pings and refuses anything else; it is not in the
    mediator's lobby, and one that opens after the member's room page does not supersede it."""
    public_id = hearing_room["hearing"].public_id

    async def probe():
        client = RoomClient(hearing_room["applicant"], public_id, query="probe=1")
        await client.connect()
        await client.send({"type": "ping", "ref": "p1"})
        await client.expect("pong", ref="p1")
        return client

    async def scenario():
        expert = await enter(hearing_room, "expert", "red", 440.0)
        testing = await probe()
        await testing.send({"type": "leave", "ref": "l1"})
        refused = await testing.expect("error", code="probe")
        probe_frames = [f["type"] for f in testing.frames]
        lobby_while_testing = [f["waiting"] for f in expert.frames if f["type"] == "lobby"]

        applicant = await enter(hearing_room, "applicant", "green", 660.0)
        await applicant.expect("waiting")
        late = await probe()  # a test socket that opened late, as under load
        await testing.close()
        await late.close()
        await expert.send({"type": "admit", "member": applicant.member_id})
        await applicant.expect("admitted")
        await applicant.close()
        await expert.close()
        return refused, probe_frames, lobby_while_testing, applicant

    refused, probe_frames, lobby_while_testing, applicant = run(scenario)
    assert refused["ref"] == "l1"
    assert "hello" not in probe_frames and "waiting" not in probe_frames
    assert all(not waiting for waiting in lobby_while_testing)
    assert not [f for f in applicant.frames if f["type"] == "error"]
    assert applicant.closed in (None, 1000)

"""The audience WebSocket through the real Redis channel layer (RedisPubSubChannelLayer)."""

import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from mediation_room import services as case_services
from tests.factories import UserFactory, make_case
from tests.voting.ws import Viewer
from voting.models import Comment, RoomEvent
from voting.services import comments, polling, rooms

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_comment_reaches_every_viewer_exactly_once(live_case, room, anonymous):
    poster_user = UserFactory(display_name="老王")
    others = [UserFactory() for _ in range(2)]

    async def scenario():
        poster = Viewer(live_case["hearing"].public_id, poster_user)
        viewers = [Viewer(live_case["hearing"].public_id, u) for u in others]
        viewers.append(Viewer(live_case["hearing"].public_id, anonymous))
        for v in [poster, *viewers]:
            await v.connect()
        await poster.send(type="comment", client_id="c-0000000001", text="大家好")
        ack = await poster.recv_type("comment.ack")
        assert ack["state"] == "visible" and ack["duplicate"] is False
        for v in [poster, *viewers]:
            (event,) = await v.events(1)
            assert event["kind"] == "comment"
            assert event["text"] == "大家好" and event["nick"] == "老王"
            assert event["seq"] == ack["seq"]
            assert "phone" not in json.dumps(event) and poster_user.phone not in json.dumps(event)
            assert await v.nothing_more()
        for v in [poster, *viewers]:
            await v.close()

    async_to_sync(scenario)()
    assert Comment.objects.filter(room=room).count() == 1


def test_reconnect_resumes_from_last_seq_without_gaps_or_repeats(live_case, room):
    user = UserFactory()
    talker = UserFactory()

    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, user, after=0)
        await viewer.connect()
        speaker = Viewer(live_case["hearing"].public_id, talker)
        await speaker.connect()
        for i in range(3):
            await speaker.send(type="comment", client_id=f"first-{i:05d}", text=f"一{i}")
            await speaker.recv_type("comment.ack")
        seen = await viewer.events(3)
        last = seen[-1]["seq"]
        await viewer.close()
        # While the viewer is away, five more comments.
        for i in range(5):
            await speaker.send(type="comment", client_id=f"second-{i:05d}", text=f"二{i}")
            await speaker.recv_type("comment.ack")
        back = Viewer(live_case["hearing"].public_id, user, after=last)
        welcome = await back.connect()
        missed = await back.events(5)
        assert [e["seq"] for e in missed] == list(range(last + 1, last + 6))
        assert [e["text"] for e in missed] == [f"二{i}" for i in range(5)]
        assert welcome["seq"] == last + 5
        # Live again: the next comment arrives once, right after the backlog.
        await speaker.send(type="comment", client_id="third-00001", text="三")
        await speaker.recv_type("comment.ack")
        (live,) = await back.events(1)
        assert live["seq"] == last + 6
        assert await back.nothing_more()
        await back.close()
        await speaker.close()

    async_to_sync(scenario)()


def test_duplicate_client_id_is_stored_once_and_broadcast_once(live_case, room):
    user = UserFactory()

    async def scenario():
        poster = Viewer(live_case["hearing"].public_id, user)
        await poster.connect()
        await poster.send(type="comment", client_id="same-id-0001", text="只发一次")
        first = await poster.recv_type("comment.ack")
        (event,) = await poster.events(1)
        await poster.close()
        # The browser resends after a reconnect, with the same client id.
        again = Viewer(live_case["hearing"].public_id, user)
        await again.connect()
        await again.send(type="comment", client_id="same-id-0001", text="只发一次")
        second = await again.recv_type("comment.ack")
        assert second["duplicate"] is True and second["id"] == first["id"]
        assert await again.nothing_more()
        await again.close()

    async_to_sync(scenario)()
    assert Comment.objects.filter(room=room, client_id="same-id-0001").count() == 1
    assert RoomEvent.objects.filter(room=room, kind="comment").count() == 1


def test_catch_up_over_http_returns_missed_events_in_order(client, live_case, room):
    author = UserFactory()
    for i in range(4):
        comments.comment_post(room=room, author=author, client_id=f"http-{i:06d}", text=f"第{i}条")
    response = client.get(f"/live/{live_case['hearing'].public_id}/events?after=1")
    assert response.status_code == 200
    body = response.json()
    assert [e["seq"] for e in body["events"]] == [2, 3, 4]
    assert body["last_seq"] == 4
    assert client.get(f"/live/{live_case['hearing'].public_id}/events?after=x").status_code == 400


def test_anonymous_viewer_watches_but_may_not_comment_or_vote(live_case, room, anonymous):
    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, anonymous)
        welcome = await viewer.connect()
        assert welcome["can_comment"] is False
        await viewer.send(type="comment", client_id="anon-000001", text="hi")
        error = await viewer.recv_type("error")
        assert error["code"] == "sign_in"
        await viewer.send(type="vote", poll="ABC", option=0)
        assert (await viewer.recv_type("error"))["code"] == "sign_in"
        await viewer.close()

    async_to_sync(scenario)()
    assert not Comment.objects.exists()


def test_room_without_every_partys_livestream_consent_is_not_watchable(community, anonymous):
    respondent = UserFactory()
    case = make_case(
        community=community,
        respondent=respondent,
        respondent_consents={"video": True, "livestream": False, "recording": False},
    )
    start = case_services.timezone.now()
    from tests.factories import advance

    hearing = advance(case, "scheduled")
    assert start

    async def scenario():
        viewer = Viewer(hearing.public_id, anonymous)
        connected, _ = await viewer.comm.connect(timeout=10)
        assert connected
        error = await viewer.recv_type("error")
        assert error["code"] == "not_found"
        assert (await viewer.comm.receive_output(timeout=5))["type"] == "websocket.close"

    async_to_sync(scenario)()


def test_viewers_are_let_go_when_a_party_withdraws_livestream_consent(live_case, anonymous):
    """Only the case's members and moderators keep their socket once the room is not public;
    a stranger connecting afterwards is turned away."""
    case, public_id = live_case["case"], live_case["hearing"].public_id
    respondent = case.parties.select_related("user").get(role="respondent")
    applicant = case.parties.get(role="applicant").user
    resident = UserFactory()

    async def scenario():
        stranger, signed_in = Viewer(public_id, anonymous), Viewer(public_id, resident)
        member = Viewer(public_id, applicant)
        for v in (stranger, signed_in, member):
            await v.connect()
        await database_sync_to_async(case_services.consent_set)(
            party=respondent, actor=respondent.user, kind="livestream", granted=False
        )
        for v in (stranger, signed_in):
            error = await v.recv_type("error")
            assert error["code"] == "not_found"
            assert (await v.comm.receive_output(timeout=5))["type"] == "websocket.close"
        # the member stays and still hears the room
        await member.send(type="comment", client_id="member-00001", text="我们继续")
        await member.recv_type("comment.ack")
        (event,) = await member.events(1)
        assert event["text"] == "我们继续"
        late = Viewer(public_id, anonymous)
        connected, _ = await late.comm.connect(timeout=10)
        assert connected
        assert (await late.recv_type("error"))["code"] == "not_found"
        await member.close()

    async_to_sync(scenario)()


def test_bad_frames_get_an_error_and_the_connection_lives_on(live_case, room):
    user = UserFactory()

    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, user)
        await viewer.connect()
        await viewer.send_raw("{not json")
        assert (await viewer.recv_type("error"))["code"] == "bad_json"
        await viewer.send_raw("[1, 2]")
        assert (await viewer.recv_type("error"))["code"] == "bad_frame"
        await viewer.send(type="dance")
        assert (await viewer.recv_type("error"))["code"] == "unknown_type"
        await viewer.send_raw(
            json.dumps({"v": 1, "type": "comment", "client_id": "x" * 20, "text": "长" * 70_000})
        )
        assert (await viewer.recv_type("error"))["code"] == "too_large"
        await viewer.send(type="comment", client_id="bad id!", text="hi")
        assert (await viewer.recv_type("error"))["code"] == "invalid"
        await viewer.send(type="comment", client_id="okid-000001", text="x" * 501)
        assert (await viewer.recv_type("error"))["code"] == "invalid"
        await viewer.send(type="vote", poll="NOPE1234", option=0)
        assert (await viewer.recv_type("error"))["code"] == "no_poll"
        await viewer.send(type="vote", poll="NOPE1234", option=True)
        assert (await viewer.recv_type("error"))["code"] == "invalid"
        await viewer.send(v=2, type="ping")
        assert (await viewer.recv_type("error"))["code"] == "version"
        await viewer.comm.send_to(bytes_data=b"\x00" * 10)
        assert (await viewer.recv_type("error"))["code"] == "bad_frame"
        # Still alive and well.
        await viewer.send(type="ping")
        await viewer.recv_type("pong")
        await viewer.send(type="comment", client_id="okid-000002", text="还在")
        assert (await viewer.recv_type("comment.ack"))["state"] == "visible"
        await viewer.close()

    async_to_sync(scenario)()


def test_forged_poll_from_another_room_is_refused(live_case, room, community):
    other_case = make_case(community=community, respondent=UserFactory())
    from tests.factories import advance

    other_hearing = advance(other_case, "in_session")
    other_room = rooms.room_for_hearing(other_hearing)
    other_poll = polling.poll_open(
        room=other_room, actor=other_case.expert, question="别的房间?", options=["是", "否"]
    )
    user = UserFactory()

    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, user)
        await viewer.connect()
        await viewer.send(type="vote", poll=other_poll.public_id, option=0)
        assert (await viewer.recv_type("error"))["code"] == "no_poll"
        await viewer.close()

    async_to_sync(scenario)()
    assert not other_poll.votes.exists()


def test_votes_over_the_socket_and_a_throttled_tally(live_case, room):
    voters = [UserFactory() for _ in range(3)]
    poll = polling.poll_open(
        room=room, actor=live_case["expert"], question="这个方案公平吗?", options=["公平", "不公平"]
    )

    async def scenario():
        sockets = [Viewer(live_case["hearing"].public_id, u) for u in voters]
        for s in sockets:
            await s.connect()
            assert s.welcome["polls"][0]["poll"] == poll.public_id
        for i, s in enumerate(sockets):
            await s.send(type="vote", poll=poll.public_id, option=i % 2)
            await s.recv_type("vote.ack")
        await sockets[0].send(type="vote", poll=poll.public_id, option=1)
        assert (await sockets[0].recv_type("error"))["code"] == "already_voted"
        # Three votes inside one second: one tally for all of them, a second later.
        for s in sockets:
            (tally,) = await s.events(1, wait=5)
            assert tally["kind"] == "poll.tally"
            assert tally["counts"] == [2, 1] and tally["total"] == 3
        assert await sockets[1].nothing_more(wait=1.5)
        await database_sync_to_async(polling.poll_close)(poll=poll, actor=live_case["expert"])
        for s in sockets:
            (closed,) = await s.events(1)
            assert closed["kind"] == "poll.closed" and closed["counts"] == [2, 1]
        await sockets[2].send(type="vote", poll=poll.public_id, option=0)
        # the third voter already voted; a new voter on a closed poll is refused as closed
        assert (await sockets[2].recv_type("error"))["code"] == "poll_closed"
        for s in sockets:
            await s.close()

    async_to_sync(scenario)()
    assert poll.votes.count() == 3


def test_a_comment_committed_while_the_backlog_is_read_arrives_live(live_case, room, monkeypatch):
    """The backlog of a returning viewer and the live frames meet without a gap: a comment that
    commits while the backlog is being read is either in the backlog or arrives live."""
    from voting import consumers, selectors

    user = UserFactory()
    talker = UserFactory()
    read_events = selectors.events_after
    posted = []

    def events_then_a_comment(room_, after, **kwargs):
        page = read_events(room_, after, **kwargs)
        if not posted:
            posted.append(
                comments.comment_post(room=room, author=talker, client_id="between-001", text="中")
            )
        return page

    async def scenario():
        speaker = Viewer(live_case["hearing"].public_id, talker)
        await speaker.connect()
        await speaker.send(type="comment", client_id="before-0001", text="前")
        before = (await speaker.recv_type("comment.ack"))["seq"]
        monkeypatch.setattr(consumers.selectors, "events_after", events_then_a_comment)
        back = Viewer(live_case["hearing"].public_id, user, after=before - 1)
        await back.connect()
        seen = await back.events(2)
        assert [e["text"] for e in seen] == ["前", "中"]
        assert [e["seq"] for e in seen] == [before, before + 1]
        assert await back.nothing_more()
        await back.close()
        await speaker.close()

    async_to_sync(scenario)()

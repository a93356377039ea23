"""The room hub's edge batching, through the real Redis channel layer. A group message sent
straight to the room's group stands for an event committed by another server process."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tests.factories import UserFactory
from tests.voting.ws import Viewer
from voting import broadcast

pytestmark = pytest.mark.django_db(transaction=True)


def _event(seq: int) -> dict:
    return {"seq": seq, "kind": "comment", "id": seq, "nick": "甲", "text": f"第{seq}条", "t": 0}


async def _from_another_process(room_id: int, seqs: list[int]) -> None:
    layer = get_channel_layer()
    for seq in seqs:
        await layer.group_send(
            broadcast.room_group(room_id), broadcast.events_message([_event(seq)])
        )


def test_a_burst_within_the_window_reaches_viewers_as_few_frames_in_order(live_case, room):
    user = UserFactory()

    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, user)
        welcome = await viewer.connect()
        start = welcome["seq"] + 1
        await _from_another_process(room.pk, list(range(start, start + 12)))
        frames = []
        got: list[dict] = []
        while len(got) < 12:
            frame = await viewer.recv()
            assert frame["type"] == "events"
            frames.append(frame)
            got.extend(frame["events"])
        assert [e["seq"] for e in got] == list(range(start, start + 12))
        # The leading event goes at once, the rest wait for the end of the window together.
        assert len(frames) <= 3
        assert await viewer.nothing_more()
        await viewer.close()

    async_to_sync(scenario)()


def test_events_arriving_out_of_order_go_out_in_sequence(live_case, room):
    user = UserFactory()

    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, user)
        welcome = await viewer.connect()
        start = welcome["seq"] + 1
        await _from_another_process(room.pk, [start])
        (first,) = await viewer.events(1)
        assert first["seq"] == start
        # Two processes: start+2 reaches the hub before start+1.
        await _from_another_process(room.pk, [start + 2, start + 1, start + 3])
        rest = await viewer.events(3)
        assert [e["seq"] for e in rest] == [start + 1, start + 2, start + 3]
        assert await viewer.nothing_more()
        await viewer.close()

    async_to_sync(scenario)()


def test_the_first_events_a_hub_sees_go_out_in_sequence_when_they_arrive_out_of_order(
    live_case, room
):
    user = UserFactory()

    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, user)
        welcome = await viewer.connect()
        start = welcome["seq"] + 1
        # The hub has sent nothing yet; start+1 overtakes start on the way.
        await _from_another_process(room.pk, [start + 1, start])
        got = await viewer.events(2)
        assert [e["seq"] for e in got] == [start, start + 1]
        assert await viewer.nothing_more()
        await viewer.close()

    async_to_sync(scenario)()


def test_a_gap_that_never_fills_does_not_hold_later_events_for_long(live_case, room):
    user = UserFactory()

    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, user)
        welcome = await viewer.connect()
        start = welcome["seq"] + 1
        await _from_another_process(room.pk, [start])
        await viewer.events(1)
        # start+1 was lost with a crashed process: start+2 still reaches the viewer, who fetches
        # the missing one over HTTP.
        await _from_another_process(room.pk, [start + 2])
        (late,) = await viewer.events(1, wait=2)
        assert late["seq"] == start + 2
        await viewer.close()

    async_to_sync(scenario)()


def test_an_event_that_reaches_the_hub_twice_goes_out_once(live_case, room):
    user = UserFactory()

    async def scenario():
        viewer = Viewer(live_case["hearing"].public_id, user)
        welcome = await viewer.connect()
        start = welcome["seq"] + 1
        # The tail check took start+1 from the database; then the layer delivers it after all.
        await _from_another_process(room.pk, [start, start + 1])
        await viewer.events(2)
        await _from_another_process(room.pk, [start + 1, start + 2])
        (late,) = await viewer.events(1)
        assert late["seq"] == start + 2
        assert await viewer.nothing_more()
        await viewer.close()

    async_to_sync(scenario)()

"""Abuse of every WebSocket endpoint through asgi.py's application (origin check, session auth,
URL router) and the real consumers, channel layer (Redis), database and in-process media node.

Whatever one client sends, the server answers with error frames or closes that client's
connection, nothing raises out of a consumer, and another client of the same room keeps working.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudbench.sockets import CLOSE_FLOOD, ProtocolConsumer
from mediation_room import protocol as agreement_protocol
from mediation_room.agreements.consumers import AgreementConsumer
from streaming import protocol as room_protocol
from streaming.broadcast.consumers import WatchConsumer
from streaming.consumers import RoomConsumer
from streaming.node.worker import reset_media_node
from voting import protocol as live_protocol
from voting.consumers import LiveRoomConsumer

from .ws import Socket, endpoints

# In the parallel group: the in-process media node only answers signalling here (no media flows,
# nothing is timed against the clock), and every test has a channel-layer prefix of its own.
pytestmark = pytest.mark.django_db(transaction=True)

# Every socket, its consumer: all four read frames through the one base, with their own limits.
CONSUMERS: dict[str, type[ProtocolConsumer]] = {
    "room": RoomConsumer,
    "watch": WatchConsumer,
    "live": LiveRoomConsumer,
    "agreement": AgreementConsumer,
}
ENDPOINTS = list(CONSUMERS)
# who connects to each endpoint: the abuser, and the bystander who must keep working
PEOPLE = {
    # the mediator is admitted at once, so the media node handles everything they send
    "room": ("expert", "party"),
    "watch": ("viewer", "o_party"),
    "live": ("viewer", "o_party"),
    "agreement": ("party", "coord"),
}


def lift_message_budgets(monkeypatch) -> None:
    """Let every message through the per-socket rate limits."""
    for consumer in CONSUMERS.values():
        monkeypatch.setattr(
            consumer, "limits", dataclasses.replace(consumer.limits, burst=10_000.0)
        )


def run(scenario):
    async def wrapped():
        try:
            return await scenario()
        finally:
            await reset_media_node()

    return async_to_sync(wrapped)()


def assert_consumer_did_not_raise(socket: Socket) -> None:
    future = socket.comm.future
    if future.done() and not future.cancelled() and future.exception() is not None:
        raise AssertionError(f"the consumer raised: {future.exception()!r}")


async def open_socket(w, endpoint: str, role: str) -> Socket:
    socket = Socket(endpoints(w)[endpoint], w.users[role])
    assert await socket.connect(), f"{role} could not connect to {endpoint}"
    await socket.settle()
    assert socket.closed is None, f"{role} refused by {endpoint}: {socket.frames}"
    return socket


async def bystander_still_served(w, endpoint: str, bystander: Socket) -> None:
    """The other client gets its normal answers: a pong, and for the room the media node's
    answer to a join, for the live room another viewer's comment."""
    answer = await bystander.exchange({"type": "ping"})
    assert answer is not None and answer[0]["type"] == "pong", answer
    if endpoint == "room":
        start = len(bystander.frames)
        await bystander.send({"type": "join", "offer": "v=0\r\n"})
        found = await bystander.wait_for(
            lambda f: (
                f.get("type") == "answer" or (f.get("type") == "error" and f["ref"] == "join")
            ),
            20,
            start=start,
        )
        assert found is not None, f"the media node no longer answers: {bystander.frames[start:]}"
    if endpoint == "live":
        third = await open_socket(w, "live", "coord")
        start = len(bystander.frames)
        answer = await third.exchange(
            {"type": "comment", "v": 1, "client_id": f"after-{time.monotonic_ns()}", "text": "还在"}
        )
        assert answer and answer[0]["type"] == "comment.ack", answer
        found = await bystander.wait_for(
            lambda f: (
                f.get("type") == "events"
                and any(e.get("text") == "还在" for e in f.get("events", []))
            ),
            15,
            start=start,
        )
        assert found is not None, "the other viewer no longer receives the room's events"
        await third.close()
    assert_consumer_did_not_raise(bystander)


# -- origin ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [[], [(b"origin", b"https://evil.example")], [(b"origin", b"http://testserver.evil.example")]],
    ids=["no-origin", "foreign-origin", "lookalike-origin"],
)
def test_a_socket_without_our_origin_is_refused(ws_world, endpoint, headers):
    async def scenario():
        socket = Socket(endpoints(ws_world)[endpoint], ws_world.users["party"], headers=headers)
        connected = await socket.connect()
        frames = list(socket.frames)
        await socket.close()
        return connected, frames

    connected, frames = run(scenario)
    assert not connected
    assert frames == []


# -- oversized, malformed -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_oversized_and_malformed_frames_get_errors(ws_world, endpoint, monkeypatch):
    # eleven bad frames, each followed by a ping, is not a flood (the flood test below keeps the
    # budgets): a frame dropped by the budget would read as silence here
    lift_message_budgets(monkeypatch)
    abuser_role, bystander_role = PEOPLE[endpoint]

    async def scenario():
        bystander = await open_socket(ws_world, endpoint, bystander_role)
        abuser = await open_socket(ws_world, endpoint, abuser_role)
        outcomes = {}
        for name, payload in [
            ("oversized", json.dumps({"type": "ping", "pad": "x" * (65 * 1024)})),
            ("oversized-binary", b"\0" * (65 * 1024)),
            ("not-json", "{not json"),
            ("json-array", "[1, 2, 3]"),
            ("json-string", '"ping"'),
            ("deep", "[" * 5000 + "]" * 5000),
            ("deep-small", "[" * 1000 + "]" * 1000),
            ("no-type", "{}"),
            ("unknown-type", json.dumps({"type": "hack", "v": 1})),
            ("binary", b"\x00\x01\x02"),
            ("lone-surrogate", '{"type": "ping", "x": "\\ud800"}'),
        ]:
            if abuser.closed is not None:
                abuser = await open_socket(ws_world, endpoint, abuser_role)
            answer = await abuser.exchange(payload)
            assert_consumer_did_not_raise(abuser)
            if answer is None:  # no answer: the socket must have been closed, not gone silent
                outcomes[name] = "closed" if abuser.closed is not None else "silent"
            else:
                outcomes[name] = [f.get("code") for f in answer]
        await bystander_still_served(ws_world, endpoint, bystander)
        await abuser.close()
        await bystander.close()
        return outcomes

    outcomes = run(scenario)
    for name, outcome in outcomes.items():
        if name == "lone-surrogate" and outcome == []:
            continue  # valid JSON, an ignored field: a ping is a ping
        assert outcome == "closed" or (outcome and all(outcome)), (name, outcome)
    assert outcomes["oversized"] == "closed" or outcomes["oversized"][0] == "too_large"


FRAMING = {
    "not-json": ("{not json", "bad_json"),
    "json-array": ("[1, 2, 3]", "bad_frame"),
    "binary": (b"\x00\x01\x02", "bad_frame"),
    "deep": ("[" * 1000 + "]" * 1000, "too_deep"),
    "deep-small": ('{"type": "ping", "x": ' + "[" * 20 + "]" * 20 + "}", "too_deep"),
    "no-type": ("{}", "unknown_type"),
    "unknown-type": (json.dumps({"type": "hack"}), "unknown_type"),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_socket_answers_a_bad_frame_with_the_one_error_frame(ws_world, endpoint, monkeypatch):
    lift_message_budgets(monkeypatch)
    abuser_role, _bystander_role = PEOPLE[endpoint]
    limits = CONSUMERS[endpoint].limits
    cases = {
        **FRAMING,
        # one byte over the protocol's own cap, counted in UTF-8 bytes (板 is three)
        "over-the-cap": (
            json.dumps({"type": "ping", "pad": "板" * (limits.max_bytes // 3)}, ensure_ascii=False),
            "too_large",
        ),
    }

    async def scenario():
        abuser = await open_socket(ws_world, endpoint, abuser_role)
        answers = {}
        for name, (payload, _code) in cases.items():
            answers[name] = await abuser.exchange(payload)
            assert_consumer_did_not_raise(abuser)
        await abuser.close()
        return answers

    answers = run(scenario)
    for name, (_payload, code) in cases.items():
        errors = [f for f in answers[name] or [] if f.get("type") == "error"]
        assert len(errors) == 1, (name, answers[name])
        error = errors[0]
        assert set(error) == {"type", "code", "message", "ref"}, (name, error)
        assert error["code"] == code and error["message"], (name, error)
    assert answers["unknown-type"][0]["ref"] == "hack"


# -- flood ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_flood_of_messages_is_rate_limited(ws_world, endpoint):
    abuser_role, bystander_role = PEOPLE[endpoint]
    message = {
        "room": {"type": "media", "audio": True, "video": False},
        "watch": {"type": "ping"},
        "live": {"type": "ping", "v": 1},
        "agreement": {"type": "refresh"},
    }[endpoint]

    async def scenario():
        bystander = await open_socket(ws_world, endpoint, bystander_role)
        abuser = await open_socket(ws_world, endpoint, abuser_role)
        start = len(abuser.frames)
        text = json.dumps(message)
        for _ in range(1000):  # all at once: far more than 1,000 a second
            if abuser.closed is not None:
                break
            await abuser.comm.send_to(text_data=text)
        # the server has read everything when it answers a last message (or has closed)
        if abuser.closed is None:
            await abuser.send({"type": "ping"})
            await abuser.wait_for(lambda f: False, 5, start=len(abuser.frames))
        assert_consumer_did_not_raise(abuser)
        answers = abuser.frames[start:]
        await bystander_still_served(ws_world, endpoint, bystander)
        closed = abuser.closed
        await abuser.close()
        await bystander.close()
        return answers, closed

    answers, closed = run(scenario)
    limited = [f for f in answers if f.get("type") == "error" and f.get("code") == "rate_limited"]
    assert limited or closed not in (None, 1000), "1,000 messages went through without a limit"
    # most of the flood was not served
    served = [f for f in answers if f.get("type") not in ("error",)]
    assert len(served) < 200, f"{len(served)} of 1,000 flood messages were answered"
    # every socket closes a client that keeps flooding after being told
    assert closed == CLOSE_FLOOD


# -- random messages from the protocol schemas --------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
sdp_like = st.builds(lambda s: "v=0\r\n" + s, st.text(max_size=200))
member_like = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=41)

FIELDS = {
    "room": {
        "types": sorted(room_protocol.SCHEMAS),
        "fields": {
            "offer": sdp_like | json_values,
            "member": member_like | json_values,
            "audio": st.booleans() | json_values,
            "video": st.booleans() | json_values,
            "receive_video": st.booleans() | json_values,
            "ref": st.text(max_size=45) | json_values,
            "v": st.sampled_from([1, 2, "1"]) | json_values,
        },
    },
    "watch": {
        "types": ["watch.offer", "watch.leave", "ping"],
        "fields": {"sdp": sdp_like | json_values},
    },
    "live": {
        "types": ["resume", "comment", "vote", "ping"],
        "fields": {
            "v": st.sampled_from([1, 2]) | json_values,
            "after": st.integers(min_value=-5, max_value=2**63) | json_values,
            "client_id": st.from_regex(live_protocol.CLIENT_ID_RE, fullmatch=True) | json_values,
            "text": st.text(max_size=600) | json_values,
            "poll": st.from_regex(live_protocol.POLL_ID_RE, fullmatch=True) | json_values,
            "option": st.integers(min_value=-2, max_value=102) | json_values,
        },
    },
    "agreement": {
        "types": sorted(agreement_protocol.AGREEMENT_CLIENT_MESSAGES),
        "fields": {"v": json_values, "data": json_values},
    },
}


def message_strategy(endpoint: str):
    spec = FIELDS[endpoint]
    objects = st.fixed_dictionaries(
        {"type": st.sampled_from(spec["types"]) | json_values},
        optional={name: values for name, values in spec["fields"].items()},
    ).map(json.dumps)
    # (an empty frame cannot be sent through the test communicator)
    return objects | st.text(min_size=1, max_size=100) | st.binary(min_size=1, max_size=100)


def draw_messages(endpoint: str) -> list[str | bytes]:
    """Up to 100 messages drawn by hypothesis from the endpoint's protocol."""
    drawn: list[str | bytes] = []

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(message_strategy(endpoint))
    def collect(message):
        drawn.append(message)

    collect()
    return drawn


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_random_protocol_messages_never_break_a_consumer(ws_world, endpoint, monkeypatch):
    # a fuzzing client is not a flood: let every message through the per-socket rate limits
    # (the flood test above keeps them)
    for consumer in CONSUMERS.values():
        monkeypatch.setattr(
            consumer, "limits", dataclasses.replace(consumer.limits, burst=10_000.0)
        )
    abuser_role, bystander_role = PEOPLE[endpoint]
    drawn = draw_messages(endpoint)

    async def scenario():
        bystander = await open_socket(ws_world, endpoint, bystander_role)
        abuser = await open_socket(ws_world, endpoint, abuser_role)
        reconnects = 0
        for message in drawn:
            if abuser.closed is not None:
                reconnects += 1
                abuser = await open_socket(ws_world, endpoint, abuser_role)
            start = len(abuser.frames)
            answer = await abuser.exchange(message)
            assert_consumer_did_not_raise(abuser)
            for frame in abuser.frames[start:]:
                assert isinstance(frame.get("type"), str), (message, frame)
            if answer is None:
                assert abuser.closed not in (None, 1011), (message, abuser.closed)
        await bystander_still_served(ws_world, endpoint, bystander)
        await abuser.close()
        await bystander.close()
        return reconnects

    run(scenario)

"""Authorisation matrix of the WebSocket endpoints: connecting, and each message type of each
protocol, against each role. Endpoints come from cloudbench/routing.py, so a new socket without
rows fails `test_every_socket_has_matrix_rows`.

Cells. For `connect`: `ok` (greeted) or `close:<code>` (refused, after an error frame saying
why). For a message: what the server answered before the pong of a ping sent right after it:
`pong`, an acknowledgement type (`comment.ack`, `vote.ack`), `error:<code>` (refused or invalid),
`ok` (taken, nothing to answer at once: forwarded to the media node), `-` (not connected).
For the room and the watch socket, answers of the media node arrive on their own time; only
the consumer's own refusal counts (an error frame with one of REFUSALS), anything else is `ok`.
`watch.private` and `live.private` are the same sockets once a party withdrew their consent to
the livestream: then only the case's own people may follow the audience room.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from cloudbench.routing import websocket_urlpatterns
from mediation_room import services as case_services
from streaming.node.worker import reset_media_node
from voting import consumers as voting_consumers

from .matrix import format_rows, parse_table
from .world import ROLES
from .ws import Socket, endpoints

# In the parallel group: the in-process media node only answers signalling here (no media flows,
# nothing is timed against the clock), and every test has a channel-layer prefix of its own.
pytestmark = pytest.mark.django_db(transaction=True)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
REFUSALS = {"forbidden", "sign_in", "login_required", "not_found", "private", "closed"}


def messages(w) -> dict[str, dict[str, dict]]:
    member = "m" * 12
    return {
        "room": {
            "ping": {"type": "ping"},
            "join": {"type": "join", "offer": SDP},
            "reconnect": {"type": "reconnect", "offer": SDP},
            "leave": {"type": "leave"},
            "media": {"type": "media", "audio": True, "video": False},
            "admit": {"type": "admit", "member": member},
            "mute": {"type": "mute", "member": member, "audio": True},
            "remove": {"type": "remove", "member": member},
            "caucus": {"type": "caucus", "member": None},
        },
        "watch": {
            "ping": {"type": "ping"},
            "watch.offer": {"type": "watch.offer", "sdp": SDP},
            "watch.leave": {"type": "watch.leave"},
        },
        "live": {
            "ping": {"type": "ping", "v": 1},
            "resume": {"type": "resume", "v": 1, "after": 0},
            "comment": {"type": "comment", "v": 1, "client_id": "c-12345678", "text": "支持调解"},
            "vote": {"type": "vote", "v": 1, "poll": w.poll.public_id, "option": 0},
        },
        "agreement": {"ping": {"type": "ping"}, "refresh": {"type": "refresh"}},
    }


EXPECTED = """
endpoint       message      anon             viewer           party            expert           coord            o_party          o_expert         o_coord          moderator        admin
room           connect      close:4403       close:4403       ok               ok               ok               close:4403       close:4403       close:4403       close:4403       ok
room           ping         -                -                pong             pong             pong             -                -                -                -                pong
room           join         -                -                ok               ok               ok               -                -                -                -                ok
room           reconnect    -                -                ok               ok               ok               -                -                -                -                ok
room           leave        -                -                ok               ok               ok               -                -                -                -                ok
room           media        -                -                ok               ok               ok               -                -                -                -                ok
room           admit        -                -                error:forbidden  ok               error:forbidden  -                -                -                -                error:forbidden
room           mute         -                -                error:forbidden  ok               error:forbidden  -                -                -                -                error:forbidden
room           remove       -                -                error:forbidden  ok               error:forbidden  -                -                -                -                error:forbidden
room           caucus       -                -                error:forbidden  ok               error:forbidden  -                -                -                -                error:forbidden
watch          connect      ok               ok               ok               ok               ok               ok               ok               ok               ok               ok
watch          ping         pong             pong             pong             pong             pong             pong             pong             pong             pong             pong
watch          watch.offer  ok               ok               ok               ok               ok               ok               ok               ok               ok               ok
watch          watch.leave  ok               ok               ok               ok               ok               ok               ok               ok               ok               ok
live           connect      ok               ok               ok               ok               ok               ok               ok               ok               ok               ok
live           ping         pong             pong             pong             pong             pong             pong             pong             pong             pong             pong
live           resume       ok               ok               ok               ok               ok               ok               ok               ok               ok               ok
live           comment      error:sign_in    comment.ack      comment.ack      comment.ack      comment.ack      comment.ack      comment.ack      comment.ack      comment.ack      comment.ack
live           vote         error:sign_in    vote.ack         vote.ack         vote.ack         vote.ack         vote.ack         vote.ack         vote.ack         vote.ack         vote.ack
agreement      connect      close:4403       close:4403       ok               ok               ok               close:4403       close:4403       close:4403       close:4403       ok
agreement      ping         -                -                pong             pong             pong             -                -                -                -                pong
agreement      refresh      -                -                empty            empty            empty            -                -                -                -                empty
watch.private  connect      close:4403       close:4403       close:4403       close:4403       close:4403       close:4403       close:4403       close:4403       close:4403       close:4403
watch.private  ping         -                -                -                -                -                -                -                -                -                -
watch.private  watch.offer  -                -                -                -                -                -                -                -                -                -
watch.private  watch.leave  -                -                -                -                -                -                -                -                -                -
live.private   connect      close:4404       close:4404       ok               ok               ok               close:4404       close:4404       close:4404       ok               ok
live.private   ping         -                -                pong             pong             pong             -                -                -                pong             pong
live.private   resume       -                -                ok               ok               ok               -                -                -                ok               ok
live.private   comment      -                -                comment.ack      comment.ack      comment.ack      -                -                -                comment.ack      comment.ack
live.private   vote         -                -                vote.ack         vote.ack         vote.ack         -                -                -                vote.ack         vote.ack
"""


def cell(endpoint: str, answer: list[dict] | None) -> str:
    if answer is None:
        return "closed"
    errors = [f for f in answer if f.get("type") == "error"]
    if answer and answer[0]["type"] == "pong":
        return "pong"
    if endpoint in ("room", "watch"):
        refused = [f for f in errors if f.get("code") in REFUSALS]
        return f"error:{refused[0]['code']}" if refused else "ok"
    if errors:
        return f"error:{errors[0].get('code')}"
    return answer[0]["type"] if answer else "ok"


async def observe_endpoint(w, endpoint: str) -> dict[tuple[str, str], dict[str, str]]:
    path = endpoints(w)[endpoint.split(".")[0]]
    rows: dict[tuple[str, str], dict[str, str]] = {(endpoint, "connect"): {}}
    for name in messages(w)[endpoint.split(".")[0]]:
        rows[(endpoint, name)] = {}
    for role in ROLES:
        socket = Socket(path, w.users[role])
        try:
            await socket.connect()
            await socket.settle()
            if socket.closed is not None:
                rows[(endpoint, "connect")][role] = f"close:{socket.closed}"
                for name in messages(w)[endpoint.split(".")[0]]:
                    rows[(endpoint, name)][role] = "-"
                continue
            rows[(endpoint, "connect")][role] = "ok"
            for name, message in messages(w)[endpoint.split(".")[0]].items():
                answer = await socket.exchange(message)
                rows[(endpoint, name)][role] = cell(endpoint.split(".")[0], answer)
        finally:
            await socket.close()
    return rows


def _rows():
    return parse_table(EXPECTED, key_columns=2)


def test_every_socket_has_matrix_rows(ws_world):
    routed = {str(p.pattern) for p in websocket_urlpatterns}
    known = {"room", "watch", "live", "agreement"}
    assert len(routed) == len(known), f"a new WebSocket route needs rows here: {sorted(routed)}"
    for endpoint in ENDPOINTS:
        expected = {k[1] for k in _rows() if k[0] == endpoint}
        assert expected == {"connect", *messages(ws_world)[endpoint.split(".")[0]]}, endpoint


ENDPOINTS = ["room", "watch", "live", "agreement", "watch.private", "live.private"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_socket_answers_each_role_as_written(ws_world, endpoint):
    if endpoint.endswith(".private"):
        party = ws_world.case.parties.get(role="respondent")
        case_services.consent_set(party=party, actor=party.user, kind="livestream", granted=False)
        voting_consumers._room_cache.clear()  # its two-second cache of who may watch

    async def scenario():
        try:
            return await observe_endpoint(ws_world, endpoint)
        finally:
            await reset_media_node()

    actual = async_to_sync(scenario)()
    expected = {k: v for k, v in _rows().items() if k[0] == endpoint}
    assert actual == expected, (
        "\nexpected:\n" + format_rows(expected) + "\nactual:\n" + format_rows(actual)
    )

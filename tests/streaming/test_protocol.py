import json

import pytest

from streaming import protocol


def frame(**data):
    return json.dumps(data)


def test_valid_frames_parse_to_messages():
    join = protocol.parse(frame(type="join", v=1, offer="v=0\r\n...", ref="a1"))
    assert (join.type, join.data, join.ref) == ("join", {"offer": "v=0\r\n..."}, "a1")
    assert protocol.parse(frame(type="caucus", member=None)).data == {"member": None}
    assert protocol.parse(frame(type="mute", member="abc", video=True)).data == {
        "member": "abc",
        "video": True,
    }
    assert protocol.parse(
        frame(type="media", audio=False, video=True, receive_video=False)
    ).data == {
        "audio": False,
        "video": True,
        "receive_video": False,
    }


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "bad_frame"),
        ("{", "bad_json"),
        ("[1, 2]", "bad_frame"),
        (frame(kind="join"), "unknown_type"),
        (frame(type="__init__"), "unknown_type"),
        (frame(type="join", v=2, offer="v=0"), "unsupported_version"),
        (frame(type="join", offer=42), "bad_offer"),
        (frame(type="join", offer="hello"), "bad_offer"),
        (frame(type="join", offer="v=0" + "a" * 62_000), "too_large"),
        (frame(type="ping", padding="x" * 70_000), "too_large"),
        (frame(type="admit"), "bad_member"),
        (frame(type="admit", member="x" * 41), "bad_member"),
        (frame(type="mute", member="abc"), "bad_value"),
        (frame(type="mute", member="abc", audio="yes"), "bad_value"),
        (frame(type="media", audio=True), "bad_value"),
        (frame(type="ping", ref={"a": 1}), "bad_ref"),
    ],
)
def test_bad_frames_raise_protocol_errors_with_a_code(text, code):
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.parse(text)
    assert caught.value.code == code
    error = protocol.error_frame(caught.value)
    assert error["type"] == "error" and error["code"] == code and error["message"]


def test_turn_credentials_follow_coturns_rest_scheme(settings):
    import base64
    import hashlib
    import hmac

    from streaming.plane import browser_ice_servers, turn_credentials

    settings.TURN_SHARED_SECRET = "s3cret"
    settings.TURN_URLS = ["turn:turn.example:3478?transport=udp"]
    settings.ICE_SERVERS = [{"urls": ["stun:turn.example:3478"]}]
    username, password = turn_credentials("member1", now=1_000)
    expiry, user = username.split(":")
    assert user == "member1"
    assert int(expiry) == 1_000 + int(settings.TURN_CREDENTIAL_TTL.total_seconds())
    expected = base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest())
    assert password == expected.decode()
    servers = browser_ice_servers("member1")
    assert servers[0] == {"urls": ["stun:turn.example:3478"]}
    assert servers[1]["urls"] == settings.TURN_URLS and servers[1]["credential"]

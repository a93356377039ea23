"""The room page and the watch page give browsers TURN credentials, with a TLS (turns:) URL for
residents behind firewalls that let only TLS out, and the configured transport policy."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import time

import pytest

from tests.factories import UserFactory, advance, make_case, make_expert

pytestmark = pytest.mark.django_db

TURN_URLS = [
    "turn:turn.bench.example.cn:3478?transport=udp",
    "turn:turn.bench.example.cn:3478?transport=tcp",
    "turns:turn.bench.example.cn:5349?transport=tcp",
]


@pytest.fixture
def turn(settings):
    settings.TURN_SHARED_SECRET = "s3cret"
    settings.TURN_URLS = TURN_URLS
    settings.ICE_SERVERS = [{"urls": ["stun:turn.bench.example.cn:3478"]}]
    settings.ICE_TRANSPORT_POLICY = "relay"


def _check_turn_entry(servers: list[dict]) -> None:
    entry = next(s for s in servers if "username" in s)
    assert entry["urls"] == TURN_URLS
    expiry, _ref = entry["username"].split(":", 1)
    assert int(expiry) > time.time()
    expected = hmac.new(b"s3cret", entry["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(entry["credential"]) == expected


def test_room_page_carries_turns_credentials_and_policy(client, turn, room_settings):
    applicant = UserFactory()
    hearing = advance(make_case(applicant=applicant), "scheduled", expert=make_expert())
    client.force_login(applicant)
    page = client.get(f"/room/{hearing.public_id}/").content.decode()
    raw = re.search(r'<script id="room-config"[^>]*>(.*?)</script>', page, re.S).group(1)
    config = json.loads(raw)
    _check_turn_entry(config["iceServers"])
    assert config["iceTransportPolicy"] == "relay"
    # the member's credential names no phone number
    assert applicant.phone not in json.dumps(config["iceServers"])


def test_watch_page_carries_turns_credentials_and_policy(client, turn):
    case = make_case(
        respondent=UserFactory(),
        respondent_consents={"video": True, "livestream": True, "recording": False},
    )
    hearing = advance(case, "in_session")
    page = client.get(f"/watch/{hearing.public_id}/").content.decode()
    ice = html.unescape(re.search(r'data-ice="([^"]*)"', page).group(1))
    _check_turn_entry(json.loads(ice))
    assert 'data-ice-policy="relay"' in page


def test_node_uses_turn_only_under_the_relay_policy(turn, settings):
    from streaming.node.ice import node_ice_servers

    relay = node_ice_servers()
    assert [s.urls for s in relay] == [TURN_URLS[0], ["stun:turn.bench.example.cn:3478"]]
    settings.ICE_TRANSPORT_POLICY = "all"
    assert [s.urls for s in node_ice_servers()] == [["stun:turn.bench.example.cn:3478"]]


def test_each_node_allocation_gets_a_fresh_credential_of_its_own(turn, settings):
    """A node outlives a credential (TURN_CREDENTIAL_TTL), and coturn's user-quota counts the
    allocations of one username: every peer connection reads a username of its own, valid now."""
    from aiortc.rtcicetransport import connection_kwargs

    from streaming.node.ice import node_ice_servers

    settings.ICE_SERVERS = []
    servers = node_ice_servers()
    first, second = connection_kwargs(servers), connection_kwargs(servers)
    for kwargs in (first, second):
        expiry, user = kwargs["turn_username"].split(":")
        assert user.startswith("media-node.")
        assert int(expiry) > time.time() + settings.TURN_CREDENTIAL_TTL.total_seconds() - 5
        digest = hmac.new(b"s3cret", kwargs["turn_username"].encode(), hashlib.sha1).digest()
        assert kwargs["turn_password"] == base64.b64encode(digest).decode()
    assert first["turn_username"] != second["turn_username"]
    assert first["turn_server"] == ("turn.bench.example.cn", 3478)

"""The client's address comes from one function: forwarded headers count only from the proxy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from cloudbench.client_address import ProxyHeadersMiddleware, client_address
from tests.asgi_http import http_scope

PROXY = "10.9.0.2"


@pytest.fixture
def proxy(settings):
    settings.TRUSTED_PROXIES = [PROXY, "fd00:9::/64"]


def test_forwarded_for_is_ignored_from_a_client(proxy):
    assert client_address("203.0.113.7", "198.51.100.1") == "203.0.113.7"


def test_forwarded_for_counts_from_the_proxy(proxy):
    assert client_address(PROXY, "198.51.100.1") == "198.51.100.1"
    assert client_address("fd00:9::5", "2001:db8::1") == "2001:db8::1"


def test_the_proxy_entry_is_the_last_one(proxy):
    # a proxy that appends puts the client it saw last; the forged first entries do not count
    assert client_address(PROXY, "1.1.1.1, 2.2.2.2,198.51.100.1") == "198.51.100.1"


def test_malformed_forwarded_for_leaves_the_peer(proxy):
    assert client_address(PROXY, "not-an-address") == PROXY
    assert client_address(PROXY, "") == PROXY
    assert client_address(PROXY, "1.2.3.4\x00") == PROXY


def test_nobody_is_a_proxy_by_default():
    assert client_address("127.0.0.1", "198.51.100.1") == "127.0.0.1"


def _scope(kind: str, peer: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": kind,
        "path": "/",
        "headers": headers,
        "client": (peer, 50000),
        "scheme": "http" if kind == "http" else "ws",
    }


def _seen(scope: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope, receive, send):
        seen.update(scope)

    async def run():
        communicator = ApplicationCommunicator(ProxyHeadersMiddleware(app), scope)
        await communicator.wait(timeout=2)

    asyncio.run(run())
    return seen


FORGED = [
    (b"x-forwarded-for", b"198.51.100.1"),
    (b"X-Forwarded-Proto", b"https"),
    (b"host", b"bench.example.cn"),
]


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_middleware_strips_forged_headers(proxy, kind):
    seen = _seen(_scope(kind, "203.0.113.7", FORGED))
    assert seen["client"][0] == "203.0.113.7"
    assert seen["headers"] == [(b"host", b"bench.example.cn")]
    assert seen["scheme"] in ("http", "ws")


@pytest.mark.parametrize(("kind", "scheme"), [("http", "https"), ("websocket", "wss")])
def test_middleware_applies_the_proxy_headers(proxy, kind, scheme):
    seen = _seen(_scope(kind, PROXY, FORGED))
    assert seen["client"][0] == "198.51.100.1"
    assert seen["scheme"] == scheme
    assert (b"x-forwarded-for", b"198.51.100.1") in seen["headers"]


def _lookup_status(peer: str, forwarded_for: str) -> bytes:
    """One look-up through the whole ASGI application, as daphne hands it over."""
    from asgi import application

    scope = http_scope(
        "/lookup/",
        query=b"tracking_number=LP20260101-0001&last_four=1234",
        headers=[(b"accept-language", b"en"), (b"x-forwarded-for", forwarded_for.encode())],
        client=(peer, 40000),
    )

    async def run() -> bytes:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(10)
        assert start["status"] == 200, start
        body = b""
        while True:
            message = await communicator.receive_output(10)
            body += message.get("body", b"")
            if not message.get("more_body"):
                return body

    # async_to_sync: the view runs in this thread, on the test's database connection
    return async_to_sync(run)()


TOO_MANY = b"Too many look-ups"


@pytest.mark.django_db
def test_lookup_flood_with_rotating_forged_header_is_limited(proxy):
    bodies = [_lookup_status("203.0.113.7", f"198.51.100.{i}") for i in range(12)]
    limited = [i for i, body in enumerate(bodies) if TOO_MANY in body]
    assert limited, "rotating X-Forwarded-For lifted the look-up limit"
    assert limited[0] == 10


@pytest.mark.django_db
def test_lookup_limit_counts_each_client_behind_the_proxy(proxy):
    for _ in range(11):
        _lookup_status(PROXY, "198.51.100.1")
    body = _lookup_status(PROXY, "198.51.100.2")
    assert TOO_MANY not in body


def test_the_web_server_refuses_daphnes_proxy_headers():
    from cloudbench.webserver import WebServerCommand

    with pytest.raises(SystemExit, match="TRUSTED_PROXIES"):
        WebServerCommand().run(["--proxy-headers", "asgi:application"])

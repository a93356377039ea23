"""The client's address: the one place that decides it, for HTTP requests and WebSockets alike.

nginx in front sets ``X-Forwarded-For: $remote_addr`` (overwriting whatever the client sent) and
``X-Forwarded-Proto: https``. Those headers are believed only when the connection itself comes
from an address listed in ``TRUSTED_PROXIES``; from anyone else they are removed, so a client that
talks to daphne directly (or through a proxy we do not run) cannot choose the address that every
per-client limit counts (look-ups, sign-in codes, comments, /metrics). daphne runs without
``--proxy-headers``: ``ProxyHeadersMiddleware`` applies this function to every scope before
Django or Channels see it, and ``REMOTE_ADDR`` (Django) and ``scope["client"]`` (Channels) carry
the result.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-port"})


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=16)
def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """``"10.0.0.2"``, ``"172.30.0.0/24"``, ``"::1"`` → networks; a malformed entry is an error at
    start, not a silently open door."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry)


def address_in(address: str, entries: Iterable[str]) -> bool:
    parsed = parse_address(address)
    if parsed is None:
        return False
    return any(parsed in net for net in networks(tuple(entries)))


def client_address(peer: str, forwarded_for: str | None) -> str:
    """The client's address from the connection's peer address and its ``X-Forwarded-For``.

    The header counts only when the peer is a trusted proxy; then its LAST entry is taken (the
    address our proxy saw; ours overwrites the header, and a proxy that appends puts the address
    it saw last). A missing or malformed value leaves the peer's address."""
    if forwarded_for and address_in(peer, settings.TRUSTED_PROXIES):
        candidate = parse_address(forwarded_for.split(",")[-1])
        if candidate is not None:
            return str(candidate)
    return peer


def client_ip(request: Any) -> str:
    """The client's address of a Django request (resolved by ``ProxyHeadersMiddleware``)."""
    return request.META.get("REMOTE_ADDR", "") or "unknown"


class ProxyHeadersMiddleware:
    """ASGI middleware, outermost: resolves the client's address and scheme once per connection
    and removes the forwarded headers that were not sent by a trusted proxy."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        client = scope.get("client") or None
        peer = client[0] if client else ""
        headers = scope.get("headers") or []
        trusted = bool(peer) and address_in(peer, settings.TRUSTED_PROXIES)
        forwarded_for = None
        proto = None
        kept = []
        for name, value in headers:
            lname = name.lower()
            if lname in FORWARDED_HEADERS:
                if not trusted:
                    continue
                if lname == b"x-forwarded-for":
                    forwarded_for = value.decode("latin-1")
                elif lname == b"x-forwarded-proto":
                    proto = value.decode("latin-1").strip().lower()
            kept.append((name, value))
        scope = dict(scope, headers=kept)
        if trusted:
            address = client_address(peer, forwarded_for)
            if address != peer:
                scope["client"] = (address, 0)
            if proto in ("http", "https"):
                scope["scheme"] = (
                    proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
                )
        return await self.app(scope, receive, send)

"""ICE servers: what the browser is given (STUN, TURN with time-limited credentials) and what
the media node uses.

TURN credentials follow coturn's REST API (``use-auth-secret``): the username is
``"<expiry unix time>:<user>"`` and the password base64(HMAC-SHA1(shared secret, username)), so
coturn checks them without a database and they expire on their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from django.conf import settings


def turn_credentials(user_ref: str, *, now: float | None = None) -> tuple[str, str]:
    expiry = int(
        (now if now is not None else time.time()) + settings.TURN_CREDENTIAL_TTL.total_seconds()
    )
    username = f"{expiry}:{user_ref}"
    digest = hmac.new(
        settings.TURN_SHARED_SECRET.encode(), username.encode(), hashlib.sha1
    ).digest()
    return username, base64.b64encode(digest).decode()


def browser_ice_servers(user_ref: str) -> list[dict[str, Any]]:
    """RTCPeerConnection ``iceServers`` for a member's browser (user_ref: not a phone number)."""
    servers: list[dict[str, Any]] = [
        entry if isinstance(entry, dict) else {"urls": entry} for entry in settings.ICE_SERVERS
    ]
    if settings.TURN_SHARED_SECRET and settings.TURN_URLS:
        username, credential = turn_credentials(user_ref)
        servers.append(
            {"urls": list(settings.TURN_URLS), "username": username, "credential": credential}
        )
    return servers


def node_ice_servers() -> list[Any]:
    """aiortc ``RTCIceServer``s for the media node (STUN only: the node has a public address)."""
    from aiortc import RTCIceServer

    servers = []
    for entry in settings.ICE_SERVERS:
        if isinstance(entry, str):
            servers.append(RTCIceServer(urls=entry))
        else:
            servers.append(
                RTCIceServer(
                    **{k: v for k, v in entry.items() if k in ("urls", "username", "credential")}
                )
            )
    return servers

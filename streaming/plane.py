"""What the web processes and the media node share: channel and group names, the messages the
node sends back, and the ICE configuration.

A leaf: it imports Django's settings and the pool's registry (``streaming.pool``, a leaf too), and
nothing of aiortc, PyAV or the rest of ``streaming``, so
the web side (consumers, services, views) can use it without loading the media stack, and the
node (``streaming.node``) can use it without importing the web side.

Web -> node, on the node's channel (``room_node_channel``):

    room.enter / room.offer / room.leave / room.exit / room.media / room.admit / room.mute /
    room.remove / room.caucus / room.record / room.gone  see ``streaming.node.director``
    broadcast.offer / broadcast.leave / broadcast.snapshot   see ``streaming.node.broadcast.messages``

Node -> web, on a member's or viewer's own channel, or on a group named here:

    room.frame          {frame, ...}                 ``room_frame_message``
    room.moved          {node, moved_from, reason}   ``room_moved_message`` (room's group)
    watch.answer_ready  {viewer_id, sdp}
    watch.refused       {reason, message}
    watch.state         {state, viewers}

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

from streaming.pool import acall, place_room
from streaming.pool import layer_prefix as _registry_prefix

# -- where messages go ----------------------------------------------------------------------

MEDIA_NODE_CHANNEL = "media-node"


def layer_prefix() -> str:
    """The channel layer's prefix ("" for the in-memory layer): the channels of one deployment,
    and its pool registry (``streaming.pool``), live under it."""
    return _registry_prefix()


def node_channel(node_id: str = "") -> str:
    """The channel a media node consumes: ``<prefix>.media-node.<node id>``; without an id, the
    channel of no node in particular (a message for a room when no node is alive, tests).

    Under the channel layer's prefix: the Redis pub/sub layer does not prefix a channel that is
    not a group or a socket's own, and pub/sub channels are shared by every database of a Redis
    server, so two deployments (or test runs) on one Redis would otherwise answer each other's
    rooms."""
    prefix = layer_prefix()
    name = f"{prefix}.{MEDIA_NODE_CHANNEL}" if prefix else MEDIA_NODE_CHANNEL
    return f"{name}.{node_id}" if node_id else name


def room_node_channel(public_id: str) -> str:
    """The channel of the node that holds the hearing's room and its livestream: the room is
    placed on a node of the pool (``streaming.pool.place_room``: sticky while that node lives)
    and every web-side message about the hearing's media goes to that node's own channel.

    Blocking (one Redis round trip): async code calls ``aroom_node_channel``. Callers that must
    tell the members when the room moved use ``streaming.pool.place_room`` directly."""
    return node_channel(place_room(public_id).node)


async def aroom_node_channel(public_id: str) -> str:
    return await acall(room_node_channel, public_id)


def media_room_group(public_id: str) -> str:
    """The group of one hearing's video room: every member's room socket."""
    return f"room.{public_id}"


def watch_group(public_id: str) -> str:
    """The group of one hearing's watch pages (its livestream's viewers)."""
    return f"watch.{public_id}"


HLS_MASTER_PLAYLIST = "index.m3u8"


def hls_url(public_id: str, playlist: str = HLS_MASTER_PLAYLIST) -> str:
    """The HLS master playlist (the ladder's renditions; streaming/node/broadcast/hls.py), or
    another ``playlist`` of the hearing's HLS directory."""
    return f"{settings.BROADCAST_HLS_URL}{public_id}/{playlist}"


# -- what the node sends back ---------------------------------------------------------------


def room_frame_message(frame: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A protocol frame for the room socket(s) to send on as it is; ``extra`` tells the socket
    what else to do (``close``, ``joined``, ``record_event``)."""
    return {"type": "room.frame", "frame": frame, **extra}


def room_moved_message(node_id: str, moved_from: str, reason: str) -> dict[str, Any]:
    """To a room's group: the room is on node ``node_id`` now (``reason``: ``failover`` or
    ``drain``); each member's socket enters it there, and its page makes a new offer."""
    return {"type": "room.moved", "node": node_id, "moved_from": moved_from, "reason": reason}


def watch_answer_message(viewer_id: str, sdp: str) -> dict[str, Any]:
    return {"type": "watch.answer_ready", "viewer_id": viewer_id, "sdp": sdp}


def watch_refused_message(reason: str, message: str) -> dict[str, Any]:
    return {"type": "watch.refused", "reason": reason, "message": message}


def watch_layer_message(layer: str, *, video: bool) -> dict[str, Any]:
    """To one viewer's socket: the ladder moved it to ``layer`` (``video``: it has a picture)."""
    return {"type": "watch.layer", "layer": layer, "video": video}


def watch_state_message(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {"type": "watch.state", **snapshot}


# -- ICE ------------------------------------------------------------------------------------


def ice_server_entries() -> list[dict[str, Any]]:
    """``ICE_SERVERS`` as ``{"urls", "username"?, "credential"?}`` dicts (a bare string is a URL)."""
    entries = []
    for entry in settings.ICE_SERVERS:
        if isinstance(entry, str):
            entries.append({"urls": entry})
        else:
            entries.append(
                {k: v for k, v in entry.items() if k in ("urls", "username", "credential")}
            )
    return entries


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


def transport_policy() -> str:
    """``"all"``, or ``"relay"``: media only through TURN (hides the parties' addresses from
    each other and from the node; a node without a public address needs it)."""
    return "relay" if settings.ICE_TRANSPORT_POLICY == "relay" else "all"

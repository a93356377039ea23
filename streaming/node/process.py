"""The node of this process: one room director (with its ``MediaNode``) and one broadcast station
attached to it, made on first use in the media node process, or in the web process when the node
is embedded (``MEDIA_NODE_INPROCESS``)."""

from __future__ import annotations

from pathlib import Path

from channels.layers import get_channel_layer
from django.conf import settings

from streaming.plane import transport_policy

from .broadcast.station import BroadcastStation
from .director import RoomDirector
from .ice import confine_host_addresses, node_ice_servers
from .media.node import MediaNode

_director: RoomDirector | None = None
_station: BroadcastStation | None = None


def get_director() -> RoomDirector:
    global _director
    if _director is None:
        confine_host_addresses()
        node = MediaNode(ice_servers=node_ice_servers(), ice_transport_policy=transport_policy())
        _director = RoomDirector(node, get_channel_layer())
    return _director


def get_media_node() -> MediaNode:
    return get_director().node


def get_station() -> BroadcastStation:
    """The livestreams of this process's node."""
    global _station
    if _station is None:
        _station = BroadcastStation(
            hls_root=Path(settings.BROADCAST_HLS_ROOT),
            viewer_limit=settings.BROADCAST_VIEWER_LIMIT,
            ice_servers=node_ice_servers(),
            pitch_shift=settings.BROADCAST_PITCH_SHIFT,
            ice_transport_policy=transport_policy(),
        )
        _station.attach_node(get_media_node())
    return _station


def current_station() -> BroadcastStation | None:
    """The station if this process has one, without making it."""
    return _station


def forget_node() -> None:
    """Drop a node and station whose event loop is gone (they cannot be shut down from another
    loop)."""
    global _director, _station
    _director = None
    _station = None


async def reset_node() -> None:
    """Stop the station, then the rooms and their media (tests run each scenario in a fresh
    event loop)."""
    global _director, _station
    station, _station = _station, None
    if station is not None:
        await station.shutdown()
    director, _director = _director, None
    if director is not None:
        await director.shutdown()


async def reset_station() -> None:
    """Stop the station alone (its node keeps its rooms)."""
    global _station
    station, _station = _station, None
    if station is not None:
        await station.shutdown()

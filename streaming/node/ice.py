"""The media node's ICE configuration, from the settings ``streaming.plane`` reads."""

from __future__ import annotations

import itertools

from aiortc import RTCIceServer
from django.conf import settings

from streaming.plane import ice_server_entries, transport_policy, turn_credentials

from .internals import aioice_private

_allocations = itertools.count(1)


class NodeTurnServer(RTCIceServer):
    """The TURN server for the node's own peers, with REST credentials made when a peer
    connection reads them (each gathers its own allocation): a node runs longer than a
    credential lives (``TURN_CREDENTIAL_TTL``), and every allocation gets a username of its own,
    so coturn's ``user-quota`` (allocations per username) never counts the node's peers
    together."""

    def __init__(self, url: str) -> None:
        super().__init__(urls=url)

    # aiortc reads ``username`` and then ``credential`` once per peer connection
    # (aiortc.rtcicetransport.connection_kwargs); the dataclass __init__ assigns both (ignored).
    @property  # type: ignore[override]
    def username(self) -> str:
        self._pair = turn_credentials(f"media-node.{next(_allocations)}")
        return self._pair[0]

    @username.setter
    def username(self, value: str | None) -> None:
        pass

    @property  # type: ignore[override]
    def credential(self) -> str:
        if getattr(self, "_pair", None) is None:
            self.username  # noqa: B018 - makes the pair
        return self._pair[1]

    @credential.setter
    def credential(self, value: str | None) -> None:
        pass


def node_ice_servers() -> list[RTCIceServer]:
    """aiortc ``RTCIceServer``s for the node's peers and viewers: STUN only when the node has a
    public address; with the relay policy, the TURN server too (aioice takes one UDP TURN URL)."""
    servers: list[RTCIceServer] = []
    if transport_policy() == "relay" and settings.TURN_SHARED_SECRET:
        udp = [u for u in settings.TURN_URLS if u.startswith("turn:") and "transport=tcp" not in u]
        if udp:
            servers.append(NodeTurnServer(udp[0]))
    return servers + [RTCIceServer(**entry) for entry in ice_server_entries()]


def confine_host_addresses() -> None:
    """Gather, offer and answer ICE only on ``ICE_HOST_ADDRESSES`` (all interfaces when empty;
    peers on those or on ``ICE_PEER_ADDRESSES``), with host candidates on
    ``MEDIA_NODE_UDP_PORTS`` (any port when empty), for every peer connection of this process."""
    aioice_private.confine_host_addresses(
        settings.ICE_HOST_ADDRESSES, remotes=settings.ICE_PEER_ADDRESSES
    )
    aioice_private.use_udp_ports(settings.MEDIA_NODE_UDP_PORTS)

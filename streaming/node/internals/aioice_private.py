"""aioice's private internals, in one place: the nominated pair the node writes RTP to, the
queue a benchmark's viewer reads from, the host addresses ICE gathers, and the UDP ports it binds.

``ICE_HOST_ADDRESSES`` (a setting) keeps every ICE agent of this process to those addresses:
aioice gathers exactly them as host candidates (it never offers 127.0.0.1 by itself), ignores
remote candidates elsewhere (an mDNS name included, so nothing is multicast to resolve it), and
does not answer a check from anywhere else. Tests and benchmarks set it to 127.0.0.1 so that
media never goes to the machine's external interface address.

``MEDIA_NODE_UDP_PORTS`` (``use_udp_ports``) keeps the host candidates' sockets to a port range
(the one the node's firewall opens): aioice binds each host candidate with
``loop.create_datagram_endpoint(..., local_addr=(address, 0))`` in
``Connection.get_component_candidates``; the loop ``aioice.ice`` sees binds a free port of the range
instead of port 0.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import random
import types
from collections.abc import Iterable
from typing import Any

import aioice.ice
from aioice.ice import Connection

from cloudbench.internals import assigned_in, lacking, require

WRITTEN_FOR = ">=0.13,<0.14"

require(
    "aioice",
    WRITTEN_FOR,
    lacking(aioice.ice, "get_host_addresses")
    + lacking(aioice.ice, "asyncio")
    + lacking(
        Connection,
        "add_remote_candidate",
        "request_received",
        "gather_candidates",
        "get_component_candidates",
    )
    + [f"Connection.{name}" for name in assigned_in(Connection.__init__, "_nominated", "_queue")]
    + [
        f"Connection.get_component_candidates: {name}"
        for name in assigned_in(
            Connection.get_component_candidates, "get_running_loop", "create_datagram_endpoint"
        )
    ],
)


def nominated_pair(connection: Connection, component: int = 1) -> Any:
    """The candidate pair ICE nominated for ``component``, or None."""
    return connection._nominated.get(component)


def data_queue(connection: Connection) -> Any:
    """The queue of (datagram, component) that ``connection.recv`` reads."""
    return connection._queue


# -- host addresses ---------------------------------------------------------------------------

_original_get_host_addresses = aioice.ice.get_host_addresses
_original_add_remote_candidate = Connection.add_remote_candidate
_original_request_received = Connection.request_received
_allowed: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
# remote addresses accepted besides the host's own (a peer in another network namespace)
_remotes: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()


def _permitted(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # an mDNS name, or anything else that is not an address
    return address in _allowed or address in _remotes


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [
        str(address)
        for address in _allowed
        if (address.version == 4 and use_ipv4) or (address.version == 6 and use_ipv6)
    ]


async def _add_remote_candidate(self: Connection, remote_candidate: Any) -> None:
    if remote_candidate is not None and not _permitted(remote_candidate.host):
        return
    await _original_add_remote_candidate(self, remote_candidate)


def _request_received(self: Connection, message: Any, addr: Any, protocol: Any) -> None:
    if not _permitted(addr[0]):
        return
    _original_request_received(self, message, addr, protocol)


def confine_host_addresses(addresses: Iterable[str], *, remotes: Iterable[str] = ()) -> None:
    """Keep ICE in this process to ``addresses`` (empty: aioice's own choice, every interface).
    ``remotes``: other addresses a peer's candidates and checks may come from (a test's peer in
    a network namespace of its own), without gathering on them here."""
    global _allowed, _remotes
    _allowed = tuple(ipaddress.ip_address(a) for a in addresses)
    _remotes = tuple(ipaddress.ip_address(a) for a in remotes)
    if _allowed:
        aioice.ice.get_host_addresses = _get_host_addresses
        Connection.add_remote_candidate = _add_remote_candidate  # type: ignore[method-assign]
        Connection.request_received = _request_received  # type: ignore[method-assign]
    else:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        Connection.add_remote_candidate = _original_add_remote_candidate  # type: ignore[method-assign]
        Connection.request_received = _original_request_received  # type: ignore[method-assign]


def confined_to() -> list[str]:
    return [str(address) for address in _allowed]


# -- UDP ports --------------------------------------------------------------------------------

_ports: tuple[int, int] | None = None


def parse_port_range(spec: str) -> tuple[int, int] | None:
    """``"40000-40999"`` -> ``(40000, 40999)``; empty -> None (any port)."""
    spec = spec.strip()
    if not spec:
        return None
    first, _, last = spec.partition("-")
    low, high = int(first), int(last or first)
    if not 0 < low <= high <= 65535:
        raise ValueError(f"not a UDP port range: {spec!r}")
    return low, high


async def bind_in_range(
    loop: asyncio.AbstractEventLoop, factory: Any, host: str, ports: tuple[int, int], **kwargs: Any
) -> Any:
    """A datagram endpoint on ``host`` at a free port of ``ports`` (tried from a random one on)."""
    low, high = ports
    count = high - low + 1
    start = random.randrange(count)  # noqa: S311 - spreads binds, not a secret
    for i in range(count):
        port = low + (start + i) % count
        try:
            return await loop.create_datagram_endpoint(factory, local_addr=(host, port), **kwargs)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free UDP port in {low}-{high} on {host}")


class _RangedLoop:
    """The running loop as ``aioice.ice`` sees it: a bind to port 0 takes a port of the range."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, protocol_factory: Any, local_addr: Any = None, **kwargs: Any
    ) -> Any:
        ports = _ports
        if ports is None or local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(
                protocol_factory, local_addr=local_addr, **kwargs
            )
        return await bind_in_range(self._loop, protocol_factory, local_addr[0], ports, **kwargs)


class _AsyncioForIce(types.ModuleType):
    """``asyncio`` as ``aioice.ice`` sees it: the same, but for the loop it gets."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def get_running_loop() -> Any:
        return _RangedLoop(asyncio.get_running_loop())


_asyncio_for_ice = _AsyncioForIce("asyncio")


def use_udp_ports(spec: str) -> None:
    """Bind every ICE host candidate of this process in the range ``spec`` ("40000-40999";
    empty: any port)."""
    global _ports
    _ports = parse_port_range(spec)
    aioice.ice.asyncio = _asyncio_for_ice if _ports else asyncio  # type: ignore[attr-defined]


def udp_ports() -> tuple[int, int] | None:
    return _ports

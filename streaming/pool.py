"""The pool of media nodes: which nodes are alive, and which node holds which hearing's room.

A leaf, like ``streaming.plane``: Django's settings and Redis, nothing of aiortc, PyAV or the rest
of ``streaming``, so web processes and nodes both use it.

Each node registers itself with a *lease*: a record (id, channel, declared capacity, measured CPU,
draining flag, public address and UDP ports) that expires ``MEDIA_NODE_LEASE_SECONDS`` after the
node last renewed it. A room is *placed* on the least loaded live node that is not draining
(nodes whose CPU is over their limit, or that hold as many rooms as they declared, count as full;
then fewest rooms for the capacity; then lowest CPU) and stays there as long as that node's lease
lives: placement is sticky. When the lease lapses (the node died), the next ``place_room`` for one
of its rooms places it again, and says where it was (``Placement.moved_from``), so the caller can
tell the room's members to offer again to the new node.

With Redis (a Redis channel layer) the registry lives in Redis under the channel layer's prefix;
placement runs as one Lua script, so two web processes placing one room at once agree. The
embedded setup (in-memory channel layer, no Redis) keeps the same registry in this process.

A crashed node (``kill -9``, an exception that ends the process) is found faster than its lease
lapses: each node keeps one Redis connection of its own open for its life, named after it
(``CLIENT SETNAME <p>:node:<id>``, the name its record declares as ``presence``). The kernel
closes a dead process's sockets at once, so Redis forgets the name; the other nodes look at
``CLIENT LIST`` every ``MEDIA_NODE_PRESENCE_POLL_SECONDS`` and a node whose name is missing two
looks in a row is expired (``expire_node``: its record goes, as if its lease had lapsed). A machine
that loses power or its network keeps its connection open in Redis until TCP gives up: then the
lease decides, as before.

Keys (``<p>`` is ``<channel prefix>:pool``):

    <p>:nodes            set of node ids that registered (live or not yet swept)
    <p>:node:<id>        the node's record, JSON, expiring with its lease
    <p>:drain:<id>       present while the node drains (set by ``medianode --drain`` or the node)
    <p>:rooms:<id>       set of the hearings placed on the node
    <p>:room:<public id> the id of the node the hearing's room is placed on
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings

DRAIN_TTL_SECONDS = 24 * 3600

# Registry calls from async code run here, not in the event loop's default executor: aiortc
# encodes and decodes there, and a lease renewal queued behind a second of video would lapse.
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pool")


async def acall(function: Any, *args: Any) -> Any:
    """``function(*args)`` (a registry call, blocking on Redis) from async code."""
    return await asyncio.get_running_loop().run_in_executor(_executor, function, *args)


_local_node_id: str | None = None


def local_node_id() -> str:
    """This process's node id: ``MEDIA_NODE_ID``, or ``<host>-<pid>``."""
    global _local_node_id
    if _local_node_id is None:
        _local_node_id = settings.MEDIA_NODE_ID or f"{socket.gethostname()}-{os.getpid()}"
    return _local_node_id


def set_local_node_id(node_id: str) -> None:
    global _local_node_id
    _local_node_id = node_id


@dataclass(frozen=True)
class Placement:
    """Where a room is: ``node`` (empty when no node is alive) and, when this call placed it
    because the node it was on is gone or draining, ``moved_from``."""

    node: str
    moved_from: str = ""

    @property
    def moved(self) -> bool:
        return bool(self.moved_from) and self.moved_from != self.node


def lease_seconds() -> float:
    return float(settings.MEDIA_NODE_LEASE_SECONDS)


def node_record(
    node_id: str,
    *,
    channel: str,
    capacity: int,
    cpu: float = 0.0,
    cpu_limit: float = 0.0,
    rooms_held: int = 0,
    address: str = "",
    udp_ports: str = "",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": node_id,
        "channel": channel,
        "capacity": max(1, int(capacity)),
        "cpu": float(cpu),
        # over this CPU (percent of one core, as psutil counts) the node takes no new room
        "cpu_limit": float(cpu_limit) if cpu_limit else 85.0 * (os.cpu_count() or 1),
        "rooms_held": int(rooms_held),
        "address": address,
        "udp_ports": udp_ports,
        "at": time.time(),
        **extra,
    }


# -- the Redis registry ---------------------------------------------------------------------

# ARGV: prefix, public id, mode ("place" or "move"), the node to move from
_PLACE = """
local p, room, mode, from = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local roomkey = p .. ':room:' .. room
local cur = redis.call('GET', roomkey)
if mode == 'place' then
  if cur and redis.call('EXISTS', p .. ':node:' .. cur) == 1 then
    return {cur, ''}
  end
else
  if cur ~= from then
    return {cur or '', ''}
  end
end
local best, bfull, bload, bcpu = nil, 0, 0, 0
for _, id in ipairs(redis.call('SMEMBERS', p .. ':nodes')) do
  if id ~= from or mode == 'place' then
    local raw = redis.call('GET', p .. ':node:' .. id)
    if raw and redis.call('EXISTS', p .. ':drain:' .. id) == 0 then
      local n = cjson.decode(raw)
      local cap = tonumber(n.capacity) or 1
      if cap < 1 then cap = 1 end
      local rooms = redis.call('SCARD', p .. ':rooms:' .. id)
      local cpu = tonumber(n.cpu) or 0
      local limit = tonumber(n.cpu_limit) or 0
      local full = 0
      if rooms >= cap or (limit > 0 and cpu >= limit) then full = 1 end
      local load = rooms / cap
      local better = false
      if best == nil then better = true
      elseif full ~= bfull then better = full < bfull
      elseif load ~= bload then better = load < bload
      elseif cpu ~= bcpu then better = cpu < bcpu
      else better = id < best end
      if better then best, bfull, bload, bcpu = id, full, load, cpu end
    end
  end
end
if best == nil then
  return {'', cur or ''}
end
redis.call('SET', roomkey, best)
if cur then redis.call('SREM', p .. ':rooms:' .. cur, room) end
redis.call('SADD', p .. ':rooms:' .. best, room)
return {best, cur or ''}
"""

# ARGV: prefix, public id, node: forget the placement if the room is still on that node
_RELEASE = """
local p, room, node = ARGV[1], ARGV[2], ARGV[3]
redis.call('SREM', p .. ':rooms:' .. node, room)
if redis.call('GET', p .. ':room:' .. room) == node then
  redis.call('DEL', p .. ':room:' .. room)
  return 1
end
return 0
"""

# ARGV: prefix, public id, node: take the room unless a live node holds it
_CLAIM = """
local p, room, node = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('GET', p .. ':room:' .. room)
if cur and cur ~= node and redis.call('EXISTS', p .. ':node:' .. cur) == 1 then
  return cur
end
redis.call('SET', p .. ':room:' .. room, node)
if cur and cur ~= node then redis.call('SREM', p .. ':rooms:' .. cur, room) end
redis.call('SADD', p .. ':rooms:' .. node, room)
return node
"""


class _Presence:
    """A node's named connection, and how many times it was opened."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.connects = 0

    def connected(self, connection: Any) -> None:
        self.connects += 1


class RedisRegistry:
    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.prefix = f"{prefix}:pool" if prefix else "pool"
        self.url = url
        self.client = redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        # node id -> that node's named connection (``open_presence``), in the node's process
        self._presence: dict[str, _Presence] = {}
        self._presence_lock = threading.Lock()
        self._place = self.client.register_script(_PLACE)
        self._release = self.client.register_script(_RELEASE)
        self._claim = self.client.register_script(_CLAIM)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def register(self, record: dict[str, Any]) -> bool:
        """Write or renew a node's lease; whether the lease was still live (False: the node is
        new, or returns after its lease lapsed)."""
        node_id = record["id"]
        ttl_ms = int(lease_seconds() * 1000)
        pipe = self.client.pipeline(transaction=True)
        pipe.exists(self._key("node", node_id))
        pipe.set(self._key("node", node_id), json.dumps(record), px=ttl_ms)
        pipe.sadd(self._key("nodes"), node_id)
        was_live, _, _ = pipe.execute()
        return bool(was_live)

    def presence_name(self, node_id: str) -> str:
        # a client name has no spaces (CLIENT SETNAME refuses them)
        return "_".join(self._key("node", node_id).split())

    def open_presence(self, node_id: str) -> str:
        """Open the node's named connection (once; redis-py reopens it, named, when Redis dropped
        it); its name."""
        import redis

        name = self.presence_name(node_id)
        with self._presence_lock:
            presence = self._presence.get(node_id)
            if presence is None:
                client = redis.Redis(
                    connection_pool=redis.ConnectionPool.from_url(
                        self.url, client_name=name, socket_timeout=2, socket_connect_timeout=2
                    ),
                    single_connection_client=True,
                )
                presence = self._presence[node_id] = _Presence(client)
                client.connection.register_connect_callback(presence.connected)
            presence.client.ping()
        return name

    def keep_present(self, node_id: str) -> int:
        """Ping the node's named connection (reopened, named, when it was lost): how many times
        it was opened so far (a change: Redis dropped it), or -1 when Redis did not answer."""
        presence = self._presence.get(node_id)
        if presence is None:
            self.open_presence(node_id)
            presence = self._presence[node_id]
        try:
            presence.client.ping()
        except Exception:  # noqa: BLE001 - dropped: this second ping reconnects, named
            try:
                presence.client.ping()
            except Exception:  # noqa: BLE001 - Redis away: the next ping tries again
                return -1
        return presence.connects

    def close_presence(self, node_id: str) -> None:
        with self._presence_lock:
            presence = self._presence.pop(node_id, None)
        if presence is not None:
            with contextlib.suppress(Exception):
                presence.client.close()
                presence.client.connection_pool.disconnect()

    def present_names(self) -> set[str]:
        """The names of the clients connected to Redis now."""
        return {c.get("name", "") for c in self.client.client_list()} - {""}

    def vanished_nodes(self, *, besides: str = "") -> list[str]:
        """Live nodes (their record is there) that declare a named connection Redis does not
        have now: crashed, or cut off from Redis this moment."""
        present = self.present_names()
        return [
            node["id"]
            for node in self.nodes()
            if node["live"]
            and node["id"] != besides
            and node.get("presence")
            and node["presence"] not in present
        ]

    def expire_node(self, node_id: str) -> bool:
        """End a node's lease now (its named connection is gone); whether it was live."""
        return bool(self.client.delete(self._key("node", node_id)))

    def unregister(self, node_id: str) -> None:
        for room in self.node_rooms(node_id):
            self.release_room(room, node_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._key("node", node_id), self._key("rooms", node_id))
        pipe.delete(self._key("drain", node_id))
        pipe.srem(self._key("nodes"), node_id)
        pipe.execute()

    def set_draining(self, node_id: str, draining: bool = True) -> None:
        if draining:
            self.client.set(self._key("drain", node_id), "1", ex=DRAIN_TTL_SECONDS)
        else:
            self.client.delete(self._key("drain", node_id))

    def is_draining(self, node_id: str) -> bool:
        return bool(self.client.exists(self._key("drain", node_id)))

    def nodes(self) -> list[dict[str, Any]]:
        """Every registered node: live ones with their record, lapsed ones as ``{id, live:
        False}``; each with ``rooms`` (placed on it) and ``draining``."""
        ids = sorted(i.decode() for i in self.client.smembers(self._key("nodes")))
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for node_id in ids:
            pipe.get(self._key("node", node_id))
            pipe.scard(self._key("rooms", node_id))
            pipe.exists(self._key("drain", node_id))
        values = pipe.execute()
        out = []
        for i, node_id in enumerate(ids):
            raw, rooms, drain = values[3 * i : 3 * i + 3]
            record = json.loads(raw) if raw else {"id": node_id}
            out.append({**record, "live": bool(raw), "rooms": int(rooms), "draining": bool(drain)})
        return out

    def place_room(self, public_id: str) -> Placement:
        node, previous = self._place(args=[self.prefix, public_id, "place", ""])
        return Placement(node.decode(), previous.decode())

    def move_room(self, public_id: str, from_node: str) -> Placement:
        node, previous = self._place(args=[self.prefix, public_id, "move", from_node])
        if not node:
            return Placement(from_node)
        return Placement(node.decode(), previous.decode())

    def room_node(self, public_id: str) -> str:
        node = self.client.get(self._key("room", public_id))
        return node.decode() if node else ""

    def node_rooms(self, node_id: str) -> set[str]:
        return {r.decode() for r in self.client.smembers(self._key("rooms", node_id))}

    def release_room(self, public_id: str, node_id: str) -> bool:
        return bool(self._release(args=[self.prefix, public_id, node_id]))

    def claim_room(self, public_id: str, node_id: str) -> str:
        return self._claim(args=[self.prefix, public_id, node_id]).decode()

    def forget_node(self, node_id: str) -> None:
        """Drop a lapsed node that holds no room any more."""
        if not self.client.exists(self._key("node", node_id)) and not self.client.scard(
            self._key("rooms", node_id)
        ):
            self.client.srem(self._key("nodes"), node_id)
            self.client.delete(self._key("drain", node_id))


# -- the in-process registry (embedded node, in-memory channel layer) ----------------------


class MemoryRegistry:
    """The same registry in this process's memory, for the embedded single node."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[float, dict[str, Any]]] = {}
        self._draining: set[str] = set()
        self._rooms: dict[str, set[str]] = {}
        self._room: dict[str, str] = {}

    def _live(self, node_id: str) -> bool:
        entry = self._records.get(node_id)
        return entry is not None and entry[0] > time.monotonic()

    def register(self, record: dict[str, Any]) -> bool:
        with self._lock:
            was_live = self._live(record["id"])
            self._records[record["id"]] = (time.monotonic() + lease_seconds(), record)
            self._rooms.setdefault(record["id"], set())
            return was_live

    # one process: a node in it is present as long as the process is
    def open_presence(self, node_id: str) -> str:
        return ""

    def keep_present(self, node_id: str) -> int:
        return 1

    def close_presence(self, node_id: str) -> None:
        pass

    def vanished_nodes(self, *, besides: str = "") -> list[str]:
        return []

    def expire_node(self, node_id: str) -> bool:
        with self._lock:
            return self._records.pop(node_id, None) is not None

    def unregister(self, node_id: str) -> None:
        with self._lock:
            for room in self._rooms.pop(node_id, set()):
                if self._room.get(room) == node_id:
                    del self._room[room]
            self._records.pop(node_id, None)
            self._draining.discard(node_id)

    def set_draining(self, node_id: str, draining: bool = True) -> None:
        with self._lock:
            (self._draining.add if draining else self._draining.discard)(node_id)

    def is_draining(self, node_id: str) -> bool:
        return node_id in self._draining

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for node_id in sorted(set(self._records) | set(self._rooms)):
                live = self._live(node_id)
                record = self._records[node_id][1] if live else {"id": node_id}
                out.append(
                    {
                        **record,
                        "live": live,
                        "rooms": len(self._rooms.get(node_id, ())),
                        "draining": node_id in self._draining,
                    }
                )
            return out

    def _choose(self, exclude: str) -> str:
        best: tuple | None = None
        for node_id, (_, record) in self._records.items():
            if node_id == exclude or not self._live(node_id) or node_id in self._draining:
                continue
            capacity = max(1, int(record.get("capacity", 1)))
            rooms = len(self._rooms.get(node_id, ()))
            cpu = float(record.get("cpu", 0))
            limit = float(record.get("cpu_limit", 0))
            full = rooms >= capacity or (limit > 0 and cpu >= limit)
            key = (full, rooms / capacity, cpu, node_id)
            if best is None or key < best:
                best = key
        return best[3] if best else ""

    def _assign(self, public_id: str, node_id: str) -> None:
        current = self._room.get(public_id)
        if current:
            self._rooms.get(current, set()).discard(public_id)
        self._room[public_id] = node_id
        self._rooms.setdefault(node_id, set()).add(public_id)

    def place_room(self, public_id: str) -> Placement:
        with self._lock:
            current = self._room.get(public_id, "")
            if current and self._live(current):
                return Placement(current)
            node_id = self._choose(exclude="")
            if node_id:
                self._assign(public_id, node_id)
            return Placement(node_id, current)

    def move_room(self, public_id: str, from_node: str) -> Placement:
        with self._lock:
            current = self._room.get(public_id, "")
            if current != from_node:
                return Placement(current)
            node_id = self._choose(exclude=from_node)
            if not node_id:
                return Placement(from_node)
            self._assign(public_id, node_id)
            return Placement(node_id, from_node)

    def room_node(self, public_id: str) -> str:
        return self._room.get(public_id, "")

    def node_rooms(self, node_id: str) -> set[str]:
        with self._lock:
            return set(self._rooms.get(node_id, ()))

    def release_room(self, public_id: str, node_id: str) -> bool:
        with self._lock:
            self._rooms.get(node_id, set()).discard(public_id)
            if self._room.get(public_id) == node_id:
                del self._room[public_id]
                return True
            return False

    def claim_room(self, public_id: str, node_id: str) -> str:
        with self._lock:
            current = self._room.get(public_id, "")
            if current and current != node_id and self._live(current):
                return current
            self._assign(public_id, node_id)
            return node_id

    def forget_node(self, node_id: str) -> None:
        with self._lock:
            if not self._live(node_id) and not self._rooms.get(node_id):
                self._records.pop(node_id, None)
                self._rooms.pop(node_id, None)
                self._draining.discard(node_id)


_memory = MemoryRegistry()
_redis: dict[tuple[str, str], RedisRegistry] = {}


def layer_prefix() -> str:
    """The channel layer's prefix (as ``streaming.plane.layer_prefix``, which imports this)."""
    config = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {})
    return config.get("prefix", "") if isinstance(config, dict) else ""


def registry() -> RedisRegistry | MemoryRegistry:
    """The registry of this deployment: Redis with a Redis channel layer, else this process's."""
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if "redis" not in layer.get("BACKEND", "").lower() or not settings.REDIS_URL:
        return _memory
    key = (settings.REDIS_URL, layer_prefix())
    if key not in _redis:
        _redis[key] = RedisRegistry(*key)
    return _redis[key]


# -- the API --------------------------------------------------------------------------------


def register(record: dict[str, Any]) -> bool:
    return registry().register(record)


def unregister(node_id: str) -> None:
    registry().unregister(node_id)


def open_presence(node_id: str) -> str:
    """Open this node's named connection to Redis (kept for the process's life); the name its
    record declares as ``presence`` (empty: no Redis, nothing to watch)."""
    return registry().open_presence(node_id)


def keep_present(node_id: str) -> int:
    """Keep the named connection open (reopened when Redis dropped it): how many times it was
    opened so far (a change: it was lost, and the node's record may be gone), or -1 when Redis
    did not answer."""
    return registry().keep_present(node_id)


def close_presence(node_id: str) -> None:
    registry().close_presence(node_id)


def vanished_nodes(*, besides: str = "") -> list[str]:
    """Live nodes whose named connection Redis does not have now."""
    return registry().vanished_nodes(besides=besides)


def expire_node(node_id: str) -> bool:
    """End the node's lease now: its rooms are orphaned, the next ``sweep`` places them again."""
    return registry().expire_node(node_id)


def set_draining(node_id: str, draining: bool = True) -> None:
    registry().set_draining(node_id, draining)


def is_draining(node_id: str) -> bool:
    return registry().is_draining(node_id)


def all_nodes() -> list[dict[str, Any]]:
    return registry().nodes()


def live_nodes() -> list[dict[str, Any]]:
    """The nodes whose lease lives (draining ones included, with ``draining`` true)."""
    return [n for n in registry().nodes() if n["live"]]


def place_room(public_id: str) -> Placement:
    """The node of the hearing's room: where it is while that node's lease lives, else the least
    loaded live node that is not draining (``Placement.moved_from``: where it was)."""
    return registry().place_room(public_id)


def move_room(public_id: str, from_node: str) -> Placement:
    """Place the room again on another node than ``from_node`` (a drain); nothing happens if it
    is not on ``from_node`` any more, or no other node can take it."""
    return registry().move_room(public_id, from_node)


def room_node(public_id: str) -> str:
    """The id of the node the room is placed on, or ``""`` (not placed)."""
    return registry().room_node(public_id)


def node_rooms(node_id: str) -> set[str]:
    return registry().node_rooms(node_id)


def release_room(public_id: str, node_id: str) -> bool:
    """The node holds the room no more (its last member left)."""
    return registry().release_room(public_id, node_id)


def claim_room(public_id: str, node_id: str) -> str:
    """A node that holds a room records it as its own unless another live node has it (a node
    back after Redis lost its keys); the node the room is on."""
    return registry().claim_room(public_id, node_id)


def orphaned_rooms(*, besides: str = "") -> list[tuple[str, str]]:
    """``(public id, node)`` for every room placed on a node whose lease lapsed (but ``besides``:
    a node that sweeps never takes its own rooms for a dead node's)."""
    reg = registry()
    out = []
    for node in reg.nodes():
        if not node["live"] and node["id"] != besides:
            rooms = reg.node_rooms(node["id"])
            out.extend((room, node["id"]) for room in sorted(rooms))
            if not rooms:
                reg.forget_node(node["id"])
    return out


def sweep(*, besides: str = "") -> list[tuple[str, Placement]]:
    """Place again every room of a node whose lease lapsed; the rooms this call moved (another
    process sweeping at once moves each room once: placement is atomic)."""
    moved = []
    for public_id, _node in orphaned_rooms(besides=besides):
        placement = place_room(public_id)
        if placement.moved:
            moved.append((public_id, placement))
    return moved

"""Placement of rooms on the pool's nodes (streaming.pool), on real Redis and in memory."""

import threading
import time

import pytest

from streaming import plane, pool
from tests.streaming.conftest import redis_pool_registry


@pytest.fixture(params=["redis", "memory"])
def registry(request, settings):
    settings.MEDIA_NODE_LEASE_SECONDS = 1.0
    if request.param == "redis":
        with redis_pool_registry(settings, "pool") as reg:
            yield reg
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        pool._memory = pool.MemoryRegistry()
        assert isinstance(pool.registry(), pool.MemoryRegistry)
        yield pool.registry()


def _node(node_id, capacity=4, cpu=0.0, cpu_limit=1000.0):
    return pool.node_record(
        node_id,
        channel=plane.node_channel(node_id),
        capacity=capacity,
        cpu=cpu,
        cpu_limit=cpu_limit,
    )


def test_rooms_spread_evenly_and_stay_where_they_are(registry):
    for node_id in ("a", "b", "c"):
        pool.register(_node(node_id))
    placed = [pool.place_room(f"room{i}").node for i in range(9)]
    assert sorted(placed.count(n) for n in ("a", "b", "c")) == [3, 3, 3]
    # sticky: asking again changes nothing, and routes to the node's own channel
    assert [pool.place_room(f"room{i}").node for i in range(9)] == placed
    assert plane.room_node_channel("room0") == plane.node_channel(placed[0])
    assert pool.room_node("room0") == placed[0]
    assert {n["id"]: n["rooms"] for n in pool.live_nodes()} == {"a": 3, "b": 3, "c": 3}


def test_capacity_and_cpu_decide_where_a_new_room_goes(registry):
    pool.register(_node("big", capacity=10))
    pool.register(_node("small", capacity=2))
    placed = [pool.place_room(f"r{i}").node for i in range(6)]
    # fewest rooms for the capacity: the small node takes one in every six here
    assert placed.count("small") == 1
    # a node over its CPU limit counts as full
    pool.register(_node("idle", capacity=10, cpu=95.0, cpu_limit=90.0))
    assert pool.place_room("hot").node != "idle"
    # with equal load, the lower CPU wins
    pool.register(_node("quiet", capacity=10, cpu=5.0))
    pool.register(_node("busy", capacity=10, cpu=50.0))
    assert pool.place_room("next").node == "quiet"


def test_a_draining_node_takes_no_room_and_moves_its_own(registry):
    pool.register(_node("a"))
    pool.register(_node("b"))
    rooms = [f"r{i}" for i in range(4)]
    for room in rooms:
        pool.place_room(room)
    pool.set_draining("a")
    assert pool.is_draining("a")
    assert all(pool.place_room(f"new{i}").node == "b" for i in range(3))
    for room in sorted(pool.node_rooms("a")):
        placement = pool.move_room(room, "a")
        assert placement.node == "b" and placement.moved_from == "a"
    assert pool.node_rooms("a") == set()
    # a room that is not on the node any more is left where it is
    assert pool.move_room("r0", "a") == pool.Placement("b")


def test_the_rooms_of_a_node_whose_lease_lapsed_are_placed_again(registry):
    pool.register(_node("dies"))
    pool.register(_node("lives"))
    rooms = [f"r{i}" for i in range(4)]
    on_dead = {room for room in rooms if pool.place_room(room).node == "dies"}
    assert on_dead
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(n["id"] == "dies" for n in pool.live_nodes()):
        pool.register(_node("lives"))
        time.sleep(0.2)
    assert [n["id"] for n in pool.live_nodes()] == ["lives"]
    assert {room for room, _ in pool.orphaned_rooms()} == on_dead
    moved = pool.sweep()
    assert {room for room, _ in moved} == on_dead
    assert all(p.node == "lives" and p.moved_from == "dies" for _, p in moved)
    # a second sweep finds nothing left, and forgets the dead node
    assert pool.sweep() == []
    pool.orphaned_rooms()
    assert [n["id"] for n in pool.all_nodes()] == ["lives"]
    # the node comes back: it registers as new, and takes rooms again
    assert pool.register(_node("dies")) is False
    assert pool.register(_node("dies")) is True
    assert pool.place_room("fresh").node == "dies"


def test_no_node_alive_routes_to_the_channel_of_no_node(registry):
    assert pool.place_room("r").node == ""
    assert plane.room_node_channel("r") == plane.node_channel()


def test_a_released_room_is_placed_afresh_and_a_claim_respects_a_live_holder(registry):
    pool.register(_node("a"))
    pool.register(_node("b"))
    first = pool.place_room("r").node
    assert pool.release_room("r", first)
    assert pool.room_node("r") == ""
    other = "b" if first == "a" else "a"
    assert pool.claim_room("r", other) == other
    assert pool.claim_room("r", first) == other


def test_web_processes_placing_one_room_at_once_agree(registry):
    for node_id in ("a", "b", "c"):
        pool.register(_node(node_id))
    results: list[str] = []
    start = threading.Barrier(8)

    def place():
        start.wait()
        results.append(pool.place_room("contested").node)

    threads = [threading.Thread(target=place) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert sum(n["rooms"] for n in pool.live_nodes()) == 1


@pytest.fixture
def redis_registry(settings):
    settings.MEDIA_NODE_LEASE_SECONDS = 30.0
    with redis_pool_registry(settings, "presence") as reg:
        yield reg


def test_a_node_whose_named_connection_is_gone_is_found_long_before_its_lease_lapses(
    redis_registry,
):
    # the node's own process holds its named connection (a registry of its own here)
    node = pool.RedisRegistry(redis_registry.url, pool.layer_prefix())
    name = node.open_presence("a")
    try:
        pool.register({**_node("a"), "presence": name})
        pool.register(_node("old"))  # a node without a named connection: the lease decides
        pool.register(_node("b"))
        rooms = [f"r{i}" for i in range(4)]
        on_a = {room for room in rooms if pool.place_room(room).node == "a"}
        assert on_a
        assert pool.vanished_nodes() == []

        # Redis drops the connection (a restart, a network blip): the next ping brings it back
        client = next(c for c in redis_registry.client.client_list() if c["name"] == name)
        redis_registry.client.execute_command("CLIENT", "KILL", "ID", client["id"])
        assert pool.vanished_nodes() == ["a"]
        assert node.keep_present("a")
        assert pool.vanished_nodes() == []

        # the process is gone: its connection closes, the node is found, its lease ended now
        node.close_presence("a")
        assert pool.vanished_nodes() == ["a"]
        assert pool.vanished_nodes(besides="a") == []
        assert pool.expire_node("a")
        assert "a" not in {n["id"] for n in pool.live_nodes()}
        moved = pool.sweep()
        assert {room for room, _ in moved} == on_a
        assert all(p.moved_from == "a" and p.node != "a" for _, p in moved)
    finally:
        node.close_presence("a")

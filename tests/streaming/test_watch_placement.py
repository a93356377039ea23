"""Where a viewer is served: the live node with the most viewer room, on real Redis."""

import pytest

from streaming import plane, pool
from streaming.broadcast import services
from streaming.broadcast.services import watch_placement
from tests.streaming.conftest import redis_pool_registry


@pytest.fixture
def registry(settings):
    settings.MEDIA_NODE_LEASE_SECONDS = 2.0
    settings.MEDIA_NODE_VIEWER_CAPACITY = 100
    with redis_pool_registry(settings, "watch") as reg:
        yield reg


def node(node_id, *, viewers=0, viewer_capacity=100, capacity=4):
    return pool.node_record(
        node_id,
        channel=plane.node_channel(node_id),
        capacity=capacity,
        cpu_limit=1000.0,
        viewer_capacity=viewer_capacity,
        webrtc_viewers=viewers,
    )


def test_a_viewer_goes_to_the_node_with_the_most_viewer_room_and_the_stream_comes_from_home(
    registry,
):
    pool.register(node("home", capacity=1))
    assert pool.place_room("hearing-1").node == "home"
    pool.register(node("home", viewers=80, capacity=1))
    pool.register(node("big", viewers=150, viewer_capacity=400))
    pool.register(node("small", viewers=10, viewer_capacity=50))

    placement = watch_placement("hearing-1")

    # room left: home 20, big 250, small 40
    assert placement.node == "big"
    assert placement.channel == plane.node_channel("big")
    assert placement.home == plane.node_channel("home")


def test_a_crowd_arriving_at_once_is_spread_before_the_nodes_report_their_viewers(registry):
    for node_id in ("a", "b", "c"):
        pool.register(node(node_id, viewer_capacity=10))
    pool.place_room("hearing-2")

    chosen = [watch_placement("hearing-2").node for _ in range(12)]

    assert sorted(chosen.count(n) for n in ("a", "b", "c")) == [4, 4, 4]


def test_on_a_tie_the_rooms_own_node_serves_without_a_relay(registry):
    for node_id in ("a", "b", "c"):
        pool.register(node(node_id))
    home = pool.place_room("hearing-3").node

    placement = watch_placement("hearing-3")

    assert placement.node == home
    assert placement.channel == placement.home


def test_draining_and_dead_nodes_serve_no_new_viewer(registry):
    pool.register(node("home"))
    pool.place_room("hearing-4")
    pool.register(node("home", viewers=90))
    pool.register(node("draining"))
    pool.set_draining("draining")
    pool.register(node("dying"))
    pool.register(node("spare", viewers=50))
    # the dying node's lease lapses (it stopped renewing)
    registry.client.delete(f"{registry.prefix}:node:dying")

    assert watch_placement("hearing-4").node == "spare"


def test_with_no_live_node_the_offer_goes_where_the_rooms_messages_go(registry):
    placement = watch_placement("hearing-5")

    assert placement.node == ""
    assert placement.channel == placement.home == plane.node_channel()


def test_a_full_pool_still_places_the_viewer_on_the_least_full_node(registry):
    pool.register(node("a", viewers=12, viewer_capacity=10))
    pool.register(node("b", viewers=11, viewer_capacity=10))
    pool.place_room("hearing-6")

    assert watch_placement("hearing-6").node == "b"
    assert services.viewer_room({"viewer_capacity": 10, "webrtc_viewers": 11}) == -1

"""The ladder's switching policy (hysteresis), fed with receiver reports at chosen times."""

import pytest

from streaming.node.broadcast.adapt import AdaptConfig, LayerPolicy
from streaming.node.broadcast.ladder import AUDIO_LAYER, Layer, check_ladder, default_ladder

CONFIG = AdaptConfig()
LAYERS = 3  # 360p, 180p, audio only


def feed(policy, start, end, step=1.0, **report):
    """One report every ``step`` seconds in [start, end); returns the moves as (time, index)."""
    moves = []
    now = start
    while now < end:
        moved = policy.report(now, **report)
        if moved is not None:
            moves.append((now, moved))
        now += step
    return moves


def test_the_default_ladder_is_360p_600k_180p_250k_and_audio_only():
    assert default_ladder(640, 360) == (
        Layer("360p", 640, 360, 600_000),
        Layer("180p", 320, 180, 250_000, speed=10, frame_divisor=2),
        AUDIO_LAYER,
    )
    with pytest.raises(ValueError):
        check_ladder((AUDIO_LAYER, Layer("360p", 640, 360, 600_000)), 640, 360)
    with pytest.raises(ValueError):
        check_ladder((Layer("180p", 320, 180, 250_000),), 640, 360)


def test_a_clean_link_stays_on_the_top_layer():
    policy = LayerPolicy(LAYERS)
    assert feed(policy, 0, 60, loss=0.0) == []
    assert feed(policy, 60, 120, remb=900_000, rate=500_000) == []
    # a busy receiver's estimate dips a little: within the margin
    assert feed(policy, 120, 180, remb=350_000, rate=500_000) == []
    assert policy.index == 0


def test_one_lossy_report_is_not_enough_but_a_second_within_the_confirmation_is():
    policy = LayerPolicy(LAYERS)
    assert policy.report(0.0, loss=0.10) is None
    assert policy.report(1.0, loss=0.0) is None  # the loss was a blip
    assert policy.report(2.0, loss=0.10) is None
    assert policy.report(3.0, loss=0.10) == 1
    assert policy.reason == "loss 10%"


def test_severe_loss_moves_down_at_the_second_report_and_reaches_audio_only():
    policy = LayerPolicy(LAYERS)
    moves = feed(policy, 0, 10, loss=0.3)
    assert [index for _, index in moves] == [1, 2]
    # reports within the dwell after a move are not counted again
    assert moves[1][0] - moves[0][0] >= CONFIG.dwell
    assert moves[-1][0] < 10


def test_an_estimate_below_what_is_sent_moves_down_only_when_it_lasts():
    policy = LayerPolicy(LAYERS)
    # an estimator that has not yet climbed to what is sent is not listened to
    assert feed(policy, -30, 0, remb=20_000, rate=500_000) == []
    assert policy.report(0.0, remb=600_000, rate=500_000) is None
    assert policy.report(0.5, remb=250_000, rate=500_000) is None
    assert policy.report(1.0, remb=600_000, rate=500_000) is None  # recovered: forgotten
    assert policy.report(1.5, remb=250_000, rate=500_000) is None
    assert policy.report(2.5, remb=250_000, rate=500_000) is None
    assert policy.report(3.5, remb=250_000, rate=500_000) is None
    assert policy.report(4.5, remb=250_000, rate=500_000) == 1
    assert policy.reason == "estimate 250 kbit/s, sent 500 kbit/s"
    # an idle stream's estimate is not a measure of the link
    idle = LayerPolicy(LAYERS)
    assert feed(idle, 0, 20, remb=10_000, rate=20_000) == []


def test_up_one_layer_after_clean_reports_for_the_wait_and_no_sooner():
    policy = LayerPolicy(LAYERS, start=2)
    moves = feed(policy, 0, 30, step=0.5, loss=0.0)
    assert [index for _, index in moves] == [1, 0]
    assert moves[0][0] >= CONFIG.up_after
    assert moves[1][0] - moves[0][0] >= CONFIG.up_after
    # moderate loss (between clean and lossy) holds the layer: no step up, no step down
    held = LayerPolicy(LAYERS, start=1)
    assert feed(held, 0, 60, loss=0.03) == []


def test_a_failed_step_up_doubles_the_wait_and_a_step_up_that_holds_resets_it():
    policy = LayerPolicy(LAYERS, start=1)
    now = 0.0
    assert feed(policy, now, 4.5, loss=0.0) == [(4.0, 0)]
    # the top layer is too much for the link: lossy again at once
    assert feed(policy, 5.5, 8.0, loss=0.1) == [(6.5, 1)]
    assert policy.up_after == 2 * CONFIG.up_after
    # the next step up waits twice as long
    moves = feed(policy, 8.0, 30.0, loss=0.0)
    assert moves[0][0] - 8.0 >= 2 * CONFIG.up_after
    assert moves == [(16.0, 0)]
    # that one holds: after failed_within the wait is back to the first
    assert feed(policy, 17.0, 30.0, loss=0.0) == []
    assert policy.up_after == CONFIG.up_after


def test_the_wait_is_capped_when_the_link_never_takes_the_upper_layer():
    policy = LayerPolicy(LAYERS, start=1)
    now, waits = 0.0, []
    for _ in range(8):
        clean_from = now
        while policy.report(now, loss=0.0) is None:
            now += 0.5
        waits.append(now - clean_from)
        now += 2.0
        while policy.report(now, loss=0.5) is None:
            now += 1.0
        now += 2.0
    assert waits[:5] == [4.0, 8.0, 16.0, 32.0, 32.0]
    assert policy.up_after == CONFIG.up_after_max

"""Which layer of the ladder a viewer gets: a pure decision from what the viewer's receiver
reports about its link (no clock, no I/O, so it is tested without a network).

Inputs, as the viewer's RTCP brings them (about one report a second per stream):

* ``loss``: the fraction of packets lost since the receiver's previous report (RTCP receiver
  report, "fraction lost"), for the viewer's video stream or its audio stream;
* ``remb`` with ``rate``: the receiver's estimated maximum bitrate (REMB) against the bitrate the
  viewer was being sent. A delay-based estimator (aiortc's, the browsers') keeps its estimate
  above what arrives while the link keeps up, and drops it below that when queues grow.

Hysteresis, so that a viewer does not flap between layers:

* down one layer when reports stay lossy (``loss_down``) for ``confirm`` seconds (at once when
  the loss is severe, ``loss_severe``), or the estimate stays below what is sent
  (``remb_margin``) for ``remb_confirm`` seconds; then reports are ignored for ``dwell`` seconds
  (they straddle the switch and the new layer's first keyframe);
* an estimate counts only once it has reached what is sent: a receiver's estimator starts low
  and climbs (aiortc's from a few kbit/s), which says nothing about the link;
* up one layer only after ``up_after`` seconds of clean reports (loss at most ``loss_clean``, no
  estimate below the rate); a step up that fails within ``failed_within`` seconds doubles the wait
  before the next try (up to ``up_after_max``), and a step up that holds resets it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AdaptConfig:
    loss_down: float = 0.05
    loss_severe: float = 0.2
    loss_clean: float = 0.02
    confirm: float = 0.9
    # A receiver that is itself busy (a phone, a loaded machine) also reports a lower estimate;
    # only a clear and lasting drop is taken for the link.
    remb_margin: float = 0.6
    remb_confirm: float = 3.0
    # An estimate is compared with the rate only when this much is sent (an idle stream's
    # estimate says nothing about the link).
    min_rate: int = 40_000
    dwell: float = 1.5
    up_after: float = 4.0
    up_after_max: float = 32.0
    failed_within: float = 8.0


class LayerPolicy:
    """One viewer's layer: an index into the ladder, 0 the best, ``layers - 1`` the lowest."""

    def __init__(self, layers: int, *, config: AdaptConfig | None = None, start: int = 0) -> None:
        if layers < 1:
            raise ValueError("a ladder has at least one layer")
        self.layers = layers
        self.config = config or AdaptConfig()
        self.index = min(max(start, 0), layers - 1)
        self.up_after = self.config.up_after
        self.switches = 0
        self._switched_at: float | None = None
        self._up_at: float | None = None
        self._clean_since: float | None = None
        self._lossy_since: float | None = None
        self._congested_since: float | None = None
        self._estimate_started = False
        # why the last move happened, for the node's log
        self.reason = ""

    def report(
        self,
        now: float,
        *,
        loss: float | None = None,
        remb: float | None = None,
        rate: float | None = None,
    ) -> int | None:
        """Take one observation at time ``now`` (seconds); returns the new index when the viewer
        is to move, else None."""
        config = self.config
        if self._switched_at is not None and now - self._switched_at < config.dwell:
            return None
        if self._up_at is not None and now - self._up_at >= config.failed_within:
            # the last step up held: the next one is tried as soon as the first was
            self._up_at = None
            self.up_after = config.up_after
        down = None
        if loss is not None:
            if loss < config.loss_down:
                self._lossy_since = None
            else:
                self._clean_since = None
                if self._lossy_since is None:
                    self._lossy_since = now
                if loss >= config.loss_severe or now - self._lossy_since >= config.confirm:
                    down = f"loss {loss:.0%}"
        if remb is not None and rate is not None and rate >= config.min_rate:
            if remb >= rate:
                self._estimate_started = True
        if remb is not None and rate is not None and self._estimate_started:
            if rate < config.min_rate or remb >= rate * config.remb_margin:
                self._congested_since = None
            else:
                self._clean_since = None
                if self._congested_since is None:
                    self._congested_since = now
                if now - self._congested_since >= config.remb_confirm:
                    down = f"estimate {remb / 1000:.0f} kbit/s, sent {rate / 1000:.0f} kbit/s"
        if self._lossy_since is not None or self._congested_since is not None:
            self._clean_since = None
        if down is not None:
            if self.index == self.layers - 1:
                return None
            if self._up_at is not None:
                # the step up failed: wait longer before the next
                self.up_after = min(self.up_after * 2, config.up_after_max)
                self._up_at = None
            self.reason = down
            return self._move(self.index + 1, now)
        if loss is None:
            return None  # an estimate that is not low says nothing about loss
        if loss > config.loss_clean or self._congested_since is not None:
            self._clean_since = None
            return None
        if self._clean_since is None:
            self._clean_since = now
        if self.index > 0 and now - self._clean_since >= self.up_after:
            self._up_at = now
            self.reason = f"clean for {now - self._clean_since:.0f} s"
            return self._move(self.index - 1, now)
        return None

    def _move(self, index: int, now: float) -> int:
        self.index = index
        self.switches += 1
        self._switched_at = now
        self._clean_since = self._lossy_since = self._congested_since = None
        return index

"""Who is speaking in a room, from the audio level the node already receives: no decoding.

Every audio RTP packet a browser sends carries its own level in the ``ssrc-audio-level`` header
extension (RFC 6464: 0 is the loudest, 127 silence, in -dBov), which Chromium and aiortc
negotiate by default. The node's receiver parses the header anyway; ``level_meter`` reads the
level off each packet before the receiver handles it (``aiortc_private.wrap_rtp_handler``), so
finding the speaker costs a dictionary write per packet and a sort of a few members every
``TICK`` seconds.

A member speaks when the mean power of their last ``WINDOW`` seconds of packets is louder than
``SPEAKING_DBOV``: a power mean, so syllables with pauses between them (or a short beep every
half second) count, and a quiet room does not. The loudest speaking member becomes the room's speaker when:

* there is no speaker yet, or the speaker has stopped speaking, or is quieter by ``MARGIN_DB``;
* and the last change is at least ``MIN_INTERVAL`` old (rate limit: one event per interval at
  most, so two people talking over each other do not flood the room's sockets).

A member who stops speaking stays the speaker until someone else speaks. ``on_change(member,
level)`` is called on a change, on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from streaming.node.internals import aiortc_private

TICK = 0.2
WINDOW = 0.4
# RFC 6464 levels are -dBov: a voice at a normal distance is about 20-40, a quiet room 60-127
SPEAKING_DBOV = 50
MARGIN_DB = 6
MIN_INTERVAL = 0.8
SILENCE = 127


class SpeakerDetector:
    def __init__(
        self,
        on_change: Callable[[str, int], None],
        *,
        eligible: Callable[[str], bool] = lambda member: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_change = on_change
        self.eligible = eligible
        self.clock = clock
        self.speaker: str | None = None
        self.changes = 0
        self.packets = 0
        self._levels: dict[str, deque[tuple[float, int]]] = {}
        self._changed_at = -MIN_INTERVAL
        self._task: asyncio.Task[None] | None = None

    # -- input -----------------------------------------------------------------------------

    def heard(self, member: str, level: int) -> None:
        """One packet of ``member``'s audio at ``level`` (-dBov, 0-127)."""
        self.packets += 1
        samples = self._levels.get(member)
        if samples is None:
            samples = self._levels[member] = deque(maxlen=200)
        samples.append((self.clock(), level))

    def forget(self, member: str) -> None:
        self._levels.pop(member, None)
        if self.speaker == member:
            self.speaker = None

    def level(self, member: str) -> int:
        """The level of the mean power of ``member``'s recent packets, in -dBov (``SILENCE``
        when none came)."""
        samples = self._levels.get(member)
        if not samples:
            return SILENCE
        since = self.clock() - WINDOW
        recent = [level for at, level in samples if at >= since]
        if not recent:
            return SILENCE
        power = sum(10 ** (-level / 10) for level in recent) / len(recent)
        return min(SILENCE, round(-10 * math.log10(power)))

    # -- decision --------------------------------------------------------------------------

    def tick(self) -> str | None:
        """Decide once; returns the new speaker when it changed."""
        levels = {m: self.level(m) for m in list(self._levels) if self.eligible(m)}
        speaking = {m: lv for m, lv in levels.items() if lv < SPEAKING_DBOV}
        if not speaking:
            return None
        loudest = min(speaking, key=lambda m: (speaking[m], m))
        if loudest == self.speaker:
            return None
        current = speaking.get(self.speaker) if self.speaker is not None else None
        if current is not None and speaking[loudest] > current - MARGIN_DB:
            return None  # the speaker still speaks, and nobody is clearly louder
        now = self.clock()
        if now - self._changed_at < MIN_INTERVAL:
            return None
        self.speaker = loudest
        self._changed_at = now
        self.changes += 1
        self.on_change(loudest, speaking[loudest])
        return loudest

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="speaker")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.tick()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def level_meter(receiver: Any, member: str, detector: SpeakerDetector) -> None:
    """Give ``detector`` the level each audio packet of ``receiver`` carries (if it has one)."""

    def wrap(
        handle: Callable[[Any, int], Awaitable[None]],
    ) -> Callable[[Any, int], Awaitable[None]]:
        async def measured(packet: Any, arrival_time_ms: int) -> None:
            level = packet.extensions.audio_level
            if level is not None:
                detector.heard(member, level[1])
            await handle(packet, arrival_time_ms)

        return measured

    aiortc_private.wrap_rtp_handler(receiver, wrap)

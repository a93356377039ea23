"""The broadcast sound: every member mixed into one mono track, silence when off air."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from streaming.node.broadcast.scene import BroadcastMember, Scene

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, what Opus sends per packet
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
# Audio older than this is dropped: a member whose packets bunch up must not delay the mix.
MAX_BUFFERED = SAMPLE_RATE // 5


class PitchShifter:
    """Streaming pitch shift with two crossfaded read heads on a sliding delay line.

    Cheap (a few numpy operations per 20 ms), no look-ahead, and enough to make a voice hard to
    recognise; it is not studio quality and does not try to be.
    """

    def __init__(self, ratio: float, *, sample_rate: int = SAMPLE_RATE, window_ms: int = 40):
        self.ratio = ratio
        self.window = int(sample_rate * window_ms / 1000)
        self._history = np.zeros(self.window + 2, dtype=np.float32)
        self._phase = 0.0

    def process(self, samples: np.ndarray) -> np.ndarray:
        n = len(samples)
        data = np.concatenate([self._history, samples.astype(np.float32)])
        offset = len(self._history)
        steps = np.arange(n, dtype=np.float64)
        delay_a = (self._phase + steps * (1.0 - self.ratio)) % self.window
        delay_b = (delay_a + self.window / 2) % self.window
        positions = np.arange(len(data), dtype=np.float64)
        now = offset + steps
        tap_a = np.interp(now - delay_a, positions, data)
        tap_b = np.interp(now - delay_b, positions, data)
        # Triangular gains are zero where a head jumps back, and add up to one.
        gain_a = 1.0 - np.abs(2.0 * delay_a / self.window - 1.0)
        out = tap_a * gain_a + tap_b * (1.0 - gain_a)
        self._phase = float((self._phase + n * (1.0 - self.ratio)) % self.window)
        self._history = data[-(self.window + 2) :]
        return out.astype(np.float32)


class AudioReader:
    """Drains one member's audio track into a short mono 48 kHz buffer."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self._resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._chunks: list[np.ndarray] = []
        self._buffered = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            for out in self._resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                self._chunks.append(chunk)
                self._buffered += len(chunk)
            while self._buffered > MAX_BUFFERED and len(self._chunks) > 1:
                self._buffered -= len(self._chunks.pop(0))

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` samples, padded with silence when the member is behind."""
        out = np.zeros(count, dtype=np.int16)
        filled = 0
        while filled < count and self._chunks:
            chunk = self._chunks[0]
            used = min(count - filled, len(chunk))
            out[filled : filled + used] = chunk[:used]
            filled += used
            if used == len(chunk):
                self._chunks.pop(0)
            else:
                self._chunks[0] = chunk[used:]
        self._buffered -= filled
        return out

    def stop(self) -> None:
        self._task.cancel()


class AudioMixerTrack(MediaStreamTrack):
    """Mono 48 kHz mix of the scene's members in 20 ms frames; silence unless live."""

    kind = "audio"

    def __init__(self, scene: Scene) -> None:
        super().__init__()
        self.scene = scene
        self.frames_sent = 0
        self._start: float | None = None
        self._index = 0
        self._readers: dict[str, AudioReader] = {}
        self._shifters: dict[str, PitchShifter] = {}
        self._version = -1

    def _sync_members(self) -> None:
        if self._version == self.scene.version:
            return
        self._version = self.scene.version
        wanted: dict[str, BroadcastMember] = {m.member_id: m for m in self.scene.members}
        for member_id in list(self._readers):
            member = wanted.get(member_id)
            if member is None or member.audio is not self._readers[member_id].track:
                self._readers.pop(member_id).stop()
        for member_id, member in wanted.items():
            if member.audio is not None and member_id not in self._readers:
                self._readers[member_id] = AudioReader(member.audio)
        ratio = self.scene.pitch_shift
        self._shifters = {
            m.member_id: self._shifters.get(m.member_id) or PitchShifter(ratio)
            for m in self.scene.members
            if ratio and m.is_party
        }

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._index += 1
            due = self._start + self._index * FRAME_SAMPLES / SAMPLE_RATE
            if due > now:
                await asyncio.sleep(due - now)
            else:
                self._index = max(
                    self._index, int((now - self._start) * SAMPLE_RATE) // FRAME_SAMPLES
                )
        self._sync_members()
        mix = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        for member_id, reader in self._readers.items():
            # Always drain, so that going back on air does not replay what was said off air.
            samples = reader.take(FRAME_SAMPLES).astype(np.float32)
            shifter = self._shifters.get(member_id)
            if shifter is not None:
                samples = shifter.process(samples)
            mix += samples
        if not self.scene.on_air:
            mix[:] = 0
        pcm = np.clip(mix, -32768, 32767).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._index * FRAME_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        for reader in self._readers.values():
            reader.stop()
        self._readers.clear()

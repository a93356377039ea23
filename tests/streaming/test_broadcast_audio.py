import asyncio

import numpy as np

from streaming.node.broadcast.audio import SAMPLE_RATE, AudioMixerTrack, PitchShifter
from streaming.node.broadcast.scene import BroadcastMember, Scene
from streaming.node.broadcast.synthetic import ToneAudioTrack


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def test_pitch_shift_lowers_a_tone_by_the_ratio_in_20_ms_chunks():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    shifter = PitchShifter(0.8)

    out = np.concatenate([shifter.process(tone[i : i + 960]) for i in range(0, len(tone), 960)])

    assert abs(dominant_frequency(out[SAMPLE_RATE // 4 :]) - 352) < 15


def test_mixer_mixes_every_member_and_is_silent_on_hold():
    async def scenario():
        members = [
            BroadcastMember(member_id="m", role="mediator", audio=ToneAudioTrack(300)),
            BroadcastMember(member_id="a", role="applicant", audio=ToneAudioTrack(900)),
        ]
        scene = Scene(state="live", members=members)
        mixer = AudioMixerTrack(scene)
        live = [(await mixer.recv()).to_ndarray().reshape(-1) for _ in range(30)]
        scene.set_state("hold")
        held = [(await mixer.recv()).to_ndarray().reshape(-1) for _ in range(5)]
        mixer.stop()
        return np.concatenate(live[10:]), held

    live, held = asyncio.run(scenario())

    spectrum = np.abs(np.fft.rfft(live.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(live), 1 / SAMPLE_RATE)
    peaks = {round(f, -1) for f in freqs[np.argsort(spectrum)[-4:]]}
    assert {300.0, 900.0} <= peaks
    assert all(not chunk.any() for chunk in held)


def test_parties_voices_are_shifted_when_the_scene_asks_and_the_mediator_is_not():
    async def scenario(role):
        members = [BroadcastMember(member_id="x", role=role, audio=ToneAudioTrack(500))]
        mixer = AudioMixerTrack(Scene(state="live", members=members, pitch_shift=0.8))
        chunks = [(await mixer.recv()).to_ndarray().reshape(-1) for _ in range(30)]
        mixer.stop()
        return np.concatenate(chunks[10:]).astype(np.float64)

    party = asyncio.run(scenario("applicant"))
    mediator = asyncio.run(scenario("mediator"))

    assert abs(dominant_frequency(party) - 400) < 20
    assert abs(dominant_frequency(mediator) - 500) < 20

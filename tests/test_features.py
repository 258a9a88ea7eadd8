"""Mel features and their inverse."""
import json

import numpy as np
import torch

from sda_web.audio.features import MelSpec, log_mel, mel_to_waveform

torch.set_num_threads(1)


def sine(freq, seconds=1.0, rate=24000, level=0.5):
    t = torch.arange(int(seconds * rate)) / rate
    return level * torch.sin(2 * torch.pi * freq * t)


def test_melspec_round_trips_through_json():
    spec = MelSpec(n_mels=64, hop_length=128, f_max=11000.0)
    again = MelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.to_dict() == spec.to_dict()
    assert MelSpec.from_dict({}) == MelSpec()
    assert MelSpec.from_dict({**MelSpec().to_dict(), "unknown_key": 1}) == MelSpec()


def test_melspec_defaults_match_the_contract():
    spec = MelSpec()
    assert (spec.sample_rate, spec.n_fft, spec.hop_length, spec.n_mels) == (24000, 1024, 256, 80)
    assert (spec.f_min, spec.f_max, spec.log_floor) == (20.0, 12000.0, 1e-5)
    assert (spec.griffin_lim_iters, spec.griffin_lim_momentum) == (32, 0.99)


def test_log_mel_shape_matches_frames_for_and_batches():
    spec = MelSpec()
    one = log_mel(sine(440), spec)
    assert one.shape == (spec.n_mels, spec.frames_for(1.0))
    batch = log_mel(torch.stack([sine(220), sine(880)]), spec)
    assert batch.shape == (2, spec.n_mels, spec.frames_for(1.0))
    torch.testing.assert_close(batch[0], log_mel(sine(220), spec))
    assert float(one.min()) >= np.log(spec.log_floor) - 1e-6


def test_log_mel_of_silence_is_the_floor():
    spec = MelSpec()
    assert torch.allclose(log_mel(torch.zeros(24000), spec), torch.tensor(np.log(spec.log_floor), dtype=torch.float32))


def test_inverse_of_a_sine_peaks_at_the_same_frequency():
    spec = MelSpec()
    freq = 1000.0
    wave = mel_to_waveform(log_mel(sine(freq), spec), spec)
    assert wave.shape == (spec.hop_length * (spec.frames_for(1.0) - 1),)
    assert torch.isfinite(wave).all() and wave.abs().max() > 0.05
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(len(wave))))
    peak = np.fft.rfftfreq(len(wave), 1 / spec.sample_rate)[spectrum.argmax()]
    assert abs(peak - freq) < 40  # within about one mel band at 1 kHz


def test_inverse_is_deterministic_and_works_on_batches():
    spec = MelSpec()
    mels = log_mel(torch.stack([sine(300, 0.5), sine(2000, 0.5)]), spec)
    a = mel_to_waveform(mels, spec, n_iter=4)
    b = mel_to_waveform(mels, spec, n_iter=4)
    assert a.shape[0] == 2
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1], mel_to_waveform(mels[1], spec, n_iter=4), atol=1e-4, rtol=1e-4)


def test_inverse_survives_wild_decoder_output():
    spec = MelSpec()
    wild = torch.full((spec.n_mels, 20), 500.0)
    wild[0, 0] = float("nan")
    assert torch.isfinite(mel_to_waveform(wild, spec, n_iter=2)).all()

"""Full-band features and the one waveform inverse."""
import json

import numpy as np
import pytest
import torch

from sda_web.audio.features import (
    BandSpec, MelSpec, band_edges, checkpoint_spec, choose_model_rate, features_to_power, log_features, spec_from_dict,
)
from sda_web.audio.inverse import features_to_wave

torch.set_num_threads(1)


def sine(freq, seconds=1.0, rate=48000, level=0.5):
    t = torch.arange(int(seconds * rate)) / rate
    return level * torch.sin(2 * torch.pi * freq * t)


def band_energy_db(wave: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / rate)
    return 10 * np.log10(spectrum[(freqs >= lo) & (freqs < hi)].sum() + 1e-30)


def test_specs_round_trip_through_json_and_old_checkpoints_read_as_mel():
    spec = BandSpec(sample_rate=44100)
    again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and isinstance(again, BandSpec)
    legacy = {k: v for k, v in MelSpec().to_dict().items() if k != "kind"}  # what pre-full-band runs stored
    assert spec_from_dict(legacy) == MelSpec()
    assert checkpoint_spec({"mel_spec": legacy}) == MelSpec()
    assert checkpoint_spec({"feature_spec": spec.to_dict()}) == spec
    assert spec_from_dict({**spec.to_dict(), "unknown_key": 1}) == spec


def test_band_layout_is_linear_then_32_per_octave_up_to_nyquist():
    spec = BandSpec()
    edges = band_edges(spec)
    widths = np.diff(edges)
    assert edges[0] == 0 and edges[-1] == spec.n_stft and spec.n_bands == 192
    assert (widths[:64] == 1).all()  # one bin each up to 1.5 kHz at 48 kHz
    assert set(widths[64:-1]) == {2, 4, 8, 16}
    assert BandSpec(sample_rate=44100).n_bands == spec.n_bands  # the layout is in bins, not Hz


@pytest.mark.parametrize("rates, expected", [
    ([44100] * 5, 44100), ([48000] * 5, 48000), ([22050, 44100, 48000], 44100), ([48000, 48000, 44100], 48000),
    ([96000, 16000], 48000), ([], 48000),
])
def test_model_rate_follows_the_majority_of_the_files(rates, expected):
    assert choose_model_rate(rates) == expected


def test_log_features_shape_batches_and_floor():
    spec = BandSpec()
    one = log_features(sine(440), spec)
    assert one.shape == (spec.n_bands, spec.frames_for(1.0))
    batch = log_features(torch.stack([sine(220), sine(880)]), spec)
    assert batch.shape == (2, spec.n_bands, spec.frames_for(1.0))
    torch.testing.assert_close(batch[0], log_features(sine(220), spec))
    silence = log_features(torch.zeros(48000), spec)
    torch.testing.assert_close(silence, torch.full_like(silence, float(np.log(spec.log_floor))))


def test_a_full_band_sweep_keeps_its_top_octave_through_features_and_inverse():
    rate = 48000
    spec = BandSpec(sample_rate=rate)
    t = np.arange(2 * rate) / rate
    f0, f1 = 100.0, 20000.0  # exponential sweep across the whole audible band
    phase = 2 * np.pi * f0 * 2 * (np.power(f1 / f0, t / 2) - 1) / np.log(f1 / f0)
    wave = (0.5 * np.sin(phase)).astype(np.float32)
    out = features_to_wave(log_features(wave, spec), spec).numpy()
    n = min(len(out), len(wave))
    for lo, hi in ((10000, 20000), (15000, 20000), (1000, 5000)):
        kept = band_energy_db(out[:n], rate, lo, hi) - band_energy_db(wave[:n], rate, lo, hi)
        assert abs(kept) < 1.5, (lo, hi, kept)
    # The old 24 kHz features keep nothing above 12 kHz: that is what full band changes.
    old = MelSpec()
    from sda_web.audio.io import resample

    old_out = resample(features_to_wave(log_features(resample(wave, rate, 24000), old), old).numpy(), 24000, rate)
    m = min(len(old_out), n)
    assert band_energy_db(old_out[:m], rate, 15000, 20000) < band_energy_db(wave[:m], rate, 15000, 20000) - 30


@pytest.mark.parametrize("spec", [BandSpec(), BandSpec(sample_rate=44100), MelSpec()], ids=str)
def test_inverse_of_a_sine_peaks_at_the_same_frequency(spec):
    freq = 1000.0
    wave = features_to_wave(log_features(sine(freq, rate=spec.sample_rate), spec), spec)
    assert wave.shape == (spec.hop_length * (spec.frames_for(1.0) - 1),)
    assert torch.isfinite(wave).all()
    rms = float(wave[spec.n_fft:-spec.n_fft].square().mean().sqrt())
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.15)  # the level survives too
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(len(wave))))
    peak = np.fft.rfftfreq(len(wave), 1 / spec.sample_rate)[spectrum.argmax()]
    assert abs(peak - freq) < 40


def test_a_sound_does_not_depend_on_what_it_was_batched_with():
    # Each item of a batch goes through exactly the operations it would alone (audio/inverse.py),
    # so this holds bit for bit on any CPU: previews decode in batches, generation one by one.
    spec = BandSpec()
    feats = log_features(torch.stack([sine(300, 0.5), sine(2000, 0.5), torch.zeros(24000)]), spec)
    batched = features_to_wave(feats, spec, n_iter=8)
    assert batched.shape[0] == 3
    for i in range(3):
        assert torch.equal(batched[i], features_to_wave(feats[i].clone(), spec, n_iter=8))
    assert torch.equal(batched, features_to_wave(feats, spec, n_iter=8))  # and the same request, the same sound


def test_inverse_survives_wild_decoder_output():
    for spec in (BandSpec(), MelSpec()):
        wild = torch.full((spec.n_bands, 20), 500.0)
        wild[0, 0] = float("nan")
        assert torch.isfinite(features_to_power(wild, spec)).all()
        assert torch.isfinite(features_to_wave(wild, spec, n_iter=2)).all()

"""The demo sound set: deterministic, varied, quick, all importable."""
import time

import numpy as np
import soundfile as sf

from sda_web.audio.demo import write_demo_sounds
from sda_web.audio.io import inspect_audio


def spectral_centroid(path):
    wave, rate = sf.read(path, always_2d=True)
    mono = wave.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono))
    freqs = np.fft.rfftfreq(len(mono), 1 / rate)
    return float((spectrum * freqs).sum() / spectrum.sum())


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = write_demo_sounds(tmp_path / "a", count=10)
    b = write_demo_sounds(tmp_path / "b", count=10)
    assert [p.name for p in a] == [p.name for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    c = write_demo_sounds(tmp_path / "c", count=10, seed=1)
    assert any(x.read_bytes() != y.read_bytes() for x, y in zip(a, c))


def test_default_set_is_varied_valid_and_fast(tmp_path):
    start = time.perf_counter()
    paths = write_demo_sounds(tmp_path)
    elapsed = time.perf_counter() - start
    assert len(paths) == 24 and elapsed < 3.0  # ~0.4 s alone; slack for a busy machine
    infos = [inspect_audio(p) for p in paths]  # every demo sound passes the import checks
    total = sum(i.duration_s for i in infos)
    assert 35 <= total <= 60
    assert all(0.06 - 1e-9 <= i.duration_s <= 4.0 for i in infos)
    assert {i.sample_rate for i in infos} == {44100, 48000}
    assert {i.channels for i in infos} == {1, 2}
    centroids = [spectral_centroid(p) for p in paths]
    assert max(centroids) / min(centroids) > 8  # dark kicks to bright hats
    peaks = [np.abs(sf.read(p)[0]).max() for p in paths]
    assert max(peaks) / min(peaks) > 3  # loudness varies too

"""A tiny model trained on the demo dataset, shared by the generation, library and
CLI-generate tests (imported by them; not a pytest conftest).

Training takes ~10 s on one CPU thread, so it happens once per test session
(the `trained_demo` fixture in conftest.py), and every module works on its own
copy of it (they rename and delete things).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

# Chosen by measurement: this size and length (augmentation off) gives a
# latent space whose decoder has a monotone brightness control on the demo set
# (full-band features; rho 0.96 >= 0.9); 60 epochs, or latent 16, gave only
# loudness and textures.
TINY_MODEL = dict(epochs=100, width=48, latent_dim=8, batch_size=8, learning_rate=3e-3, dropout=0.0,
                  augment=False, augment_band_shift=0, preview_every=1000, checkpoint_every=1000, patience=0)

def train_demo_model(root: Path) -> Path:
    """Train the tiny model on the demo set under `root`; its data directory (the session fixture
    `trained_demo` calls this once; tests work on copies)."""
    from sda_web.audio.demo import write_demo_sounds
    from sda_web.datasets import import_folder
    from sda_web.generation.after_training import analyse_trained_run
    from sda_web.training import TrainingRunner, get_adaptive_config

    write_demo_sounds(root / "demo")
    data = root / "data"
    manifest = import_folder(data, root / "demo", name="demo")
    config = get_adaptive_config(manifest.file_count).with_overrides(**TINY_MODEL)
    finished = []
    runner = TrainingRunner(data, after_training=analyse_trained_run)
    runner.start("demo", config, finished.append)
    assert runner.wait(timeout=300)
    assert finished[-1].outcome == "completed", finished[-1].error
    return data


def copy_of_trained(template: Path, tmp_path_factory, name: str = "data") -> Path:
    """A copy of the trained demo data directory (`trained_demo`), for a test that changes it."""
    copy = tmp_path_factory.mktemp(name) / "data"
    shutil.copytree(template, copy)
    return copy


def spectral_centroid(wave: np.ndarray, sample_rate: int) -> float:
    """Power-weighted mean frequency (Hz) of the whole sound."""
    spectrum = torch.stft(torch.as_tensor(wave, dtype=torch.float32), 1024, 256, window=torch.hann_window(1024),
                          return_complex=True).abs().square()
    freqs = torch.linspace(0, sample_rate / 2, spectrum.shape[0])
    return float((spectrum * freqs[:, None]).sum() / spectrum.sum().clamp(min=1e-20))


def seam_jump_ratio(wave: np.ndarray, seams: list[int], guard: int = 24) -> float:
    """Largest sample-to-sample jump within 2 samples of a seam, over the 99.9th percentile
    of the jumps everywhere else (more than `guard` samples from any seam)."""
    jumps = np.abs(np.diff(wave.astype(np.float64)))
    at_seams = max(jumps[s - 2:s + 2].max() for s in seams)
    elsewhere = np.ones(len(jumps), dtype=bool)
    for s in seams:
        elsewhere[max(0, s - guard):s + guard] = False
    return float(at_seams / max(np.percentile(jumps[elsewhere], 99.9), 1e-12))


def log_spectral_distance(reference: np.ndarray, estimate: np.ndarray, floor_db: float = 80.0) -> float:
    """Mean over frames of the RMS dB difference of the power spectra (n_fft 2048, hop 512), both
    floored `floor_db` below the reference's peak (as bench/_sound_metrics.py measures)."""
    n = min(len(reference), len(estimate))
    window = torch.hann_window(2048)
    spectra = [torch.stft(torch.as_tensor(np.asarray(x[:n]), dtype=torch.float32), 2048, 512, window=window,
                          return_complex=True).abs().square() for x in (reference, estimate)]
    floor = spectra[0].max() * 10 ** (-floor_db / 10)
    ref_db, est_db = (10 * torch.log10(s.clamp(min=floor)) for s in spectra)
    return float((ref_db - est_db).square().mean(dim=0).sqrt().mean())

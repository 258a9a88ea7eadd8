"""Preview audio written while training: what the model hears and imagines.

Each preview epoch writes two WAVs: the reconstruction of one validation sound
(how well it has learned the material) and a decode of a fixed prior sample
(what it makes up; the same latent point every time, so the listener hears
one sound evolve across epochs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio.features import FeatureSpec
from ..audio.inverse import features_to_wave
from ..model import SoundVAE
from ..model.lengths import STRIDE
from ..model.stats import FeatureStats
from .data import SoundBank

PEAK = 0.89  # -1 dBFS: loud enough to judge, never clipping


def write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """Peak-normalised 16-bit WAV, written to a temp name then moved into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 0:
        wave = wave * (PEAK / peak)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, wave.astype(np.float32), sample_rate, subtype="PCM_16", format="WAV")
    tmp.replace(path)


def preview_example(bank: SoundBank) -> torch.Tensor:
    """The loudest sound of a bank, whole from its start (up to the model's head length):
    normalised (n_bands, frames), on the bank's device."""
    loudest = max(range(bank.file_count), key=lambda i: float(bank.sounds[i].mean()))
    return bank.window(loudest, 0, min(bank.lengths[loudest], bank.frames))


@torch.no_grad()
def write_previews(model: SoundVAE, clip: torch.Tensor, prior_z: torch.Tensor, stats: FeatureStats,
                   spec: FeatureSpec, recon_path: Path, prior_path: Path) -> None:
    """clip: one normalised sound (n_bands, frames) on the model's device; the prior sample is
    decoded as long as the model's head, its local detail at the prior's mean."""
    model.eval()
    x = clip.unsqueeze(0)
    mu_g, _, mu_u, _ = model.encode(x)
    recon = model.decode(mu_g, mu_u, model.time(1, x.shape[-1]))
    steps = model.shape.frames // STRIDE
    z = prior_z.to(mu_g.device)
    made = model.decode(z, torch.zeros(1, model.shape.local_dim, steps, device=z.device), model.time(1, steps * STRIDE))
    for feats, path in ((recon, recon_path), (made, prior_path)):
        wave = features_to_wave(stats.denormalise(feats[0]).float().cpu(), spec).numpy()
        write_wav(path, wave, spec.sample_rate)

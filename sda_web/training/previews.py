"""Preview audio written while training: what the model hears and imagines.

Each preview epoch writes two WAVs: the reconstruction of one validation clip
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
from ..model import ConvVAE
from .data import FeatureStats

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


@torch.no_grad()
def decode_to_audio(model: ConvVAE, z: torch.Tensor, stats: FeatureStats, spec: FeatureSpec) -> np.ndarray:
    model.eval()
    mel = stats.denormalise(model.decode(z)).float().cpu()
    return features_to_wave(mel, spec).numpy()


@torch.no_grad()
def write_previews(model: ConvVAE, clip: torch.Tensor, prior_z: torch.Tensor, stats: FeatureStats,
                   spec: FeatureSpec, recon_path: Path, prior_path: Path) -> None:
    """clip: one normalised segment (n_bands, frames) on the model's device."""
    model.eval()
    mu, _ = model.encode(clip.unsqueeze(0))
    z = torch.cat([mu, prior_z.to(mu.device)], dim=0)
    audio = decode_to_audio(model, z, stats, spec)
    write_wav(recon_path, audio[0], spec.sample_rate)
    write_wav(prior_path, audio[1], spec.sample_rate)

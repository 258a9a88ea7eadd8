"""A trained model loaded from its run folder, with everything needed to use it.

The feature parameters and normalisation stats travel inside the checkpoint, so a
model can never be decoded with features other than those it was trained on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audio.features import FeatureSpec, checkpoint_spec, log_features
from ..audio.inverse import features_to_wave
from ..model import ConvVAE, ModelShape
from ..training.checkpoints import CheckpointError, get_best_checkpoint, get_latest_checkpoint, load_checkpoint, model_state
from ..training.data import FeatureStats


@dataclass
class TrainedModel:
    model: ConvVAE
    spec: FeatureSpec
    stats: FeatureStats
    shape: ModelShape
    epoch: int
    device: torch.device
    makeup_gains: dict = field(default_factory=dict)  # generation's level, computed once (synth.makeup_gain)

    @property
    def frames(self) -> int:
        return self.shape.frames

    @torch.no_grad()
    def segment_latents(self, wave: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Posterior means of consecutive segments of a mono waveform, and its frame count."""
        feats = self.stats.normalise(log_features(wave, self.spec))
        frames = feats.shape[-1]
        count = max(1, math.ceil(frames / self.frames))
        silence = float(self.stats.normalise(torch.tensor(math.log(self.spec.log_floor))))
        padded = torch.full((feats.shape[0], count * self.frames), silence)
        padded[:, :frames] = feats
        segments = padded.view(feats.shape[0], count, self.frames).permute(1, 0, 2).to(self.device)
        mu, _ = self.model.encode(segments)
        return mu, frames

    @torch.no_grad()
    def decode_segments(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (n, latent) -> log-feature segments (n, n_bands, frames), on the CPU."""
        return self.stats.denormalise(self.model.decode(z.to(self.device))).float().cpu()

    @torch.no_grad()
    def decode_features(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (n, latent) -> log features (n_bands, n * frames), segments side by side."""
        feats = self.stats.denormalise(self.model.decode(z.to(self.device))).float().cpu()
        return feats.permute(1, 0, 2).reshape(feats.shape[1], -1)

    @torch.no_grad()
    def reconstruct(self, wave: torch.Tensor, n_iter: int | None = None) -> torch.Tensor:
        """Encode and decode a whole mono waveform segment by segment (no overlap)."""
        mu, frames = self.segment_latents(wave)
        return features_to_wave(self.decode_features(mu)[:, :frames], self.spec, n_iter)


def load_trained_model(run_dir: Path, which: str = "best", device: str | torch.device = "cpu") -> TrainedModel:
    run_dir = Path(run_dir)
    path = get_best_checkpoint(run_dir) if which == "best" else get_latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"Run {run_dir.name} has no checkpoint yet; train it for at least one epoch.")
    device = torch.device(device)
    payload = load_checkpoint(path, map_location=device)
    shape = ModelShape.from_dict(payload["model_shape"])
    model = ConvVAE(shape).to(device)
    model.load_state_dict(model_state(payload))
    model.eval()
    return TrainedModel(model, checkpoint_spec(payload), FeatureStats(**payload["feature_stats"]),
                        shape, int(payload["epoch"]), device)

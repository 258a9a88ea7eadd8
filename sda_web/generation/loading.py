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
    def path_latents(self, wave: torch.Tensor) -> torch.Tensor:
        """A whole mono waveform (samples,) -> posterior means (count, latent) of its segments at
        half-segment hops, laid out as synth.render_latents decodes them for len(wave) samples
        (the tail padded with silence, as in training). On the CPU, float32; one batch."""
        from .synth import segment_layout  # (synth imports this module)

        frames_needed = math.ceil(int(wave.shape[-1]) / self.spec.hop_length) + 1
        count, hop = segment_layout(frames_needed, self.frames)
        feats = self.stats.normalise(log_features(wave, self.spec))
        silence = float(self.stats.normalise(torch.tensor(math.log(self.spec.log_floor))))
        padded = torch.full((feats.shape[0], (count - 1) * hop + self.frames), silence)
        used = min(feats.shape[-1], padded.shape[-1])
        padded[:, :used] = feats[:, :used]
        segments = padded.unfold(1, self.frames, hop).permute(1, 0, 2)  # (count, n_bands, frames)
        mu, _ = self.model.encode(segments.contiguous().to(self.device))
        return mu.float().cpu()

    @torch.no_grad()
    def decode_segments(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (n, latent) -> log-feature segments (n, n_bands, frames), on the CPU."""
        return self.stats.denormalise(self.model.decode(z.to(self.device))).float().cpu()

    @torch.no_grad()
    def reconstruct(self, wave: torch.Tensor, n_iter: int | None = None) -> torch.Tensor:
        """The model's plain reconstruction of a whole mono waveform, as long as it: segments at
        half-segment hops encoded, decoded and crossfaded (what a transform with nothing moved
        makes, before its level match)."""
        from .synth import render_latents  # (synth imports this module)

        iters = self.spec.griffin_lim_iters if n_iter is None else int(n_iter)
        return torch.from_numpy(render_latents(self, self.path_latents(wave), int(wave.shape[-1]), iters))


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

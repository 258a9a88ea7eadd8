"""A trained model loaded from its run folder, with everything needed to use it.

The feature parameters and normalisation stats travel inside the checkpoint, so a
model can never be decoded with features other than those it was trained on.

Two kinds of model load here, behind one interface that generation, transform
and the sound controls use:
- the model of whole sounds (`SoundVAE`, every run since it came): a sound is
  one global latent plus local detail along time; a "latent path" holds the
  global latent at every local step (constant for a plain reconstruction,
  drifting for a long generated sound);
- the segment model of earlier runs (`ConvVAE`): a path holds one latent per
  segment at half-segment hops, crossfaded (`segments.py`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audio.features import FeatureSpec, checkpoint_spec, features_to_power, log_features
from ..audio.inverse import griffin_lim
from ..model import ConvVAE, ModelShape, SoundShape, SoundVAE, build_model
from ..checkpoints import CheckpointError, get_best_checkpoint, get_latest_checkpoint, load_checkpoint, model_state
from ..model.lengths import STRIDE, head_steps, padded_length, sound_length
from ..model.stats import FeatureStats
from .segments import overlap_add, segment_layout, segment_windows
from .settings import default_duration

MAX_DECAY_SECONDS = 6.0  # the longest window a sound's decay is measured over (a ride rings longer)


@dataclass
class SoundCode:
    """A sound encoded: its latent path (count, latent) and, for the model of whole sounds, the
    local detail (local_dim, steps) that goes with it (None for a segment model)."""
    path: torch.Tensor
    detail: torch.Tensor | None

    def mean(self) -> torch.Tensor:
        return self.path.double().mean(dim=0)


@dataclass
class TrainedModel:
    model: ConvVAE | SoundVAE
    spec: FeatureSpec
    stats: FeatureStats
    shape: ModelShape | SoundShape
    epoch: int
    device: torch.device
    typical_seconds: float | None = None  # median length of the sounds it learnt from
    makeup_gains: dict = field(default_factory=dict)  # generation's level, computed once (synth.makeup_gain)

    @property
    def whole_sounds(self) -> bool:
        return isinstance(self.shape, SoundShape)

    @property
    def frames(self) -> int:
        """The head (whole-sound model) or segment (segment model) length, in frames."""
        return self.shape.frames

    @property
    def latent_dim(self) -> int:
        return self.shape.latent_dim

    @property
    def silence(self) -> float:
        return float(self.stats.normalise(torch.tensor(math.log(self.spec.log_floor))))

    def frames_for(self, samples: int) -> int:
        """Feature frames that cover `samples` samples (centred frames)."""
        return math.ceil(int(samples) / self.spec.hop_length) + 1

    def path_length(self, samples: int) -> int:
        """How many latents a path for `samples` samples holds."""
        frames = self.frames_for(samples)
        if self.whole_sounds:
            return padded_length(frames) // STRIDE
        return segment_layout(frames, self.frames)[0]

    @property
    def path_step_seconds(self) -> float:
        step = STRIDE if self.whole_sounds else self.frames // 2
        return step * self.spec.hop_length / self.spec.sample_rate

    def default_seconds(self) -> float:
        """A generated sound's length when none is asked for (`settings.default_duration`)."""
        return default_duration(self.typical_seconds)

    # -- encoding -------------------------------------------------------------

    @torch.no_grad()
    def encode(self, wave: torch.Tensor) -> SoundCode:
        """A whole mono waveform (samples,) -> its code, laid out as `decode` takes it for len(wave)
        samples. On the CPU, float32; one pass."""
        samples = int(wave.shape[-1])
        feats = self.stats.normalise(log_features(wave, self.spec))
        if not self.whole_sounds:
            count, hop = segment_layout(self.frames_for(samples), self.frames)
            segments = segment_windows(feats, self.frames, count, hop, self.silence)
            mu, _ = self.model.encode(segments.to(self.device))
            return SoundCode(mu.float().cpu(), None)
        length = feats.shape[-1]
        total = max(sound_length(length), self.path_length(samples) * STRIDE)
        x = torch.full((feats.shape[0], total), self.silence)
        x[:, :length] = feats
        steps = torch.tensor([head_steps(sound_length(length), self.frames)], device=self.device)
        mu_g, _, mu_u, _ = self.model.encode(x[None].to(self.device), steps)
        count = self.path_length(samples)
        return SoundCode(mu_g.float().cpu().expand(count, -1).contiguous(), mu_u[0, :, :count].float().cpu())

    @torch.no_grad()
    def encode_sounds(self, waves: list[torch.Tensor]) -> torch.Tensor:
        """(n, latent) float64: each sound's own latent (the mean of its path)."""
        return torch.stack([self.encode(w).mean() for w in waves])

    # -- decoding -------------------------------------------------------------

    @torch.no_grad()
    def decode(self, path: torch.Tensor, samples: int, detail: torch.Tensor | None = None) -> torch.Tensor:
        """A latent path (count, latent) -> denormalised log features (n_bands, frames_for(samples)),
        float32 on the CPU. `detail`: the local detail to decode with (whole-sound model; None:
        the prior's mean given the path, what a new sound is made of)."""
        frames = self.frames_for(samples)
        if not self.whole_sounds:
            _, hop = segment_layout(frames, self.frames)
            return overlap_add(self._segment_features(path), hop)[:, :frames].cpu()
        steps = path.shape[0]
        u = torch.zeros(1, self.shape.local_dim, steps, device=self.device)
        if detail is not None:
            used = min(steps, detail.shape[-1])
            u[0, :, :used] = detail[:, :used].to(self.device)
        return self._sound_features(path.T[None], u, steps * STRIDE)[0, :, :frames].cpu()

    @torch.no_grad()
    def decode_segments(self, z: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """Latents (n, latent) -> log features (n, n_bands, frames) of the sound each makes over
        the model's head (or segment) length, or `frames` (a multiple of STRIDE; the model of
        whole sounds only), on the CPU: what the sound controls measure."""
        if not self.whole_sounds:
            return self._segment_features(z).cpu()
        frames = self.frames if frames is None else int(frames)
        u = torch.zeros(z.shape[0], self.shape.local_dim, frames // STRIDE, device=self.device)
        return self._sound_features(z, u, frames).cpu()

    def decay_frames(self) -> int:
        """Frames long enough to see how the model's sounds ring out (the decay control is measured
        over them): twice their typical length, at least the head, at most MAX_DECAY_SECONDS."""
        if not self.whole_sounds:
            return self.frames
        seconds = min(MAX_DECAY_SECONDS, 2 * (self.typical_seconds or 0.0))
        frames = math.ceil(seconds * self.spec.sample_rate / self.spec.hop_length / STRIDE) * STRIDE
        return max(self.frames, frames)

    def _segment_features(self, z: torch.Tensor) -> torch.Tensor:
        """Segment model: latents (n, latent) -> log features (n, n_bands, segment), on the device."""
        return self.stats.denormalise(self.model.decode(z.to(self.device))).float()

    def _sound_features(self, z: torch.Tensor, u: torch.Tensor, length: int) -> torch.Tensor:
        """Model of whole sounds: global latents (batch, latent) or paths (batch, latent, steps) and
        local detail u (batch, local_dim, steps) -> log features (batch, n_bands, length), on the device."""
        out = self.model.decode(z.to(self.device), u, self.model.time(z.shape[0], length, device=self.device))
        return self.stats.denormalise(out).float()

    @torch.no_grad()
    def reconstruct(self, wave: torch.Tensor, n_iter: int | None = None) -> torch.Tensor:
        """The model's plain reconstruction of a whole mono waveform, as long as it (what a
        transform with nothing moved makes, before its level match)."""
        iters = self.spec.griffin_lim_iters if n_iter is None else int(n_iter)
        samples = int(wave.shape[-1])
        code = self.encode(wave)
        feats = self.decode(code.path, samples, code.detail)
        return griffin_lim(features_to_power(feats, self.spec), self.spec, iters)[:samples]


def load_trained_model(run_dir: Path, which: str = "best", device: str | torch.device = "cpu") -> TrainedModel:
    run_dir = Path(run_dir)
    path = get_best_checkpoint(run_dir) if which == "best" else get_latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"Run {run_dir.name} has no checkpoint yet; train it for at least one epoch.")
    device = torch.device(device)
    payload = load_checkpoint(path, map_location=device)
    return model_from_payload(payload, device)


def model_from_payload(payload: dict, device: torch.device) -> TrainedModel:
    """A TrainedModel from a checkpoint's payload (either kind of model)."""
    shape, model = build_model(payload["model_shape"])
    model = model.to(device)
    model.load_state_dict(model_state(payload))
    # For making sounds only: without this, a refinement's backward pass (`refine.py`) also works
    # out gradients for every weight, and throws them away (twice the cost).
    model.eval().requires_grad_(False)
    typical = payload.get("typical_seconds")
    return TrainedModel(model, checkpoint_spec(payload), FeatureStats(**payload["feature_stats"]),
                        shape, int(payload["epoch"]), device, float(typical) if typical else None)

"""Training data: every file's log features computed once, kept in one tensor.

All files of a split are concatenated along time into a single "bank" on the
training device. A training example is a window of `frames` columns that lies
inside one file; an epoch draws about one window per segment-length of audio
at random offsets. Windows are gathered from an unfold() view of the bank, so
an epoch's batches cost one indexing op each and nothing is re-read from disk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..audio.features import FeatureSpec, log_features
from ..audio.io import load_mono
from ..model.vae import DOWNSAMPLINGS


@dataclass(frozen=True)
class FeatureStats:
    """Normalisation of log-feature values: (x - mean) / std, from the training files."""
    mean: float
    std: float

    def normalise(self, log_mel_values: torch.Tensor) -> torch.Tensor:
        return (log_mel_values - self.mean) / self.std

    def denormalise(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.std + self.mean


def segment_frames(spec: FeatureSpec, seconds: float) -> int:
    """Frames per training segment, rounded up to what the model can halve 4 times."""
    factor = 2**DOWNSAMPLINGS
    raw = seconds * spec.sample_rate / spec.hop_length
    return max(factor, math.ceil(raw / factor) * factor)


class FeaturesCancelled(Exception):
    """A cancel arrived while the features were being computed."""


def compute_log_features(paths: list[Path], spec: FeatureSpec, should_stop=None) -> list[torch.Tensor]:
    """(n_bands, frames) log features of each file, on the CPU. Checks `should_stop` per file."""
    mels = []
    for path in paths:
        if should_stop is not None and should_stop():
            raise FeaturesCancelled()
        wave = torch.from_numpy(load_mono(path, spec.sample_rate))
        mels.append(log_features(wave, spec))
    return mels


def feature_stats(mels: list[torch.Tensor]) -> FeatureStats:
    values = torch.cat([m.reshape(-1) for m in mels])
    return FeatureStats(mean=float(values.mean()), std=max(float(values.std()), 1e-3))


class SegmentBank:
    """Normalised log features of a set of files, concatenated, on one device."""

    def __init__(self, mels: list[torch.Tensor], stats: FeatureStats, spec: FeatureSpec, frames: int,
                 device: torch.device):
        self.frames = frames
        self.silence = float(stats.normalise(torch.tensor(math.log(spec.log_floor))))
        padded, starts, lengths = [], [], []
        offset = 0
        for mel in mels:
            mel = stats.normalise(mel)
            if mel.shape[1] < frames:  # a one-shot shorter than a segment: pad with silence
                pad = torch.full((mel.shape[0], frames - mel.shape[1]), self.silence)
                mel = torch.cat([mel, pad], dim=1)
            padded.append(mel)
            starts.append(offset)
            lengths.append(mel.shape[1])
            offset += mel.shape[1]
        self.bank = torch.cat(padded, dim=1).to(device) if padded else torch.empty(spec.n_bands, 0, device=device)
        self.windows = self.bank.unfold(1, frames, 1)  # (n_bands, positions, frames), a view
        self.starts = torch.tensor(starts, dtype=torch.long)
        self.spans = torch.tensor([n - frames + 1 for n in lengths], dtype=torch.long)  # valid offsets per file
        self.per_file = [max(1, round(n / frames)) for n in lengths]

    @property
    def file_count(self) -> int:
        return len(self.per_file)

    @property
    def segments_per_epoch(self) -> int:
        return sum(self.per_file)

    def random_positions(self, generator: torch.Generator) -> torch.Tensor:
        """One epoch of window positions: per_file windows per file, random offsets, shuffled."""
        file_idx = torch.repeat_interleave(torch.arange(self.file_count), torch.tensor(self.per_file))
        offsets = (torch.rand(len(file_idx), generator=generator) * self.spans[file_idx]).long()
        positions = self.starts[file_idx] + offsets
        return positions[torch.randperm(len(positions), generator=generator)]

    def fixed_positions(self) -> torch.Tensor:
        """Evenly spaced windows of every file: the same every epoch (for validation)."""
        positions = []
        for start, span, count in zip(self.starts.tolist(), self.spans.tolist(), self.per_file):
            for k in range(count):
                positions.append(start + (span - 1) * k // max(1, count - 1) if count > 1 else start)
        return torch.tensor(positions, dtype=torch.long)

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """(batch, n_bands, frames) windows starting at `positions`."""
        return self.windows[:, positions.to(self.bank.device)].permute(1, 0, 2)


def augment(batch: torch.Tensor, gain_db: float, pitch_bins: int, silence: float, std: float,
            generator: torch.Generator) -> torch.Tensor:
    """Random gain (a shift in log-power) and a small shift along the band axis, per example."""
    b, n_mels, _ = batch.shape
    device = batch.device
    if gain_db > 0:
        db = (torch.rand(b, 1, 1, generator=generator) * 2 - 1) * gain_db
        shift = (db * math.log(10) / 10 / std).to(device)
        batch = torch.maximum(batch + shift, torch.tensor(silence, device=device))
    if pitch_bins > 0:
        k = torch.randint(-pitch_bins, pitch_bins + 1, (b, 1, 1), generator=generator).to(device)
        idx = (torch.arange(n_mels, device=device).view(1, -1, 1) - k).clamp(0, n_mels - 1)
        batch = batch.gather(1, idx.expand(-1, -1, batch.shape[2]))
    return batch

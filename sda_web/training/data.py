"""Training data: every file's log features computed once, kept whole on the training device.

A training example is a whole sound from its start with a tail of silence, or,
for a sound longer than the model's head, a window inside it that knows how
far into the sound it starts (`SoundBank`). Nothing is re-read from disk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..audio.descriptors import decay_seconds, effect_scale, segment_features
from ..audio.features import FeatureSpec, log_features
from ..audio.io import load_mono
from ..model.lengths import STRIDE, head_steps, sound_length
from ..model.sound_vae import ATTRIBUTES
from ..model.stats import FeatureStats


class FeaturesCancelled(Exception):
    """A cancel arrived while the features were being computed."""


def compute_log_features(paths: list[Path], spec: FeatureSpec, should_stop=None) -> list[torch.Tensor]:
    """(n_bands, frames) log features of each file, on the CPU. Checks `should_stop` per file."""
    feats = []
    for path in paths:
        if should_stop is not None and should_stop():
            raise FeaturesCancelled()
        wave = torch.from_numpy(load_mono(path, spec.sample_rate))
        feats.append(log_features(wave, spec))
    return feats


def feature_stats(feats: list[torch.Tensor]) -> FeatureStats:
    values = torch.cat([f.reshape(-1) for f in feats])
    return FeatureStats(mean=float(values.mean()), std=max(float(values.std()), 1e-3))


@dataclass(frozen=True)
class Example:
    file: int
    offset: int  # first frame of the window in its sound (a multiple of STRIDE)
    length: int  # frames, a multiple of STRIDE


@dataclass
class Batch:
    windows: torch.Tensor  # (batch, n_bands, frames), silence-padded to the longest
    offsets: torch.Tensor  # (batch,) start frame of each window in its sound
    head_steps: torch.Tensor  # (batch,) local-latent steps of each sound's head
    heads: torch.Tensor | None  # (k, n_bands, head frames): heads of the windows not at offset 0
    head_index: torch.Tensor | None  # (k,) which windows those are
    attributes: torch.Tensor | None = None  # (batch, len(ATTRIBUTES)) of each window's sound (its head)

    def __len__(self) -> int:
        return self.windows.shape[0]


class SoundBank:
    """Normalised log features of a set of files, each kept whole, on one device.

    A training example is a sound from its start with a tail of silence (a one-shot learns to
    end), or, for a sound longer than `frames`, a window of `frames` inside it; about one window
    per `frames` of sound an epoch, the first always at the start (where the onset is). Batches
    are made of examples of similar length, so a 0.2-s cowbell costs 0.2 s of compute, not the
    longest file's."""

    def __init__(self, feats: list[torch.Tensor], stats: FeatureStats, spec: FeatureSpec, frames: int,
                 device: torch.device):
        self.frames = frames
        self.device = device
        self.silence = float(stats.normalise(torch.tensor(math.log(spec.log_floor))))
        self.n_bands = spec.n_bands
        self.sounds = [stats.normalise(f).to(device) for f in feats]
        self.lengths = [sound_length(f.shape[1]) for f in feats]
        self.head_steps = torch.tensor([head_steps(n, frames) for n in self.lengths], dtype=torch.long)
        self.per_file = [max(1, round(n / frames)) if n > frames else 1 for n in self.lengths]
        self.attributes = head_attributes(feats, spec, frames).to(device)

    @property
    def file_count(self) -> int:
        return len(self.sounds)

    @property
    def segments_per_epoch(self) -> int:
        return sum(self.per_file)

    def random_examples(self, generator: torch.Generator) -> list[Example]:
        """One epoch: every sound from its start; a long one also at random offsets inside it."""
        def offsets(steps: int, count: int) -> list[int]:
            return [0] + (torch.randint(0, steps + 1, (count - 1,), generator=generator) * STRIDE).tolist()
        return self._examples(offsets)

    def fixed_examples(self) -> list[Example]:
        """Every sound from its start, and evenly spaced windows of the long ones (for validation)."""
        return self._examples(lambda steps, count: [(steps * k // max(1, count - 1)) * STRIDE for k in range(count)])

    def _examples(self, offsets) -> list[Example]:
        """A sound that fits the head whole; a longer one as `per_file` head-long windows at
        `offsets(steps, count)` (start frames, multiples of STRIDE, the first 0)."""
        examples = []
        for i, (n, count) in enumerate(zip(self.lengths, self.per_file)):
            if n <= self.frames:
                examples.append(Example(i, 0, n))
                continue
            steps = (n - self.frames) // STRIDE
            examples += [Example(i, int(o), self.frames) for o in offsets(steps, count)]
        return examples

    def batches(self, examples: list[Example], batch_size: int, generator: torch.Generator | None = None
                ) -> list[list[Example]]:
        """Examples grouped by similar length into batches; shuffled (lengths jittered, batch order
        drawn) when a generator is given, else in a fixed order."""
        if generator is None:
            order = sorted(range(len(examples)), key=lambda k: (examples[k].length, k))
        else:
            jitter = (torch.rand(len(examples), generator=generator) * 4 * STRIDE).tolist()
            order = sorted(range(len(examples)), key=lambda k: examples[k].length + jitter[k])
        groups = [[examples[k] for k in order[i:i + batch_size]] for i in range(0, len(order), batch_size)]
        if generator is not None:
            groups = [groups[k] for k in torch.randperm(len(groups), generator=generator).tolist()]
        return groups

    def window(self, file: int, offset: int, length: int) -> torch.Tensor:
        """(n_bands, length) frames of sound `file` from `offset`, silence past its end."""
        sound = self.sounds[file]
        part = sound[:, offset:offset + length]
        if part.shape[1] == length:
            return part
        pad = torch.full((self.n_bands, length - part.shape[1]), self.silence, device=self.device)
        return torch.cat([part, pad], dim=1)

    def collate(self, examples: list[Example]) -> Batch:
        length = max(e.length for e in examples)
        windows = torch.stack([self.window(e.file, e.offset, length) for e in examples])
        offsets = torch.tensor([e.offset for e in examples], dtype=torch.long)
        head_steps = self.head_steps[[e.file for e in examples]]
        later = [k for k, e in enumerate(examples) if e.offset > 0]
        heads = head_index = None
        if later:
            heads = torch.stack([self.window(examples[k].file, 0, self.frames) for k in later])
            head_index = torch.tensor(later, dtype=torch.long)
        return Batch(windows, offsets.to(self.device), head_steps.to(self.device), heads,
                     head_index.to(self.device) if head_index is not None else None,
                     self.attributes[[e.file for e in examples]])


def head_attributes(feats: list[torch.Tensor], spec: FeatureSpec, frames: int) -> torch.Tensor:
    """(files, len(ATTRIBUTES)) descriptors of each sound's head (its first `frames` frames, silence
    after its end; its decay from the whole sound), on the scale their effect is told in: what the
    regularised latent dimensions keep in order. Float32; computed once, in chunks (a 500-file set
    is not one tensor)."""
    floor = math.log(spec.log_floor)
    rows = []
    for start in range(0, len(feats), 64):
        heads = torch.stack([torch.cat([f[:, :frames], torch.full((f.shape[0], max(0, frames - f.shape[1])), floor)], 1)
                             for f in feats[start:start + 64]])
        measured = segment_features(heads, spec)
        # decay over the whole sound: a cymbal rings on past its head, and a head-long window made
        # every long sound look alike to the decay dimension
        measured["decay"] = torch.cat([decay_seconds(f[None], spec) for f in feats[start:start + 64]])
        rows.append(torch.stack([effect_scale(name, measured[name]) for name in ATTRIBUTES], dim=1))
    return torch.cat(rows).float() if rows else torch.zeros(0, len(ATTRIBUTES))


def augment(batch: torch.Tensor, gain_db: float, band_shift: int, silence: float, std: float,
            generator: torch.Generator) -> torch.Tensor:
    """Random gain (a shift in log-power) and a small shift along the band axis, per example."""
    gain, shift = draw_augmentation(batch.shape[0], gain_db, band_shift, generator)
    return apply_augmentation(batch, gain, shift, silence, std)


def augment_batch(batch: Batch, gain_db: float, band_shift: int, silence: float, std: float,
                  generator: torch.Generator) -> Batch:
    """`augment` on a batch's windows, and the very same gain and shift on their heads."""
    gain, shift = draw_augmentation(len(batch), gain_db, band_shift, generator)
    windows = apply_augmentation(batch.windows, gain, shift, silence, std)
    attributes = batch.attributes
    if attributes is not None:  # a gain of g dB makes the sound g dB louder
        attributes = attributes.clone()
        attributes[:, ATTRIBUTES.index("loudness")] += gain.to(attributes)
    heads = batch.heads
    if heads is not None:
        pick = batch.head_index.cpu()
        heads = apply_augmentation(heads, gain[pick], shift[pick], silence, std)
    return Batch(windows, batch.offsets, batch.head_steps, heads, batch.head_index, attributes)


def draw_augmentation(count: int, gain_db: float, band_shift: int, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: a gain in dB within +-gain_db and a band shift within +-band_shift."""
    gain = (torch.rand(count, generator=generator) * 2 - 1) * gain_db if gain_db > 0 else torch.zeros(count)
    shift = (torch.randint(-band_shift, band_shift + 1, (count,), generator=generator) if band_shift > 0
             else torch.zeros(count, dtype=torch.long))
    return gain, shift


def apply_augmentation(batch: torch.Tensor, gain_db: torch.Tensor, shift: torch.Tensor, silence: float,
                       std: float) -> torch.Tensor:
    b, n_bands, _ = batch.shape
    device = batch.device
    if bool((gain_db != 0).any()):
        offset = (gain_db.view(b, 1, 1) * math.log(10) / 10 / std).to(device)
        batch = torch.maximum(batch + offset, torch.tensor(silence, device=device))
    if bool((shift != 0).any()):
        idx = (torch.arange(n_bands, device=device).view(1, -1, 1) - shift.view(b, 1, 1).to(device)).clamp(0, n_bands - 1)
        batch = batch.gather(1, idx.expand(-1, -1, batch.shape[2]))
    return batch

"""Descriptors of a sound from its band log features, each a textbook measure a musician reads.

For a batch of (n_bands, frames) log-feature segments, per segment:

  brightness  spectral centroid (Hz) of the band energies
  loudness    RMS level (dB) from the band energies
  noisiness   spectral flatness of the band power (energy-weighted over frames)
  pitch       frequency of the strongest band (energy-weighted, in octaves)
  attack      positive spectral flux: how much and how often energy rises (dB/s)
  decay       time from the top of the sound until the energy stays 40 dB below its
              peak (s; a segment that does not get there counts its length from the top)

The sound controls name their sliders with these (measured on what the decoder
makes), and training keeps some of them in order along latent dimensions.
"""
from __future__ import annotations

import math

import torch

from .features import ENERGY_PER_MEAN_SQUARE, FeatureSpec, band_centres_hz, band_energy

DECAY_DB = 40.0  # decay: how far below its peak the energy falls


def segment_features(log_feats: torch.Tensor, spec: FeatureSpec) -> dict[str, torch.Tensor]:
    """Audio features of each (n_bands, frames) log-feature segment in a batch (n, n_bands, frames)."""
    centres = band_centres_hz(spec)
    lm = log_feats.double()
    density = lm.exp()  # power density per band
    band_power = band_energy(log_feats, spec)  # (n, bands, frames): each band's share of the frame's power
    frame_energy = band_power.sum(dim=1)  # (n, frames)
    total = frame_energy.sum(dim=1).clamp(min=1e-30)
    frame_weight = frame_energy / total[:, None]

    brightness = (band_power * centres[None, :, None]).sum(dim=(1, 2)) / total
    rms_power = frame_energy.mean(dim=1) / ENERGY_PER_MEAN_SQUARE
    loudness = 10 * torch.log10(rms_power.clamp(min=1e-12))
    flatness_per_frame = lm.mean(dim=1).exp() / density.mean(dim=1).clamp(min=1e-30)
    noisiness = (flatness_per_frame * frame_weight).sum(dim=1)
    peak_octave = torch.log2(centres[density.argmax(dim=1)].clamp(min=1.0))  # (n, frames)
    pitch = torch.exp2((peak_octave * frame_weight).sum(dim=1))
    rise_db = (lm[:, :, 1:] - lm[:, :, :-1]).clamp(min=0).mean(dim=1) * (10 / math.log(10))  # (n, frames - 1)
    seconds = log_feats.shape[-1] * spec.hop_length / spec.sample_rate
    attack = rise_db.sum(dim=1) / seconds
    return {"brightness": brightness, "loudness": loudness, "noisiness": noisiness, "pitch": pitch, "attack": attack,
            "decay": _decay_seconds(frame_energy, spec)}


def decay_seconds(log_feats: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Just the decay of each (n_bands, frames) segment of a batch (as `segment_features` has it)."""
    return _decay_seconds(band_energy(log_feats, spec).sum(dim=1), spec)


def _decay_seconds(frame_energy: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """(n, frames) energies -> (n,) seconds from the top of the sound (its first frame within 3 dB
    of the loudest, so a steady tone's top is where it starts, not wherever it peaks by a hair) to
    where the energy falls DECAY_DB below the loudest for the last time: the textbook "time to
    fall 40 dB"."""
    level = 10 * torch.log10(frame_energy.clamp(min=1e-30))
    peak_db = level.amax(dim=1)
    peak = (level >= peak_db[:, None] - 3.0).float().argmax(dim=1)  # the first such frame
    index = torch.arange(level.shape[1], device=level.device)[None, :]
    threshold = peak_db - DECAY_DB
    ringing = (level >= threshold[:, None]) & (index >= peak[:, None])
    last = torch.where(ringing, index, peak[:, None]).amax(dim=1)
    # Where it crosses the threshold between two frames, linearly in dB (half a frame when it never
    # does in the window): a decay slider moves a short hit's decay by fractions of a frame, which
    # whole frames turned into ties and steps.
    after = (last + 1).clamp(max=level.shape[1] - 1)
    above, below = level.gather(1, last[:, None])[:, 0], level.gather(1, after[:, None])[:, 0]
    crossing = ((above - threshold) / (above - below).clamp(min=1e-9)).clamp(0.0, 1.0)
    fraction = torch.where(after > last, crossing, torch.full_like(crossing, 0.5))
    return ((last - peak).double() + 0.5 + fraction.double()) * spec.hop_length / spec.sample_rate


def effect_scale(name: str, values: torch.Tensor) -> torch.Tensor:
    """Features on the scale their effect is told in: octaves for pitch, dB for flatness, octaves of
    duration for decay."""
    if name == "pitch":
        return torch.log2(values.clamp(min=1.0))
    if name == "noisiness":
        return 10 * torch.log10(values.clamp(min=1e-6))
    if name == "decay":
        return torch.log2(values.clamp(min=1e-3))
    return values

"""The segment model's way of laying out a long sound (models trained before whole sounds).

Those models know one fixed-length segment; a longer sound is a chain of
segments at half-segment hops, crossfaded as band power with sin^2 / cos^2
ramps that sum to one. Kept so that old models still generate and transform.
"""
from __future__ import annotations

import math

import torch


SEGMENT_HALVINGS = 4  # the segment model halves its segment 4 times: lengths are multiples of 16


def segment_frames(spec, seconds: float) -> int:
    """Frames of a segment model's segment of `seconds`, rounded up to a multiple of 16."""
    factor = 2**SEGMENT_HALVINGS
    raw = seconds * spec.sample_rate / spec.hop_length
    return max(factor, math.ceil(raw / factor) * factor)


def segment_layout(frames_needed: int, segment: int) -> tuple[int, int]:
    """(segments, hop in frames) covering `frames_needed` frames at half-segment hops."""
    hop = segment // 2
    if frames_needed <= segment:
        return 1, hop
    return math.ceil((frames_needed - segment) / hop) + 1, hop


def overlap_add(segments: torch.Tensor, hop: int) -> torch.Tensor:
    """(count, n_bands, frames) log-feature segments at `hop` -> (n_bands, (count - 1) * hop + frames) log features,
    crossfaded as power with sin^2 / cos^2 ramps over each overlap (they sum to one)."""
    count, n_bands, frames = segments.shape
    if count == 1:
        return segments[0]
    overlap = frames - hop
    device = segments.device
    ramp = torch.sin(0.5 * math.pi * (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap).square().float()
    ramp = ramp.to(device)
    total = (count - 1) * hop + frames
    power = torch.zeros(n_bands, total, device=device)
    power_segments = torch.exp(segments.clamp(max=30.0))
    for k in range(count):
        weight = torch.ones(frames, device=device)
        if k > 0:
            weight[:overlap] = ramp
        if k < count - 1:
            weight[frames - overlap:] = weight[frames - overlap:] * (1 - ramp)
        power[:, k * hop:k * hop + frames] += power_segments[k] * weight
    return torch.log(power.clamp(min=1e-30))


def window(feats: torch.Tensor, start: int, frames: int, silence: float) -> torch.Tensor:
    """(n_bands, frames) of a sound's (n_bands, T) features from frame `start`, padded with
    `silence` past its end (as in training): the one way a sound is cut into model inputs."""
    part = feats[:, start:start + frames]
    if part.shape[1] < frames:
        part = torch.cat([part, torch.full((feats.shape[0], frames - part.shape[1]), silence, dtype=feats.dtype)], dim=1)
    return part


def segment_windows(feats: torch.Tensor, segment: int, count: int, hop: int, silence: float) -> torch.Tensor:
    """(n_bands, T) normalised features -> (count, n_bands, segment) windows at `hop`."""
    return torch.stack([window(feats, k * hop, segment, silence) for k in range(count)])

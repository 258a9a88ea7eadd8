"""How long the model of whole sounds takes a sound to be, in feature frames.

One place for the length rules that training (the bank's examples) and
encoding (a transform, the analysis) must agree on. Plain arithmetic: no torch.
"""
from __future__ import annotations

import math

STRIDE = 4  # frames per local latent: two halvings


def padded_length(frames: int) -> int:
    """Frames rounded up to what the network halves twice."""
    return max(STRIDE, math.ceil(frames / STRIDE) * STRIDE)


def head_frames(spec, seconds: float) -> int:
    """Frames of a sound's head (what the global latent sees, and the longest training window),
    rounded up to what the model halves twice. `spec`: the run's FeatureSpec."""
    return padded_length(math.ceil(seconds * spec.sample_rate / spec.hop_length))


def tail_frames(frames: int) -> int:
    """Silence after a sound in training (a quarter of it, 8 to 24 frames, about 0.1-0.28 s): it
    learns to end. Capped: a 12-s sound would otherwise add 3 s of silence to every epoch."""
    return max(8, min(frames // 4, 24))


def sound_length(frames: int) -> int:
    """The frames a sound of `frames` is learnt (and encoded) as: itself, its tail of silence,
    rounded up to what the model halves twice."""
    return padded_length(frames + tail_frames(frames))


def head_steps(length: int, head: int) -> int:
    """Local-latent steps the global latent pools over, for a sound of `length` frames
    (`sound_length`) and a model head of `head` frames."""
    return min(length, head) // STRIDE

"""Starting from a sound: put a user's own sound through the model, or morph between two.

Transform: the sound is encoded whole (`TrainedModel.encode`): its global
latent along a path exactly as long as the sound, and, for the model of whole
sounds, its local detail, which is kept as it is; the global latent is then refined
by a gradient step towards the sound (`refine.py`). The sliders move the whole path (each in
standard deviations of its component, as in generation) and the seeded variation wanders around
it (the same keys `synth.latent_path` draws, so seed and variation amount mean what they mean on
the Generate tab), decoded with the source's own detail; what the sliders change in the model's
own version of the sound (decoded from the path alone) is added to that, in log power, and
`synth.render_features` turns the result back into audio. With no control moved and variation 0
it is the model's plain reconstruction. Its level is the sound's own: one gain per sound (not the
model's make-up gain, which is set for decoded mean latents) scales the band
power of the plain reconstruction to that of the sound, so a model that
speaks softly does not hand back a whisper; the sliders and the wander change
the level from there, as they do in generation (the loudness slider as a plain gain).

Morph: a new sound (of any duration) that starts between two sounds, either of
which may be outside the dataset: each is encoded to the mean of its path, and
the centre is their slerp about the dataset mean, exactly as a blend of two
dataset files (`synth.latent_path`) is.

The same input, model and settings give the same samples, bit for bit (same
machine and thread count).
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..audio.features import features_to_power, log_features
from ..audio.io import AudioRejected, inspect_audio, load_mono
from .analysis import LatentAnalysis, level_gain, ring_ratio
from .loading import TrainedModel
from .refine import refine_code
from .settings import MAX_DURATION_S, MAX_SOURCE_S, GenerationSettings
from .synth import _finish, latent_path, makeup_gain, render_features, render_latents, slerp

MIN_GAIN, MAX_GAIN = 0.01, 100.0  # the level match never moves a sound by more than 40 dB


def load_source(path: Path, sample_rate: int, max_seconds: float = MAX_SOURCE_S) -> np.ndarray:
    """A sound file as float32 mono at `sample_rate`. AudioRejected (the importer's one-sentence
    reasons) for a file that is unreadable, empty, silent, ..., or longer than `max_seconds`."""
    info = inspect_audio(path)
    if info.duration_s > max_seconds:
        raise AudioRejected(f"It is {info.duration_s:.1f} s long; a sound to start from can be at most "
                            f"{max_seconds:g} s, so trim it first.")
    return np.ascontiguousarray(load_mono(path, sample_rate), dtype=np.float32)


@torch.no_grad()
def transform_variation(model: TrainedModel, analysis: LatentAnalysis | None, wave: np.ndarray,
                        settings: GenerationSettings, index: int) -> np.ndarray:
    """Variation `index` (0-based) of `wave` (float32 mono at the model's rate) re-synthesised
    with validated `settings` (its controls, variation amount and seed; duration and blend are
    not used): as many samples as `wave`, or more where a decay control asks it to ring longer
    (`ring_ratio`: room after the sound, so the longer tail is not cut where the file ends)."""
    wave = np.asarray(wave, dtype=np.float32)
    limit = int(MAX_DURATION_S * model.spec.sample_rate)
    room = min(int(len(wave) * (ring_ratio(analysis, settings.controls) - 1.0)), max(0, limit - len(wave)))
    if room > 0:
        wave = np.concatenate([wave, np.zeros(room, np.float32)])
    samples = len(wave)
    source = torch.from_numpy(wave)
    code = refine_code(model, source, model.encode(source))
    encoded = code.path.double()  # (count, latent)
    moves = _moves(model, analysis, settings, index, len(encoded))
    plain = model.decode(code.path, samples, code.detail)
    if code.detail is None:  # a segment model: the path is all there is
        feats = model.decode((encoded + torch.from_numpy(moves)).float(), samples)
    else:
        wander = _moves(model, analysis, replace(settings, controls={}), index, len(encoded))
        z = (encoded + torch.from_numpy(wander)).float()
        feats = model.decode(z, samples, code.detail) if wander.any() else plain
        sliders = torch.from_numpy(moves - wander).float()
        if sliders.any():
            # A slider changes the sound by what it changes in the model's own version of it
            # (decoded from the path alone). Moved in z under the source's kept detail, a decay or a
            # pitch stayed where the detail held it: on Millo the decay slider made transforms
            # x1.08 longer over -2..+2 that way, x1.50 this way (stop 25). The wander keeps the
            # detail, so a variation amount keeps its meaning.
            feats = feats + (model.decode(z + sliders, samples) - model.decode(z, samples))
    out = render_features(model, feats, samples, settings.gl_iters)
    gain = _level_gain(model, wave, plain) * level_gain(analysis, settings.controls)
    return _finish(out * np.float32(gain), samples, model.spec.sample_rate)


@torch.no_grad()
def source_latent(model: TrainedModel, wave: np.ndarray) -> np.ndarray:
    """The mean posterior latent of a whole sound (float64, latent_dim): where a morph starts from."""
    return model.encode(torch.from_numpy(np.asarray(wave, dtype=np.float32))).mean().numpy()


@torch.no_grad()
def morph_variation(model: TrainedModel, analysis: LatentAnalysis | None, settings: GenerationSettings, index: int,
                    latent_a: np.ndarray, latent_b: np.ndarray, amount: float) -> np.ndarray:
    """Variation `index` of a new sound `settings.duration_s` long that starts between two sounds'
    mean latents (`amount` 0 = a, 1 = b), moved by the controls and wandering as in generation."""
    spec = model.spec
    samples = int(round(settings.duration_s * spec.sample_rate))
    count = model.path_length(samples)
    mean = np.asarray(analysis.mean, dtype=np.float64) if analysis is not None else np.zeros(model.latent_dim)
    centre = mean + slerp(np.asarray(latent_a, np.float64) - mean, np.asarray(latent_b, np.float64) - mean,
                          float(amount))
    z = torch.from_numpy((centre + _moves(model, analysis, settings, index, count)).astype(np.float32))
    out = render_latents(model, z, samples, settings.gl_iters)
    gain = makeup_gain(model, analysis) * level_gain(analysis, settings.controls)
    return _finish(out * np.float32(gain), samples, spec.sample_rate)


def _level_gain(model: TrainedModel, wave: np.ndarray, plain: torch.Tensor) -> float:
    """Amplitude gain that brings the power of the plain reconstruction (its log features
    `plain`) to the sound's own (within MIN_GAIN..MAX_GAIN)."""
    # Power in STFT bins, not summed band densities: a sum over bands would weigh a 1-bin band at
    # 100 Hz as much as a 32-bin band at 15 kHz (on short claps it overshot by 10 dB).
    target = float(features_to_power(log_features(torch.from_numpy(wave), model.spec), model.spec).double().sum())
    made = float(features_to_power(plain, model.spec).double().sum())
    if not (made > 0 and target > 0 and math.isfinite(made) and math.isfinite(target)):
        return 1.0
    return float(min(MAX_GAIN, max(MIN_GAIN, math.sqrt(target / made))))


def _moves(model: TrainedModel, analysis: LatentAnalysis | None, settings: GenerationSettings, index: int,
           count: int) -> np.ndarray:
    """(count, latent) float64 offsets: the sliders plus the seeded wander, as `latent_path` draws
    them about a centre of zero (exactly zero with no slider moved and variation 0)."""
    if settings.variation_amount == 0 and not any(settings.controls.values()):
        return np.zeros((count, model.latent_dim))
    about_zero = replace(analysis, mean=(0.0,) * analysis.latent_dim) if analysis is not None else None
    return latent_path(model, about_zero, replace(settings, blend=None), index, count).astype(np.float64)

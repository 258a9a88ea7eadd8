"""New sounds from a trained model: a latent path, decoded and turned into one waveform.

1. Where to start: the dataset's mean latent, or a blend of two of its files
   (slerp of their latents about the dataset mean), moved by the sliders
   (each in standard deviations of its component's scores).
2. How much to wander: every variation draws "key" offsets from the dataset's
   own latent distribution (its PCA, each component at its own spread) times
   the variation amount, one key every KEY_SECONDS (about 2 s), eased between
   keys by a norm-preserving slerp, so long sounds drift slowly. For the model
   of whole sounds the first key holds for the first KEY_SECONDS: a one-shot
   is one sound, not a sound that changes its mind half way.
3. Decoding (`TrainedModel.decode`): the model of whole sounds decodes the
   whole path in one pass, its local detail drawn at the prior's mean given the
   path and the time since the onset, so a variation starts with one onset and
   decays as the material does; a segment model (earlier runs) decodes
   segments at half-segment hops crossfaded as band power.
4. One Griffin-Lim pass over the whole spectrogram (`audio.inverse`).

Randomness comes only from numpy's PCG64 seeded with (seed, variation index):
the same parameters give the same samples, bit for bit, on the same machine,
and variation i does not depend on how many variations were asked for.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..audio.features import features_to_power
from ..audio.inverse import features_to_wave, griffin_lim
from .analysis import AnalysisError, LatentAnalysis, level_gain
from .loading import TrainedModel
from .settings import GENERATION_GL_ITERS, Blend, GenerationSettings

# Output never peaks above PEAK_LIMIT. Above PEAK_KNEE the peak is eased towards it (tanh), not
# cut at it: a hard cut made every level past full scale the same sound, so the loudness slider
# stopped at the top (on ForzeeStereo its +1 and +2 came out alike, rho 0.88); eased, louder
# stays louder. One gain for the whole sound: the waveform's shape is untouched.
PEAK_LIMIT = 0.98
PEAK_KNEE = 0.5
# Make-up gain, one per model: the dataset's own sounds (decoded from their
# mean latents) are scaled to peak at REFERENCE_PEAK (-6 dBFS) on median. A
# model of short decaying sounds otherwise speaks at -40..-16 dBFS. It is a
# fixed gain per model, so the loudness control (a gain of its own,
# `analysis.level_gain`) and the level differences between requests survive;
# it only ever boosts, by at most MAX_MAKEUP (+40 dB).
REFERENCE_PEAK = 0.5
REFERENCE_FILES = 6
MAX_MAKEUP = 100.0
FADE_IN_S, FADE_OUT_S = 0.002, 0.010  # the first and last samples start and end at zero
KEY_SECONDS = 2.0  # between key latents of a wandering path
# A whole-sound model decodes a drawn latent with its local detail at the prior's mean, which
# narrows the variety a given latent spread makes: at the dataset's own spread (1.0) 40 drawn
# Millo variations were a Fréchet distance of 183 from the real files, at 1.25x 105, 1.5x 97,
# 2x 242. Its wander is drawn at 1.4x, so "1 = as varied as your sounds" holds in sound.
WHOLE_SOUND_SPREAD = 1.4

Progress = Callable[[int, int], None]


@dataclass
class SynthTimings:
    """Where generation time goes (seconds, summed over variations)."""
    model_s: float = 0.0  # latent path + decoding
    band_inverse_s: float = 0.0  # band log power -> linear STFT power
    griffin_lim_s: float = 0.0
    audio_s: float = 0.0  # seconds of audio made

    @property
    def total_s(self) -> float:
        return self.model_s + self.band_inverse_s + self.griffin_lim_s

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.total_s if self.total_s > 0 else math.inf


def generate(model: TrainedModel, analysis: LatentAnalysis | None, *, seed: int, variations: int = 1,
             duration_s: float | None = None, controls: dict[str, float] | None = None, variation_amount: float = 1.0,
             blend: Blend | tuple[str, str, float] | None = None, gl_iters: int = GENERATION_GL_ITERS,
             progress: Progress | None = None, timings: SynthTimings | None = None) -> list[np.ndarray]:
    """`variations` float32 mono waves at model.spec.sample_rate, each round(duration_s * rate) long
    (duration_s None: the model's own default, `TrainedModel.default_seconds`)."""
    duration_s = model.default_seconds() if duration_s is None else duration_s
    if blend is not None and not isinstance(blend, Blend):
        blend = Blend(*blend)
    settings = GenerationSettings(seed=seed, variations=variations, duration_s=duration_s,
                                  controls=dict(controls or {}), variation_amount=variation_amount, blend=blend,
                                  gl_iters=gl_iters).validated(analysis)
    waves = []
    makeup_gain(model, analysis)  # once per model, before any timing
    for index in range(settings.variations):
        waves.append(generate_variation(model, analysis, settings, index, timings))
        if progress:
            progress(index + 1, settings.variations)
    return waves


@torch.no_grad()
def generate_variation(model: TrainedModel, analysis: LatentAnalysis | None, settings: GenerationSettings,
                       index: int, timings: SynthTimings | None = None) -> np.ndarray:
    """Variation `index` (0-based) of validated `settings`."""
    timings = timings if timings is not None else SynthTimings()
    spec = model.spec
    samples = int(round(settings.duration_s * spec.sample_rate))
    t0 = time.perf_counter()
    z = torch.from_numpy(latent_path(model, analysis, settings, index, model.path_length(samples)))
    timings.model_s += time.perf_counter() - t0
    wave = render_latents(model, z, samples, settings.gl_iters, timings)
    gain = makeup_gain(model, analysis) * level_gain(analysis, settings.controls)
    return _finish(wave * np.float32(gain), samples, spec.sample_rate)


@torch.no_grad()
def render_latents(model: TrainedModel, z: torch.Tensor, samples: int, gl_iters: int,
                   timings: SynthTimings | None = None, detail: torch.Tensor | None = None) -> np.ndarray:
    """Latents -> sound: a (model.path_length(samples), latent_dim) path decoded (with the local
    `detail` of a sound being transformed, if any), inverted and trimmed to `samples` float32
    samples at the model's rate; before make-up gain and fades. Generation and morph come through
    here, a transform through `render_features`."""
    timings = timings if timings is not None else SynthTimings()
    t0 = time.perf_counter()
    log_feats = model.decode(z, samples, detail)
    timings.model_s += _synced(model.device) - t0
    return render_features(model, log_feats, samples, gl_iters, timings)


@torch.no_grad()
def render_features(model: TrainedModel, log_feats: torch.Tensor, samples: int, gl_iters: int,
                    timings: SynthTimings | None = None) -> np.ndarray:
    """Decoded log features (n_bands, frames) -> `samples` float32 samples at the model's rate,
    before make-up gain and fades."""
    timings = timings if timings is not None else SynthTimings()
    spec = model.spec
    t1 = time.perf_counter()
    power = features_to_power(log_feats, spec)
    t2 = _synced(model.device)
    wave = griffin_lim(power, spec, gl_iters)[:samples].cpu().numpy().astype(np.float32)
    t3 = time.perf_counter()
    timings.band_inverse_s += t2 - t1
    timings.griffin_lim_s += t3 - t2
    timings.audio_s += samples / spec.sample_rate
    return wave


@torch.no_grad()
def makeup_gain(model: TrainedModel, analysis: LatentAnalysis | None) -> float:
    """The model's fixed make-up gain (computed once per model and analysis, kept on the model)."""
    key = analysis is not None
    cached = model.makeup_gains.get(key)
    if cached is not None:
        return cached
    if analysis is not None and analysis.file_latents:
        names = sorted(analysis.file_latents)[:REFERENCE_FILES]
        latents = np.asarray([analysis.file_latents[n] for n in names], dtype=np.float32)
    else:
        latents = np.zeros((1, model.latent_dim), np.float32)
    log_feats = model.decode_segments(torch.from_numpy(latents))
    peaks = [float(wave.abs().max()) for wave in features_to_wave(log_feats, model.spec, GENERATION_GL_ITERS)]
    peak = float(np.median(peaks))
    gain = float(min(MAX_MAKEUP, max(1.0, REFERENCE_PEAK / peak))) if peak > 0 else 1.0
    model.makeup_gains[key] = gain
    return gain


def latent_path(model: TrainedModel, analysis: LatentAnalysis | None, settings: GenerationSettings, index: int,
                count: int) -> np.ndarray:
    """(count, latent_dim) float32 latents, one per step of the model's path."""
    latent_dim = model.latent_dim
    if analysis is None:  # no analysis: the prior's centre, wandering by the prior
        mean = np.zeros(latent_dim)
        basis, spread = np.eye(latent_dim), np.ones(latent_dim)
    else:
        if analysis.latent_dim != latent_dim:
            raise AnalysisError("The sound-control analysis belongs to another model; analyse this model again.")
        mean = np.asarray(analysis.mean, dtype=np.float64)
        basis = np.asarray(analysis.basis, dtype=np.float64).reshape(-1, latent_dim)
        spread = np.asarray(analysis.basis_std, dtype=np.float64)

    centre = mean.copy()
    if settings.blend is not None:
        a = np.asarray(analysis.file_latents[settings.blend.file_a], dtype=np.float64) - mean
        b = np.asarray(analysis.file_latents[settings.blend.file_b], dtype=np.float64) - mean
        centre = mean + slerp(a, b, float(settings.blend.amount))
    for label, value in sorted(settings.controls.items()):  # sorted: the same sum whatever the dict order
        control = analysis.control(label)
        centre = centre + float(value) * control.std * np.asarray(control.direction, dtype=np.float64)

    amount = settings.variation_amount * (WHOLE_SOUND_SPREAD if model.whole_sounds else 1.0)
    spacing = max(1, round(KEY_SECONDS / model.path_step_seconds))  # path steps between keys
    hold = spacing if model.whole_sounds else 0  # the first key holds for a whole-sound model
    keys_needed = max(0, count - 1 - hold) // spacing + 2
    rng = np.random.default_rng([int(settings.seed), int(index)])
    keys = rng.standard_normal((keys_needed, len(spread)))  # row j is the same whatever keys_needed is
    path = np.empty((count, latent_dim))
    for k in range(count):
        j, u = divmod(max(0, k - hold), spacing)
        eased = _smoothstep(u / spacing)
        noise = slerp(keys[j], keys[j + 1], eased)
        path[k] = centre + amount * (noise * spread) @ basis
    return path.astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation of vectors (their lengths interpolated linearly)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < 1e-12 or nb < 1e-12:
        return (1 - t) * a + t * b
    ua, ub = a / na, b / nb
    omega = math.acos(max(-1.0, min(1.0, float(ua @ ub))))
    if omega < 1e-6:
        direction = ua
    elif math.pi - omega < 1e-6:  # opposite: any path is as good; go straight through
        return (1 - t) * a + t * b
    else:
        direction = (math.sin((1 - t) * omega) * ua + math.sin(t * omega) * ub) / math.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def _synced(device: torch.device) -> float:
    """perf_counter() once the device has finished its queued work (for honest timings)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _smoothstep(u: float) -> float:
    return u * u * (3 - 2 * u)


def _finish(wave: np.ndarray, samples: int, rate: int) -> np.ndarray:
    if len(wave) < samples:
        wave = np.pad(wave, (0, samples - len(wave)))
    wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
    fade_in = min(samples // 4, max(1, int(FADE_IN_S * rate)))
    fade_out = min(samples // 4, max(1, int(FADE_OUT_S * rate)))
    wave[:fade_in] *= np.linspace(0.0, 1.0, fade_in, endpoint=False, dtype=np.float32)
    wave[samples - fade_out:] *= np.linspace(1.0, 0.0, fade_out, dtype=np.float32)
    peak = float(np.abs(wave).max()) if samples else 0.0
    if peak > PEAK_KNEE:
        wave = wave * np.float32(eased_peak(peak) / peak)
    return wave.astype(np.float32, copy=False)


def eased_peak(peak: float) -> float:
    """The peak a sound of `peak` is given: itself up to PEAK_KNEE, then rising ever more slowly
    towards PEAK_LIMIT (continuous, with slope 1 at the knee, and always increasing)."""
    if peak <= PEAK_KNEE:
        return peak
    room = PEAK_LIMIT - PEAK_KNEE
    return PEAK_KNEE + room * math.tanh((peak - PEAK_KNEE) / room)

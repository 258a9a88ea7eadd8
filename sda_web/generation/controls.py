"""Sound controls: the directions in a model's latent space that matter for its
own material, named after the audio feature each one moves.

After training, every file of the run's dataset is encoded to its global
latent (the model of whole sounds: one point per sound, plus later windows of
long sounds when the set has few files; a segment model of earlier runs:
segments at half-segment hops, at most 32 per file). PCA of
those latents gives the directions along which the dataset actually varies; the
components that explain a meaningful share of the variance (>= 5%, at least 2,
at most 8) become sliders. Each is named by what it does to the sound the
*decoder* makes, since that is what a musician hears: from the mean latents of
up to 8 of the dataset's files, the component is swept through -2..+2 (its
score's standard deviations), every point decoded, and the descriptors of
`audio/descriptors.py` (brightness, loudness, noisiness, pitch, attack, decay)
measured on the decoded log spectrum.

Before the components, each feature gets a direction of its own, so that the
controls a musician reaches for first do not depend on what PCA happened to
find (on one CPU a tiny model's components got brightness, on another none): the
latent dimension training kept in the feature's order (brightness, loudness,
decay and pitch: `training` adds Pati and Lerch's attribute term), else the
direction along which the encoded sounds covary with the feature (an attribute
vector). It becomes a slider named after the feature where the decoder agrees:
swept like a component, the decoded sound's feature rises with Spearman rho >=
0.9 from at least half the starting points and for the averaged response,
and >= 0.65 on average over them; in the order
brightness, decay, pitch, attack, noisiness, and never within a cosine of 0.9
of one kept already. Each but decay carries a loudness-matching gain (the level
change the sweep measured along it, undone), so "brighter" is not also "quieter".

Loudness is not a latent direction but the output level: +1 is the spread of the dataset's
own levels (one standard deviation of their RMS in dB, within 4-6 dB), applied as gain to the
sound the decoder makes. Every model gets it, it moves nothing but the level, and it is exact
(the latent dimension training keeps in loudness order moved Millo's level by 5.3 dB over -2..+2
with rho 0.86, and its brightness with rho 0.70: a harder hit's timbre, not a level). That
dimension stays in the model, so the texture sliders can still reach a harder hit's timbre.

Then the PCA of what those directions leave (the texture sliders span the rest
of the variety): a component takes the name of a feature not yet taken only
where the response is monotone: Spearman rho >= 0.9 between slider value and feature,
averaged over the starting points; pairs strongest first, each feature once,
otherwise it stays "texture N". Signs are flipped so that "+" raises the
feature, and the mean change per +1 is kept in human units ("+1 ≈ +3.1 dB"). A
slider value is in standard deviations of the dataset's scores along the
direction, 0 = dataset mean, range +-3; at most 8 sliders in all.

The result is plain data (`LatentAnalysis`), stored as analysis.json in the run
folder next to the checkpoints it was computed from.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..audio.descriptors import decay_seconds, effect_scale, segment_features
from ..audio.features import FeatureSpec, log_features
from ..audio.io import AudioRejected, load_mono
from ..datasets import DatasetError, load_dataset
from ..storage import read_json
from .analysis import FEATURE_UNITS, FEATURES, AnalysisError, Control, LatentAnalysis, load_analysis, save_analysis
from .loading import TrainedModel, load_trained_model
from .segments import window

MIN_EXPLAINED = 0.05  # a component must explain at least this share of the variance...
MIN_CONTROLS, MAX_CONTROLS = 2, 8  # ...but we keep at least 2 and at most 8
MIN_MONOTONE_RHO = 0.9  # a component is named only if the decoded sound's feature follows it this monotonically
# Features that get a direction of their own, in the order they are kept (what a musician reaches
# for first); a direction within MAX_SHARED_COSINE of one kept already is left out.
ATTRIBUTE_ORDER = ("brightness", "decay", "pitch", "attack", "noisiness")
CONTROL_ORDER = ("brightness", "loudness", "decay", "pitch", "attack", "noisiness")  # as the form lists them
LEVEL_STEP_DB = (4.0, 6.0)  # the loudness slider's dB per +1: the dataset's level spread, within these
MAX_SHARED_COSINE = 0.9
MIN_MEAN_RHO = 0.65  # ...and a feature's own direction needs this much on average over the starts too
ENCODE_BATCH = 64
MAX_SEGMENTS_PER_FILE = 32  # evenly spaced: a 10-minute file does not outweigh (or outlast) the rest
FEW_FILES = 16  # a whole-sound model of fewer files also takes later windows of them as points

Progress = Callable[[int, int], None]


def run_files(run_dir: Path) -> list[Path]:
    """The sound files a run learned from (its train and validation files that still exist);
    if the run does not list them, every file of its dataset."""
    run_dir = Path(run_dir)
    record = read_json(run_dir / "run.json")
    data_dir = run_dir.parent.parent
    audio_dir = data_dir / "datasets" / str(record.get("dataset", "")) / "audio"
    names = list(record.get("train_files") or []) + list(record.get("val_files") or [])
    if names:
        return [audio_dir / n for n in names if (audio_dir / n).is_file()]

    try:
        return load_dataset(data_dir, record.get("dataset", "")).paths(data_dir)
    except DatasetError:
        return []


def analyse_run(run_dir: Path, *, which: str = "best", device: str | torch.device = "cpu",
                progress: Progress | None = None, model: TrainedModel | None = None) -> LatentAnalysis:
    """Analyse a run's model over its own sound files and store analysis.json. Returns it."""
    run_dir = Path(run_dir)
    model = model or load_trained_model(run_dir, which, device)
    files = run_files(run_dir)
    if not files:
        raise AnalysisError(f"The sound files of run {run_dir.name} are gone, "
                            "so its sound controls cannot be analysed.")
    analysis = analyse(model, files, run_id=run_dir.name, progress=progress)
    save_analysis(run_dir, analysis)
    return analysis


def ensure_analysis(run_dir: Path, model: TrainedModel, progress: Progress | None = None) -> LatentAnalysis:
    """The stored analysis if it was made from this checkpoint's weights, else a fresh one (stored)."""
    stored = load_analysis(run_dir)
    if stored is not None and stored.checkpoint_epoch == model.epoch and stored.latent_dim == model.shape.latent_dim:
        return stored
    return analyse_run(run_dir, model=model, progress=progress)


# -- the analysis -----------------------------------------------------------

@torch.no_grad()
def analyse(model: TrainedModel, files: list[Path], *, run_id: str = "",
            progress: Progress | None = None) -> LatentAnalysis:
    """Posterior means of every sound (segment model: every segment) of `files`, their PCA, and labelled controls."""
    started = time.perf_counter()
    spec, frames = model.spec, model.frames
    total = len(files) + 1
    latents, feats, names = [], [], []
    for index, path in enumerate(files):
        try:
            wave = torch.from_numpy(load_mono(path, spec.sample_rate))
        except (AudioRejected, OSError):  # gone or damaged since training: analyse the rest
            continue
        decays = None
        if model.whole_sounds:
            mu, segments, decays = _sound_points(model, wave, extra_windows=len(files) < FEW_FILES)
        else:
            segments = _segments(log_features(wave, spec), frames, spec)  # (n, n_bands, frames)
            mu = torch.cat([model.model.encode(model.stats.normalise(chunk).to(model.device))[0].float().cpu()
                            for chunk in segments.split(ENCODE_BATCH)])
        latents.append(mu.double())
        feats.append(segment_features(segments, spec))
        if decays is not None:  # over a window the sound can ring out in, as the decoder sweep measures it
            feats[-1]["decay"] = decays
        names.append(Path(path).name)
        if progress:
            progress(index + 1, total)
    if not latents:
        raise AnalysisError("None of the model's sound files could be read, so its sound controls cannot be analysed.")

    z = torch.cat(latents)  # (segments, latent)
    features = {k: torch.cat([f[k] for f in feats]) for k in FEATURES}
    mean = z.mean(dim=0)
    basis, basis_std, explained = _pca(z - mean)
    # A file's own latent: its sound from the start (whole-sound model), the mean of its segments (segment model).
    own = [latents[i][0] if model.whole_sounds else latents[i].mean(dim=0) for i in range(len(names))]
    file_means = [own[i] for i in sorted(range(len(names)), key=lambda i: names[i])]
    starts = sweep_starts(mean, basis, basis_std, file_means)
    attributes = _attribute_controls(model, z - mean, features, starts) + [_level_control(features["loudness"], z.shape[1])]
    attributes.sort(key=lambda c: CONTROL_ORDER.index(c.feature))
    # The texture sliders span the variety the feature sliders leave: the PCA of what is left once
    # their directions are taken out (its shares still of the whole variance). The stored basis
    # stays the PCA of everything: variations are drawn from the dataset's whole spread.
    rest, rest_std, rest_explained = _pca(_without(z - mean, [c.direction for c in attributes]))
    rest_explained = rest_explained * float(rest_std.square().sum() / basis_std.square().sum().clamp(min=1e-30))
    controls = attributes + _label_controls(model, mean, rest, rest_std, rest_explained, starts,
                                            taken={c.feature for c in attributes}, room=MAX_CONTROLS - len(attributes))
    file_latents = {name: tuple(own[i].tolist()) for i, name in enumerate(names)}
    summary = {k: {"unit": FEATURE_UNITS[k], "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
               for k, v in features.items()}
    if progress:
        progress(total, total)
    analysis = LatentAnalysis(
        run_id=run_id, checkpoint_epoch=model.epoch, latent_dim=int(z.shape[1]), segment_frames=frames,
        segment_count=int(z.shape[0]), file_count=len(names), mean=tuple(mean.tolist()),
        basis=tuple(tuple(row) for row in basis.tolist()), basis_std=tuple(basis_std.tolist()),
        controls=tuple(controls), file_latents=file_latents, features=summary,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), seconds=time.perf_counter() - started,
    )
    return analysis.rounded()  # exactly what analysis.json will hold


def _sound_points(model: TrainedModel, wave: torch.Tensor, extra_windows: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A file's latents for the PCA: the sound from its start and, for a set of few files (a
    drone or two), also the sound as if it started a head, two heads... later (at most
    MAX_SEGMENTS_PER_FILE), so its variety has points too. Returns ((n, latent), the log features
    of each such head (n, n_bands, frames), and the decay from each start over
    `model.decay_frames()`)."""
    spec, frames = model.spec, model.frames
    hop_samples = frames * spec.hop_length
    starts = [0]
    if extra_windows:
        starts += list(range(hop_samples, max(0, len(wave) - hop_samples) + 1, hop_samples))[:MAX_SEGMENTS_PER_FILE - 1]
    span = 2 * hop_samples
    mu = torch.stack([model.encode(wave[s:s + span]).mean().float() for s in starts])
    feats = log_features(wave, spec)
    heads = torch.stack([_head(feats, s // spec.hop_length, frames, spec) for s in starts])
    ring_frames = model.decay_frames()
    rings = torch.stack([_head(feats, s // spec.hop_length, ring_frames, spec) for s in starts])
    return mu, heads, decay_seconds(rings, spec)


def _head(feats: torch.Tensor, start: int, frames: int, spec: FeatureSpec) -> torch.Tensor:
    return window(feats, start, frames, math.log(spec.log_floor))


def _segments(feats: torch.Tensor, frames: int, spec: FeatureSpec) -> torch.Tensor:
    """(n_bands, T) log features -> (n, n_bands, frames) windows at a hop of frames // 2, the last
    one flush with the end; a sound shorter than a segment is padded with silence (as in training)."""
    total = feats.shape[1]
    if total < frames:
        return window(feats, 0, frames, math.log(spec.log_floor)).unsqueeze(0)
    hop = max(1, frames // 2)
    starts = list(range(0, total - frames + 1, hop))
    if starts[-1] != total - frames:
        starts.append(total - frames)
    if len(starts) > MAX_SEGMENTS_PER_FILE:
        pick = torch.linspace(0, len(starts) - 1, MAX_SEGMENTS_PER_FILE).round().long().tolist()
        starts = [starts[i] for i in pick]
    return torch.stack([feats[:, s:s + frames] for s in starts])


def _pca(centred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(components (rank, d), score std (rank,), explained share (rank,)), variance first."""
    n = centred.shape[0]
    if n < 2:
        d = centred.shape[1]
        empty = torch.zeros(0, dtype=centred.dtype)
        return torch.zeros(0, d, dtype=centred.dtype), empty, empty
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = s.square() / (n - 1)
    keep = variance > variance.sum() * 1e-9  # drop numerically empty directions
    explained = variance / variance.sum().clamp(min=1e-30)
    return vh[keep], variance[keep].sqrt(), explained[keep]


def _attribute_controls(model: TrainedModel, centred: torch.Tensor, features: dict[str, torch.Tensor],
                        starts: torch.Tensor) -> list[Control]:
    """A slider per feature that the encoded data and the decoder agree on, whatever PCA found.

    Candidates for each feature: the latent dimension training kept in its order (a model trained
    with the attribute term), then the direction along which the dataset's latents covary with it
    (an attribute vector, like the difference of the mean latents of its high and low sounds, on
    the data's own spread, not off it). The first that the decoder bears out becomes the control:
    swept through the decoder, that feature of the decoded sound rises with Spearman rho >=
    MIN_MONOTONE_RHO from at least half the starting points (the median) and for the response
    averaged over them, and >= MIN_MEAN_RHO on average (a slider named "loudness" that moved the
    level of a default demo model by 3 dB, rho 0.25 on its generated sounds, had a mean of 0.36).
    Features in ATTRIBUTE_ORDER; unit: the standard deviation of the
    dataset's scores along the direction."""
    if centred.shape[0] < 3:
        return []
    candidates = _attribute_candidates(model, centred, features)
    if not candidates:
        return []
    sweep = _sweep_through_decoder(model, torch.stack([c[1] for c in candidates]),
                                   torch.tensor([c[2] for c in candidates], dtype=torch.float64), starts)
    controls = []
    for k, (name, direction, std, explained) in enumerate(candidates):
        if any(c.feature == name for c in controls):
            continue  # its trained dimension was borne out already
        if any(abs(float(direction @ torch.tensor(c.direction, dtype=direction.dtype))) > MAX_SHARED_COSINE
               for c in controls):
            continue  # nearly the direction of a control already kept: one slider, not two
        if _borne_out(sweep, k, FEATURES.index(name)):
            controls.append(_feature_control(name, direction, std, explained, sweep, k))
    return controls


def _borne_out(sweep: "Sweep", k: int, f: int) -> bool:
    """Monotone from most starting points and on average: a few odd starts do not hide a slider
    that works, and a slider that works nowhere in particular is not named."""
    return (min(float(sweep.rho_median[k, f]), float(sweep.curve_rho[k, f])) >= MIN_MONOTONE_RHO
            and float(sweep.rho[k, f]) >= MIN_MEAN_RHO)


def _feature_control(name: str, direction: torch.Tensor, std: float, explained: float, sweep: "Sweep",
                     k: int) -> Control:
    """A feature's slider along `direction` (row k of `sweep`). Except decay (a longer ring is
    more energy, and its hit should keep its level), it is loudness-matched: a gain undoes the
    level change the sweep measured, so "brighter" is not also "quieter"."""
    f = FEATURES.index(name)
    matching = 0.0 if name == "decay" else -float(sweep.slope[k, FEATURES.index("loudness")])
    return Control(label=name, feature=name, component=-1, explained=explained, correlation=float(sweep.rho[k, f]),
                   std=std, feature_per_std=float(sweep.slope[k, f]), direction=tuple(direction.tolist()),
                   gain_db_per_std=matching)


def _level_control(loudness_db: torch.Tensor, latent_dim: int) -> Control:
    """The loudness slider: output gain, +1 = the dataset's level spread (LEVEL_STEP_DB)."""
    spread = float(loudness_db.double().std()) if loudness_db.numel() > 1 else 0.0
    step = min(LEVEL_STEP_DB[1], max(LEVEL_STEP_DB[0], spread if math.isfinite(spread) else 0.0))
    return Control(label="loudness", feature="loudness", component=-1, explained=0.0, correlation=1.0, std=1.0,
                   feature_per_std=step, direction=(0.0,) * latent_dim, gain_db_per_std=step)


def _attribute_candidates(model: TrainedModel, centred: torch.Tensor, features: dict[str, torch.Tensor]) -> list:
    """(feature, unit direction, score std, share of the variance) to try, in ATTRIBUTE_ORDER."""
    total_variance = centred.square().sum(dim=1).mean()
    trained = tuple(getattr(model.shape, "attribute_dims", ()))  # dimensions trained to follow a feature
    candidates = []
    for name in ATTRIBUTE_ORDER:
        spread = effect_scale(name, features[name].double())
        spread = spread - spread.mean()
        covariance = (centred * spread[:, None]).mean(dim=0)
        norm = float(covariance.norm())
        if not math.isfinite(norm) or norm <= 0:
            continue
        directions = [covariance / norm]
        if name in trained:  # its own dimension first, signed as the data says
            own = torch.zeros_like(covariance)
            own[trained.index(name)] = 1.0 if float(covariance[trained.index(name)]) >= 0 else -1.0
            directions.insert(0, own)
        for direction in directions:
            scores = centred @ direction
            if float(scores.std()) > 0:
                candidates.append((name, direction, float(scores.std()), float(scores.square().mean() / total_variance)))
    return candidates


def _without(centred: torch.Tensor, directions: list[tuple[float, ...]]) -> torch.Tensor:
    """The centred latents with their components along `directions` removed (Gram-Schmidt)."""
    rest = centred.clone()
    kept: list[torch.Tensor] = []
    for d in directions:
        u = torch.tensor(d, dtype=centred.dtype)
        for k in kept:
            u = u - (u @ k) * k
        if float(u.norm()) > 1e-9:
            u = u / u.norm()
            kept.append(u)
            rest = rest - (rest @ u)[:, None] * u[None, :]
    return rest


def _label_controls(model: TrainedModel, mean: torch.Tensor, basis, basis_std, explained,
                    starts: torch.Tensor, taken: set = frozenset(), room: int = MAX_CONTROLS) -> list[Control]:
    """Sliders for the leading components (at most `room`), each named by what it does to the
    *decoded* sound, among the features no attribute control has `taken`."""
    count = int((explained >= MIN_EXPLAINED).sum())
    count = min(max(count, MIN_CONTROLS), MAX_CONTROLS, len(explained), max(0, room))
    if count == 0:
        return []
    rho, slope = _sweep_through_decoder(model, basis[:count], basis_std[:count], starts)[:2]

    # Strongest (component, feature) pairs first; each component and each feature used once.
    assigned: dict[int, str] = {}
    pairs = sorted(((abs(float(rho[c, f])), c, f) for c in range(count) for f in range(len(FEATURES))), reverse=True)
    used = {FEATURES.index(name) for name in taken}
    for strength, c, f in pairs:
        if strength < MIN_MONOTONE_RHO:
            break
        if c in assigned or f in used:
            continue
        assigned[c] = FEATURES[f]
        used.add(f)

    controls, textures = [], 0
    for c in range(count):
        direction = basis[c]
        feature = assigned.get(c)
        if feature is not None:
            f = FEATURES.index(feature)
            sign = 1.0 if float(rho[c, f]) >= 0 else -1.0  # "+" raises the feature
        else:  # no feature: a fixed convention so the direction is the same on every machine
            sign = 1.0 if float(direction[direction.abs().argmax()]) >= 0 else -1.0
            textures += 1
        controls.append(Control(
            label=feature or f"texture {textures}", feature=feature, component=c, explained=float(explained[c]),
            correlation=sign * float(rho[c, f]) if feature else 0.0, std=float(basis_std[c]),
            feature_per_std=sign * float(slope[c, f]) if feature else None,
            direction=tuple((direction * sign).tolist()),
        ))
    return controls


SWEEP = (-2.0, -1.0, 0.0, 1.0, 2.0)  # slider values tried from each starting point
SWEEP_FILES = 8  # starting points: the mean latents of up to this many of the dataset's files (transform's
SWEEP_DRAWS = 8  # start), and this many seeded draws of the dataset's latent spread (generation's start)


def sweep_starts(mean: torch.Tensor, basis: torch.Tensor, basis_std: torch.Tensor,
                 file_means: list[torch.Tensor]) -> torch.Tensor:
    """(starts, latent) float64 points to sweep the controls from: where a transform starts (a file)
    and where a generated variation starts (the mean plus a draw of the dataset's own spread, as
    synth.latent_path draws at variation 1), so a name holds for both."""
    count = len(file_means)
    picks = sorted({round(k * (count - 1) / max(1, SWEEP_FILES - 1)) for k in range(min(SWEEP_FILES, count))})
    draws = torch.from_numpy(np.random.default_rng(0).standard_normal((SWEEP_DRAWS, len(basis_std))))
    generated = mean + (draws * basis_std) @ basis
    return torch.cat([torch.stack([file_means[i] for i in picks]), generated])


class Sweep(NamedTuple):
    """How each feature of the decoded sound follows each direction, all (directions, features)."""
    rho: torch.Tensor  # Spearman rho of slider value vs feature, the mean over starting points
    slope: torch.Tensor  # mean change of the feature per +1 (EFFECT_UNITS' scale)
    rho_median: torch.Tensor  # the median over starting points
    curve_rho: torch.Tensor  # of the response averaged over starting points


@torch.no_grad()
def _sweep_through_decoder(model: TrainedModel, basis: torch.Tensor, basis_std: torch.Tensor,
                           starts: torch.Tensor) -> Sweep:
    """Each direction swept from each start through SWEEP, decoded and measured: the Spearman
    rho between the slider value and each feature of the decoded sound, and the mean change of the
    feature per +1. The decoder's log spectrum is what the inverse turns into sound (its ceiling is
    1-3 dB), so no Griffin-Lim is needed to measure it."""
    values = torch.tensor(SWEEP, dtype=torch.float64)
    steps = (basis[:, None, :] * basis_std[:, None, None]) * values[None, :, None]  # (c, v, latent)
    z = starts[None, :, None, :] + steps[:, None, :, :]  # (c, starts, v, latent)
    flat = z.reshape(-1, z.shape[-1]).float()
    # Decoded long enough to ring out: a cymbal's decay does not fit the head, where every value
    # of a decay slider looked alike. The other features keep the head, as the dataset's do.
    decoded = torch.cat([model.decode_segments(chunk, model.decay_frames()) for chunk in flat.split(ENCODE_BATCH)])
    measured = segment_features(decoded[..., :model.frames], model.spec)
    measured["decay"] = decay_seconds(decoded, model.spec)
    rho = torch.zeros(len(basis), len(FEATURES), dtype=torch.float64)
    slope, rho_median, curve_rho = torch.zeros_like(rho), torch.zeros_like(rho), torch.zeros_like(rho)
    for f, name in enumerate(FEATURES):
        feature = effect_scale(name, measured[name]).reshape(z.shape[:3])  # (c, starts, v)
        per_start = _spearman_with_sweep(feature)
        rho[:, f], rho_median[:, f] = per_start.mean(dim=1), per_start.median(dim=1).values
        curve_rho[:, f] = _spearman_with_sweep(feature.mean(dim=1))
        centred = values - values.mean()
        slope[:, f] = ((feature - feature.mean(dim=2, keepdim=True)) * centred).sum(dim=2).mean(dim=1) / centred.square().sum()
    return Sweep(rho, slope, rho_median, curve_rho)


def _spearman_with_sweep(feature: torch.Tensor) -> torch.Tensor:
    """Spearman rho of each (..., v) row against the increasing sweep values (ties share ranks)."""
    n = feature.shape[-1]
    ranks = (feature[..., :, None] > feature[..., None, :]).double().sum(-1) \
        + 0.5 * ((feature[..., :, None] == feature[..., None, :]).double().sum(-1) - 1) + 1
    sweep_ranks = torch.arange(1, n + 1, dtype=torch.float64)
    x = sweep_ranks - sweep_ranks.mean()
    y = ranks - ranks.mean(dim=-1, keepdim=True)
    denom = (x.square().sum() * y.square().sum(dim=-1)).sqrt()
    return torch.where(denom > 0, (x * y).sum(dim=-1) / denom.clamp(min=1e-30), torch.zeros_like(denom))

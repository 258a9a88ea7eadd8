"""New sound or copy? Each generated sound's nearest training file, and whether it is a near copy.

A sound is summarised by a fingerprint: its log-band spectrogram in dB over its
first FINGERPRINT_SECONDS, pooled to FINGERPRINT_BANDS band groups x
FINGERPRINT_SLICES time slices (about 80 ms each: onsets, decays and timbre,
not phase). Two fingerprints are DISTANCE dB apart: the mean absolute
difference over the cells where either sound is above the floor.

What "close" means depends on the dataset and on the model. Velocity layers
of one kick sit 1.5 dB apart, a kit's unrelated hits 5-9 dB (Millo_MultiLayered2);
and a model cannot copy a file more closely than its own plain reconstruction
of it, about 2.3-3.5 dB there. So a generated sound is a near copy of its
nearest file when it is closer to it than either
  * COPY_SHARE of the distance from that file to its own nearest sibling
    (closer to kick_03.wav than any other file is), or
  * the model's reproduction distance: the farthest of its plain
    reconstructions of up to REPRODUCTION_FILES training files (as close as the
    model gets when it copies), but never farther than the file's own nearest
    sibling (a blurry model does not make every sound a copy).

The training files' fingerprints are made once per model (after training, or at
its first use) and kept in `novelty.npz` in the run folder; a sound then costs
one short STFT and a few hundred vector distances.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio.io import AudioRejected, load_mono
from ..storage import atomic_write_bytes
from .settings import GenerationSettings

if TYPE_CHECKING:  # torch only where a fingerprint is made: the Library reads sounds' records without it
    from ..audio.features import FeatureSpec

FINGERPRINT_SECONDS = 2.0
FINGERPRINT_BANDS = 32
FINGERPRINT_SLICES = 24
FLOOR_DB = -100.0  # far below anything heard: silence on both sides is not "close"
COPY_SHARE = 0.5
MIN_COPY_DB = 1.0
REPRODUCTION_FILES = 8
SURVEY_VARIATIONS = 8  # variations at variation 1 (seed 0) made to see whether the model mostly copies
MOSTLY_COPIES = 0.5
NOVELTY_FILE = "novelty.npz"
_DB = 10.0 / math.log(10.0)


@dataclass(frozen=True)
class Nearest:
    file: str  # the nearest training file
    distance_db: float  # how far the sound is from it
    sibling_db: float  # how far that file is from its own nearest other file (the dataset's "close")
    copy: bool  # closer than COPY_SHARE of sibling_db: a near copy

    def to_dict(self) -> dict:
        return {"file": self.file, "distance_db": self.distance_db, "sibling_db": self.sibling_db, "copy": self.copy}

    @classmethod
    def from_dict(cls, data) -> "Nearest | None":
        try:
            return cls(str(data["file"]), float(data["distance_db"]), float(data["sibling_db"]), bool(data["copy"]))
        except (KeyError, TypeError, ValueError):
            return None

    def sentence(self) -> str:
        if self.copy:
            return f"very close to {self.file} (a near copy of it)"
        return f"nearest to {self.file}"


@dataclass(frozen=True)
class Fingerprints:
    names: list[str]
    prints: np.ndarray  # (files, bands * slices) float32, dB
    siblings: np.ndarray  # (files,) each file's distance to its nearest other file
    sample_rate: int
    reproduction_db: float  # how close the model's own reconstructions come to their files
    copy_share: float | None = None  # share of SURVEY_VARIATIONS variations (variation 1) that are near copies

    def nearest(self, wave: np.ndarray, spec: FeatureSpec) -> Nearest | None:
        if not self.names:
            return None
        distances = distance_to_all(fingerprint(wave, spec), self.prints)
        index = int(np.argmin(distances))
        sibling = float(self.siblings[index])
        distance = float(distances[index])
        # never farther than the file's own nearest sibling: a sound more unlike kick_03 than
        # kick_05 is does not copy it, however blurry the model's reproductions are
        close = max(COPY_SHARE * sibling, min(self.reproduction_db, sibling), MIN_COPY_DB)
        # rounded as stored, so a sound just made equals the same sound read back
        return Nearest(self.names[index], round(distance, 2), round(sibling, 2), distance < close)


def fingerprint(wave, spec: FeatureSpec) -> np.ndarray:
    """The fingerprint of a mono waveform at `spec`'s rate (see the module docstring)."""
    import torch

    from ..audio.features import log_features  # torch: see the TYPE_CHECKING note above

    frames = max(1, round(FINGERPRINT_SECONDS * spec.sample_rate / spec.hop_length))
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))[: int(FINGERPRINT_SECONDS * spec.sample_rate)]
    db = (log_features(wave, spec).double() * _DB).clamp(min=FLOOR_DB)  # (n_bands, frames)
    if db.shape[1] < frames:
        db = torch.nn.functional.pad(db, (0, frames - db.shape[1]), value=FLOOR_DB)
    pooled = torch.nn.functional.adaptive_avg_pool2d(db[None, None, :, :frames], (FINGERPRINT_BANDS, FINGERPRINT_SLICES))
    return pooled.flatten().float().numpy()


def distance_to_all(one: np.ndarray, many: np.ndarray) -> np.ndarray:
    """Mean |dB difference| of `one` to each row of `many`, over the cells where either is heard."""
    heard = np.maximum(one[None, :], many) > FLOOR_DB + 1.0
    diff = np.abs(many - one[None, :]) * heard
    return diff.sum(axis=1) / np.maximum(heard.sum(axis=1), 1)


def build_fingerprints(files: list[Path], model) -> Fingerprints:
    """Fingerprints of a model's training files (a TrainedModel: its features, and its
    reconstructions of a few of them for the reproduction distance)."""
    import torch

    spec = model.spec
    names, prints, reproductions = [], [], []
    for path in files:
        try:
            wave = load_mono(path, spec.sample_rate)
        except (AudioRejected, OSError):  # gone or damaged since training: compare with the rest
            continue
        names.append(Path(path).name)
        prints.append(fingerprint(wave, spec))
        if len(reproductions) < REPRODUCTION_FILES and len(names) % max(1, len(files) // REPRODUCTION_FILES) == 0:
            copy = model.reconstruct(torch.from_numpy(wave)).numpy()
            reproductions.append(float(distance_to_all(fingerprint(copy, spec), prints[-1][None, :])[0]))
    matrix = np.stack(prints) if prints else np.zeros((0, FINGERPRINT_BANDS * FINGERPRINT_SLICES), np.float32)
    siblings = np.full(len(names), np.inf)
    for i in range(len(names)):
        others = distance_to_all(matrix[i], np.delete(matrix, i, axis=0)) if len(names) > 1 else np.array([])
        if others.size:
            siblings[i] = float(others.min())
    if not np.isfinite(siblings).any():  # a single file: nothing to compare with, only exact copies count
        siblings[:] = 2 * MIN_COPY_DB
    else:
        siblings[~np.isfinite(siblings)] = float(np.median(siblings[np.isfinite(siblings)]))
    return Fingerprints(names, matrix, siblings, spec.sample_rate, max(reproductions, default=MIN_COPY_DB))


def save_fingerprints(run_dir: Path, fingerprints: Fingerprints, epoch: int) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, names=np.array(fingerprints.names, dtype=str), prints=fingerprints.prints,
             siblings=fingerprints.siblings, sample_rate=np.array(fingerprints.sample_rate),
             reproduction_db=np.array(fingerprints.reproduction_db), epoch=np.array(epoch),
             copy_share=np.array(np.nan if fingerprints.copy_share is None else fingerprints.copy_share))
    atomic_write_bytes(Path(run_dir) / NOVELTY_FILE, buffer.getvalue())


def load_fingerprints(run_dir: Path, sample_rate: int, epoch: int) -> Fingerprints | None:
    """The stored fingerprints, if made for these weights (the reproduction distance is the model's)."""
    path = Path(run_dir) / NOVELTY_FILE
    try:
        with np.load(path, allow_pickle=False) as data:
            found = Fingerprints([str(n) for n in data["names"]], data["prints"].astype(np.float32),
                                 data["siblings"].astype(np.float64), int(data["sample_rate"]),
                                 float(data["reproduction_db"]), _finite(data["copy_share"]))
            if int(data["epoch"]) != epoch:
                return None
    except (OSError, ValueError, KeyError):
        return None
    shape_ok = found.prints.ndim == 2 and found.prints.shape[1] == FINGERPRINT_BANDS * FINGERPRINT_SLICES
    return found if shape_ok and found.sample_rate == sample_rate and len(found.names) == len(found.prints) else None


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def stored_copy_share(run_dir: Path) -> float | None:
    """The share of near copies among the surveyed variations, as last stored (no torch)."""
    try:
        with np.load(Path(run_dir) / NOVELTY_FILE, allow_pickle=False) as data:
            return _finite(data["copy_share"])
    except (OSError, ValueError, KeyError):
        return None


def survey_copies(model, analysis, fingerprints: Fingerprints) -> float:
    """The share of near copies among SURVEY_VARIATIONS variations at variation 1 of the model's
    default length: what a user gets pressing Generate."""
    # torch only when a sound is made: the server and the Library's pages start without it
    from .synth import generate_variation

    settings = GenerationSettings(seed=0, variations=SURVEY_VARIATIONS, duration_s=model.default_seconds())
    copies = [fingerprints.nearest(generate_variation(model, analysis, settings, i), model.spec)
              for i in range(SURVEY_VARIATIONS)]
    return sum(1 for c in copies if c is not None and c.copy) / SURVEY_VARIATIONS


def ensure_fingerprints(run_dir: Path, model, files: list[Path], analysis=None) -> Fingerprints | None:
    """The stored fingerprints of a run's files for `model` (a TrainedModel), made and stored if
    missing or made for other weights; None when the files are not here (an imported model).
    With `analysis`, a new set also surveys how many variations are copies."""
    stored = load_fingerprints(run_dir, model.spec.sample_rate, model.epoch)
    if stored is not None:
        return stored
    if not files:
        return None
    made = build_fingerprints(files, model)
    if not made.names:
        return None
    if analysis is not None:
        from dataclasses import replace

        made = replace(made, copy_share=survey_copies(model, analysis, made))
    save_fingerprints(run_dir, made, model.epoch)
    return made

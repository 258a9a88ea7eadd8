"""The sound controls of a model as plain data, and their file (analysis.json).

No torch here: the web layer reads a model's controls (labels, ranges) to draw
the Generate form without loading the model. `controls.py` computes them.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..storage import atomic_write_json, read_json

log = logging.getLogger(__name__)

ANALYSIS_FILE = "analysis.json"
ANALYSIS_VERSION = 4  # 2: labels measured on the decoded sound; 3: a control per feature the data and decoder
# agree on, and decay; 4: loudness is the output level
FEATURES = ("brightness", "loudness", "noisiness", "pitch", "attack", "decay")
FEATURE_UNITS = {"brightness": "Hz", "loudness": "dB", "noisiness": "flatness", "pitch": "Hz", "attack": "dB/s",
                 "decay": "s"}
# A slider's effect is told on a scale a musician reads: octaves for pitch, dB for flatness, and a
# ratio for decay (measured in octaves of duration, told as "1.5x longer").
EFFECT_UNITS = {"brightness": "Hz", "loudness": "dB", "noisiness": "dB flatness", "pitch": "octave", "attack": "dB/s",
                "decay": "x longer"}
SLIDER_RANGE = 3.0  # sliders span +-3 standard deviations of the component's scores
CORE_FEATURES = ("brightness", "loudness", "decay", "pitch")  # what every musician reaches for first


class AnalysisError(ValueError):
    """The latent analysis cannot be made, read or used as asked; the message says why."""


@dataclass(frozen=True)
class Control:
    """One slider: a signed unit direction in latent space, in std units of its scores."""
    label: str  # "brightness", ..., or "texture 1"
    feature: str | None  # the feature it was named after (None for texture)
    component: int  # PCA component index (0 = most variance); -1 for a feature's own direction
    explained: float  # share of the latent variance along it
    correlation: float  # Spearman rho of slider value vs the feature of the decoded sound (mean over starts)
    std: float  # standard deviation of the dataset's scores along it
    feature_per_std: float | None  # change of the decoded sound's feature (EFFECT_UNITS) per +1 on the slider
    direction: tuple[float, ...]  # unit vector, latent_dim long
    minimum: float = -SLIDER_RANGE
    maximum: float = SLIDER_RANGE
    gain_db_per_std: float = 0.0  # a level control (loudness): output gain per +1; its direction is zero

    @property
    def unit(self) -> str | None:
        return EFFECT_UNITS.get(self.feature or "")

    @property
    def effect(self) -> str | None:
        """What +1 on the slider does to the generated sound, in human units ("+1 ≈ +3.1 dB")."""
        if not self.feature or self.feature_per_std is None:
            return None
        if self.feature == "decay":  # octaves of duration per +1: "+1 ≈ 1.5x longer"
            return f"+1 ≈ {2 ** self.feature_per_std:.2g}x longer"
        return f"+1 ≈ {_human(self.feature_per_std)} {self.unit}"


def level_gain(analysis: "LatentAnalysis | None", controls: dict[str, float]) -> float:
    """The amplitude gain the level controls among `controls` ask for (1.0 when none is moved)."""
    if analysis is None:
        return 1.0
    db = sum(float(value) * analysis.control(label).gain_db_per_std for label, value in sorted(controls.items()))
    return 10.0 ** (db / 20.0)


MAX_RING_RATIO = 4.0  # room a transform leaves after its source: at most 4x its length


def ring_ratio(analysis: "LatentAnalysis | None", controls: dict[str, float]) -> float:
    """How many times longer than its source a transform must be for what the decay controls among
    `controls` promise (2 ** (octaves per +1 x value)): 1.0 when none asks for a longer ring, at
    most MAX_RING_RATIO."""
    if analysis is None:
        return 1.0
    octaves = sum(float(value) * (analysis.control(label).feature_per_std or 0.0)
                  for label, value in sorted(controls.items()) if analysis.control(label).feature == "decay")
    return float(min(MAX_RING_RATIO, max(1.0, 2.0 ** octaves)))


def _human(value: float) -> str:
    """Two significant digits, never scientific: +3.1, +420, -0.31, +1200."""
    if value == 0:
        return "0"
    digits = 1 - int(math.floor(math.log10(abs(value))))
    rounded = round(value, digits)
    return f"{rounded:+.{digits}f}" if digits > 0 else f"{int(rounded):+d}"


@dataclass(frozen=True)
class LatentAnalysis:
    run_id: str
    checkpoint_epoch: int  # the epoch of the weights it was computed from
    latent_dim: int
    segment_frames: int
    segment_count: int
    file_count: int
    mean: tuple[float, ...]  # dataset mean of the posterior means: where every slider is 0
    basis: tuple[tuple[float, ...], ...]  # every PCA component with non-zero variance (rank x latent_dim)
    basis_std: tuple[float, ...]  # std of the scores along each of them
    controls: tuple[Control, ...]
    file_latents: dict[str, tuple[float, ...]]  # per dataset file: mean latent of its segments (for blends)
    features: dict[str, dict] = field(default_factory=dict)  # per feature: unit, mean, min, max over segments
    created: str = ""
    seconds: float = 0.0  # how long the analysis took

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.controls]

    @property
    def missing_core(self) -> list[str]:
        """The core features this model has no slider for."""
        named = {c.feature for c in self.controls}
        return [f for f in CORE_FEATURES if f not in named]

    def missing_sentence(self) -> str | None:
        """One sentence for the sliders that are not there, or None when every core one is."""
        missing = self.missing_core
        if not missing:
            return None
        names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " or " + missing[-1]
        return (f"No {names} slider: moving {'it' if len(missing) == 1 else 'them'} through this model did not "
                "change its sounds steadily, so a slider would do little or the wrong thing.")

    @property
    def files(self) -> list[str]:
        return sorted(self.file_latents)

    def control(self, label: str) -> Control:
        for c in self.controls:
            if c.label == label:
                return c
        known = ", ".join(self.labels) or "none"
        raise AnalysisError(f"This model has no control called {label!r}; its controls are: {known}.")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["version"] = ANALYSIS_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "LatentAnalysis":
        if data.get("version") != ANALYSIS_VERSION:
            raise AnalysisError("The stored sound-control analysis is from another version; it will be recomputed.")
        controls = tuple(Control(**{**c, "direction": tuple(c["direction"])}) for c in data["controls"])
        return cls(
            run_id=data["run_id"], checkpoint_epoch=int(data["checkpoint_epoch"]), latent_dim=int(data["latent_dim"]),
            segment_frames=int(data["segment_frames"]), segment_count=int(data["segment_count"]),
            file_count=int(data["file_count"]), mean=tuple(data["mean"]),
            basis=tuple(tuple(row) for row in data["basis"]), basis_std=tuple(data["basis_std"]),
            controls=controls, file_latents={k: tuple(v) for k, v in data["file_latents"].items()},
            features=data.get("features", {}), created=data.get("created", ""), seconds=float(data.get("seconds", 0.0)),
        )

    def rounded(self) -> "LatentAnalysis":
        """Exactly what analysis.json holds (7 significant digits): generation from a fresh
        analysis and from the stored one then gives the same samples."""
        return LatentAnalysis.from_dict(_rounded(self.to_dict()))


def analysis_path(run_dir: Path) -> Path:
    return Path(run_dir) / ANALYSIS_FILE


def load_analysis(run_dir: Path) -> LatentAnalysis | None:
    """The stored analysis, or None when there is none (or it is unreadable / outdated)."""
    path = analysis_path(run_dir)
    if not path.is_file():
        return None
    try:
        return LatentAnalysis.from_dict(read_json(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def save_analysis(run_dir: Path, analysis: LatentAnalysis) -> None:
    atomic_write_json(analysis_path(run_dir), analysis.rounded().to_dict())


def _rounded(value, digits: int = 7):
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value

"""What a generation asks for, validated with clear messages. No torch here,
so a form can be checked before any model is loaded."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .analysis import LatentAnalysis

MIN_DURATION_S = 0.1
MAX_DURATION_S = 60.0
MAX_SOURCE_S = MAX_DURATION_S  # a sound to start from (transform, morph) is at most as long as a generated one
MAX_VARIATIONS = 8
MAX_VARIATION_AMOUNT = 2.0
MAX_SEED = 2**32 - 1
# Griffin-Lim iterations for generation (previews use 32). bench/generate_speed.py,
# 10 s of demo-set audio, one CPU thread, this module's fast inverse:
#   iterations                8      16     24     32    | torchaudio 128 (earlier)
#   mel LSD, top 60 dB (dB)  1.74   1.66   1.65   1.64   | 1.62
#   spectral inconsistency   0.254  0.199  0.177  0.169  | 0.154
#   ms per second of audio    24     41     51     61    | 434
# 24 is within 0.01 dB of 32 for 5/6 of the time; past 16 the gains are small.
GENERATION_GL_ITERS = 24


DEFAULT_DURATION_S = 2.0  # for a model that does not know its sounds' typical length (segment models)


def default_duration(typical_seconds: float | None) -> float:
    """A generated sound's length when none is asked for: the typical (median) length of the
    model's own sounds, so a kit of one-shots makes about one hit; within 0.5..10 s."""
    if not typical_seconds or not math.isfinite(typical_seconds):
        return DEFAULT_DURATION_S
    return round(min(10.0, max(0.5, float(typical_seconds))), 1)


class GenerationError(ValueError):
    """A generation parameter is out of range or unknown; the message says which and why."""


@dataclass(frozen=True)
class Blend:
    file_a: str
    file_b: str
    amount: float  # 0 = file_a, 1 = file_b


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides the samples, besides the model and its analysis."""
    seed: int
    variations: int = 1
    duration_s: float = 2.0
    controls: dict[str, float] = field(default_factory=dict)  # label -> standard deviations
    variation_amount: float = 1.0  # latent temperature: 0 = no wandering, 1 = the dataset's own spread
    blend: Blend | None = None
    gl_iters: int = GENERATION_GL_ITERS

    def validated(self, analysis: LatentAnalysis | None, known_sounds=frozenset()) -> "GenerationSettings":
        """Return self, or raise GenerationError (or AnalysisError for an unknown control).
        A blend may name the dataset files the analysis knows, or `known_sounds` (kept sounds
        that are not in the dataset: their latents come from encoding them)."""
        _check_number(self.duration_s, "Duration", MIN_DURATION_S, MAX_DURATION_S, "seconds")
        _check_int(self.seed, "Seed", 0, MAX_SEED)
        _check_int(self.variations, "Number of variations", 1, MAX_VARIATIONS)
        _check_number(self.variation_amount, "Variation amount", 0.0, MAX_VARIATION_AMOUNT)
        _check_int(self.gl_iters, "Griffin-Lim iterations", 1, 1000)
        for label, value in self.controls.items():
            if analysis is None:
                raise GenerationError("This model has no sound controls yet; analyse it first.")
            control = analysis.control(label)  # AnalysisError (a ValueError) lists the known ones
            _check_number(value, f"Control {label!r}", control.minimum, control.maximum, "standard deviations")
        if self.blend is not None:
            dataset_ends = [n for n in (self.blend.file_a, self.blend.file_b) if n not in known_sounds]
            if analysis is None and dataset_ends:
                raise GenerationError("This model has no analysis of its sounds yet, so it cannot blend them.")
            for name in dataset_ends:
                if name not in analysis.file_latents:
                    raise GenerationError(f"{name!r} is not one of the sounds this model was trained on.")
            _check_number(self.blend.amount, "Blend amount", 0.0, 1.0)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationSettings":
        blend = data.get("blend")
        return cls(seed=data["seed"], variations=data.get("variations", 1), duration_s=data.get("duration_s", 2.0),
                   controls=dict(data.get("controls") or {}), variation_amount=data.get("variation_amount", 1.0),
                   blend=Blend(**blend) if isinstance(blend, dict) else Blend(*blend) if blend else None,
                   gl_iters=data.get("gl_iters", GENERATION_GL_ITERS))


def _check_int(value, label: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) and not (hasattr(value, "__index__")):
        raise GenerationError(f"{label} must be a whole number from {lo} to {hi}, got {value!r}.")
    if not lo <= int(value) <= hi:
        raise GenerationError(f"{label} must be a whole number from {lo} to {hi}, got {value!r}.")


def _check_number(value, label: str, lo: float, hi: float, unit: str = "") -> None:
    suffix = f" {unit}" if unit else ""
    try:
        ok = not isinstance(value, (bool, str)) and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise GenerationError(f"{label} must be a number, got {value!r}.")
    if not lo <= float(value) <= hi:
        raise GenerationError(f"{label} must be between {lo:g} and {hi:g}{suffix}, got {float(value):g}.")

"""Generated sounds as the Generate and Library tabs show them: grouped by the
request that made them, each with its parameters in words. Pure functions of
the library's records (no I/O, no request)."""
from __future__ import annotations

from dataclasses import dataclass

from ..library import ModelInfo, Sound
from .generate_form import signed


@dataclass(frozen=True)
class Batch:
    """The variations one press of Generate made."""
    batch: str
    sounds: list[Sound]
    model_name: str  # the model's current name (or the name it had, if it is gone)
    model_exists: bool
    params: list[str]  # "seed 7", "2 s", "brightness +1.5", ...
    created: str  # "2025-01-31 14:05"

    @property
    def first(self) -> Sound:
        return self.sounds[0]


def batches(sounds: list[Sound], models: list[ModelInfo]) -> list[Batch]:
    """Sounds (newest first, as list_sounds gives them) grouped by batch, order kept."""
    names = {m.model_id: m.name for m in models}
    groups: dict[str, list[Sound]] = {}
    for sound in sounds:
        groups.setdefault(sound.batch, []).append(sound)
    out = []
    for batch, members in groups.items():
        first = members[0]
        model_id = first.request.model
        out.append(Batch(batch=batch, sounds=members, model_name=names.get(model_id, first.model_name),
                         model_exists=model_id in names, params=describe(first), created=when(first.created)))
    return out


def describe(sound: Sound) -> list[str]:
    """The parameters that made a sound, in short words."""
    r = sound.request
    parts = [f"from {sound.source_label(r.source)}"] if r.source else []
    parts += [f"seed {r.seed}", f"{r.duration_s:.3g} s" if r.source else f"{r.duration_s:g} s"]
    if r.variations > 1:
        parts.append(f"{r.variations} variations")
    if r.variation_amount != 1.0:
        parts.append(f"variation {r.variation_amount:g}")
    parts += [f"{label} {signed(value)}" for label, value in sorted(r.controls.items()) if value]
    if r.blend:
        a, b, amount = r.blend
        parts.append(f"morph {sound.source_name(a)} → {sound.source_name(b)} at {float(amount):g}")
    return parts


def format_label(sound: Sound) -> str:
    """"WAV 16-bit · 24 kHz"."""
    r = sound.request
    return f"{r.format.upper()} {r.bits}-bit · {sound.sample_rate / 1000:g} kHz"


def when(iso: str) -> str:
    """An ISO timestamp as "2025-01-31 14:05" (UTC, as stored)."""
    return iso[:16].replace("T", " ") if iso else ""

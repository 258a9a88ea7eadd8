"""The Generate tab's form: the text that was typed, a SoundRequest made from it,
and the text shown again for a stored request.

Here only text becomes numbers (with the field that was wrong); ranges,
control names and blend files are the core's to check (validate_request), so
the web and the CLI refuse the same things with the same sentences.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Mapping

from ..generation.export import AudioFormat, ExportError
from ..generation.settings import MAX_SEED
from ..library import SoundRequest
from ..library.sources import is_source_id

CONTROL_PREFIX = "control:"  # a slider's field name is "control:<label>"
FORMATS = (("wav", "WAV"), ("flac", "FLAC"))
BIT_DEPTHS = (("16", "16-bit"), ("24", "24-bit"))
RATES = (("model", "model rate"), ("44100", "44.1 kHz"), ("48000", "48 kHz"))
# What moving a named slider down / up does, in words (texture sliders have no name for it).
CONTROL_ENDS = {"brightness": ("darker", "brighter"), "loudness": ("quieter", "louder"),
                "noisiness": ("purer", "noisier"), "pitch": ("lower", "higher"), "attack": ("softer", "sharper"),
                "decay": ("shorter", "longer")}
MAX_FIELD_CHARS = 100
STARTS = ("average", "sound", "morph")  # where a new sound starts: the dataset's average, one sound, two
# File inputs of the form (multipart): each puts a kept sound into the field of the same name minus "_file".
SOURCE_FILE_FIELDS = ("source_file", "blend_a_file", "blend_b_file")
NEW_SEED_MAX = 999_999  # "New seed" picks short ones: easy to read out and type again


class FormError(ValueError):
    """A field that is not a number at all; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def new_seed() -> int:
    return random.randint(0, NEW_SEED_MAX)


def signed(value: float | str) -> str:
    """A slider value as shown: "0", "+1.5", "-0.25" (text that is not a number, as it is)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "0" if number == 0 else f"{number:+g}"


@dataclass
class GenerateForm:
    model_id: str
    seed: str
    variations: str = "1"
    duration_s: str = "2"
    variation_amount: str = "1"
    controls: dict[str, str] = field(default_factory=dict)  # label -> text
    blend_a: str = ""
    blend_b: str = ""
    blend_amount: str = "0.5"
    start: str = "average"  # one of STARTS
    source: str = ""  # the sound to start from: a dataset file name, or a kept sound's id
    source_id: str | None = None  # `source` as a kept sound's id (the route keeps a dataset file first)
    format: str = "wav"
    bits: str = "16"
    rate: str = "model"
    error: str | None = None
    error_field: str | None = None

    def control(self, label: str) -> str:
        return self.controls.get(label, "0")

    @property
    def blending(self) -> bool:
        return self.start == "morph"

    @classmethod
    def defaults(cls, model_id: str, seed: int | None = None, duration_s: float = 2.0) -> "GenerateForm":
        """A fresh form; `duration_s` is what suits the model's sounds (ModelInfo.default_duration_s)."""
        return cls(model_id=model_id, seed=str(new_seed() if seed is None else seed), duration_s=f"{duration_s:g}")

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> "GenerateForm":
        """The submitted form as typed (trimmed, each value capped); missing fields take their defaults."""
        def text(name: str, default: str = "") -> str:
            return str(fields.get(name, default) or "").strip()[:MAX_FIELD_CHARS]

        controls = {key[len(CONTROL_PREFIX):][:MAX_FIELD_CHARS]: str(value).strip()[:MAX_FIELD_CHARS]
                    for key, value in fields.items() if key.startswith(CONTROL_PREFIX)}
        start = text("start")
        if start not in STARTS:  # older forms (and scripts) say what they want by filling the blend in
            start = "morph" if text("blend_a") or text("blend_b") else "average"
        return cls(start=start, source=text("source"), model_id=text("model"), seed=text("seed"), variations=text("variations", "1"),
                   duration_s=text("duration_s", "2"), variation_amount=text("variation_amount", "1"),
                   controls=controls, blend_a=text("blend_a"), blend_b=text("blend_b"),
                   blend_amount=text("blend_amount", "0.5"), format=text("format", "wav"), bits=text("bits", "16"),
                   rate=text("rate", "model"))

    @classmethod
    def from_request(cls, request: SoundRequest) -> "GenerateForm":
        """The form that made a stored request (the Generate tab shows a result with its settings)."""
        blend = request.blend or ("", "", 0.5)
        start = "sound" if request.source else "morph" if request.blend else "average"
        return cls(start=start, source=request.source or "", source_id=request.source, model_id=request.model, seed=str(request.seed), variations=str(request.variations),
                   duration_s=f"{round(request.duration_s, 1) if request.source else request.duration_s:g}",
                   variation_amount=f"{request.variation_amount:g}",
                   controls={label: f"{value:g}" for label, value in request.controls.items()},
                   blend_a=blend[0], blend_b=blend[1], blend_amount=f"{float(blend[2]):g}",
                   format=request.format, bits=str(request.bits), rate=str(request.rate or "model"))

    def to_request(self) -> SoundRequest:
        """A SoundRequest (not yet validated), or FormError naming the field."""
        if not self.model_id:
            raise FormError("model", "Choose a model to generate with.")
        seed = _whole(self.seed, "seed", f"Seed must be a whole number from 0 to {MAX_SEED} (or press New seed).")
        variations = _whole(self.variations, "variations", "Number of variations must be a whole number from 1 to 8.")
        duration = _number(self.duration_s, "duration_s", "Duration must be a number of seconds, like 2.5.")
        amount = _number(self.variation_amount, "variation_amount", "Variation amount must be a number from 0 to 2.")
        source = None
        if self.start == "sound":
            source = self.source_id or (self.source if is_source_id(self.source) else None)
            if source is None:
                raise FormError("source", "Choose a sound to start from, or upload one.")
        controls = {}
        for label, text in self.controls.items():
            value = _number(text or "0", "controls", f"Control {label!r} must be a number from -3 to 3.")
            if value != 0:
                controls[label] = value
        blend = None
        if self.start == "morph":
            if not (self.blend_a and self.blend_b):
                raise FormError("blend", "Choose two sounds to morph between (from your dataset, or upload them).")
            blend_amount = _number(self.blend_amount, "blend", "Blend amount must be a number from 0 to 1.")
            blend = (self.blend_a, self.blend_b, blend_amount)
        try:
            fmt = AudioFormat.parse(self.format, self.bits, self.rate)
        except ExportError as exc:
            raise FormError("format", str(exc)) from None
        return SoundRequest(model=self.model_id, seed=seed, variations=variations, duration_s=duration,
                            controls=controls, variation_amount=amount, blend=blend, format=fmt.format,
                            bits=fmt.bits, rate=fmt.rate, source=source)


def _number(text: str, name: str, message: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FormError(name, message) from None
    if not math.isfinite(value):
        raise FormError(name, message)
    return value


def _whole(text: str, name: str, message: str) -> int:
    value = _number(text, name, message)
    if value != int(value):
        raise FormError(name, message)
    return int(value)

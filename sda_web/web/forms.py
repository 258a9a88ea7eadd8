"""The Train tab's settings form: defaults from a preset, parsing, validation.

A ConfigForm carries the raw strings (to re-display exactly what was typed),
one message per bad field, and the TrainingConfig when everything is valid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from ..training.config import ConfigError, OverfittingPreset, TrainingConfig, get_adaptive_config
from .templating import fmt_number

PRESETS = (
    (OverfittingPreset.CONSERVATIVE.value, "Conservative"),
    (OverfittingPreset.BALANCED.value, "Balanced"),
    (OverfittingPreset.AGGRESSIVE.value, "Aggressive"),
)
DEFAULT_PRESET = OverfittingPreset.BALANCED.value
ADVANCED = ("patience", "dropout", "weight_decay", "kl_weight_max")

OPTIONAL = ("patience",)
# name: (label, kind, low, high). Bounds are inclusive.
FIELDS = {
    "epochs": ("Max epochs", int, 1, 10_000),
    "learning_rate": ("Learning rate", float, 1e-7, 0.1),
    "dropout": ("Dropout", float, 0.0, 0.5),
    "weight_decay": ("Weight decay", float, 0.0, 0.01),
    "kl_weight_max": ("KL weight max", float, 0.0, 1.0),
    "patience": ("Patience", int, 0, 10_000),
}


@dataclass
class ConfigForm:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    config: TrainingConfig | None = None

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors

    @property
    def advanced_error(self) -> bool:
        return any(name in self.errors for name in ADVANCED)


def preset_values(file_count: int, preset: str) -> dict[str, str]:
    """The form's values for `preset` on a dataset of `file_count` files."""
    cfg = get_adaptive_config(max(1, file_count), preset)
    return {
        "preset": cfg.preset,
        "epochs": str(cfg.epochs),
        "learning_rate": fmt_number(cfg.learning_rate),
        "dropout": fmt_number(cfg.dropout),
        "weight_decay": fmt_number(cfg.weight_decay),
        "kl_weight_max": fmt_number(cfg.kl_weight_max),
        "patience": str(cfg.patience),
    }


def default_form(file_count: int, preset: str | None = None) -> ConfigForm:
    try:
        preset = OverfittingPreset.parse(preset or DEFAULT_PRESET).value
    except ConfigError:
        preset = DEFAULT_PRESET
    return ConfigForm(values=preset_values(file_count, preset))


MAX_FIELD_CHARS = 100


def parse_field(name: str, text: str) -> int | float:
    """One settings field as a number within its bounds, or ValueError with the sentence to show."""
    label, kind, low, high = FIELDS[name]
    text = (text or "").strip()
    if not text:
        raise ValueError(f"{label} is required.")
    if len(text) > MAX_FIELD_CHARS:
        raise ValueError(f"{label} must be a number between {fmt_number(low)} and {fmt_number(high)}.")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{label} must be a number, like {fmt_number(high)}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{label} must be a finite number.")
    if kind is int:
        if value != int(value):
            raise ValueError(f"{label} must be a whole number.")
        value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{label} must be between {fmt_number(low)} and {fmt_number(high)}.")
    return value


def parse_config_form(data: Mapping[str, str], file_count: int) -> ConfigForm:
    """Validate a submitted form; on success `.config` is ready for the runner."""
    raw = {name: str(data.get(name, "") or "").strip()[:200] for name in ("preset", "start_from", *FIELDS)}
    form = ConfigForm(values=raw)
    try:
        preset = OverfittingPreset.parse(raw["preset"] or DEFAULT_PRESET)
    except ConfigError as exc:
        form.errors["preset"] = str(exc)
        return form
    form.values["preset"] = preset.value

    parsed: dict[str, float | int] = {}
    for name in FIELDS:
        if name in OPTIONAL and name not in data:
            continue  # a form from before the field existed: the preset's value
        try:
            parsed[name] = parse_field(name, raw[name])
        except ValueError as exc:
            form.errors[name] = str(exc)
    if form.errors:
        return form

    try:
        form.config = get_adaptive_config(max(1, file_count), preset).with_overrides(**parsed)
    except ConfigError as exc:
        form.errors["form"] = str(exc)
    return form

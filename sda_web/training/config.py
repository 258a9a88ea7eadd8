"""Training configuration: one dataclass, three presets, sized to the dataset.

A tiny dataset overfits fast, so it gets more epochs per file but also more
regularisation (dropout, weight decay) and stronger augmentation; a large one
needs fewer passes and less help.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum

from .split import held_out_count


class ConfigError(ValueError):
    """A training setting is out of range; the message says which and why."""


class OverfittingPreset(str, Enum):
    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"

    @classmethod
    def parse(cls, value: "str | OverfittingPreset") -> "OverfittingPreset":
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ConfigError(f"Unknown preset {value!r}; choose one of {names}.") from None


RENAMED = {"augment_pitch_bins": "augment_band_shift"}  # old key -> today's name


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 150
    learning_rate: float = 2e-3
    batch_size: int = 16
    dropout: float = 0.1
    weight_decay: float = 1e-4
    kl_weight_max: float = 0.1
    kl_warmup_fraction: float = 0.3  # share of epochs over which the KL weight ramps 0 -> max
    free_bits: float = 0.25  # nats per latent dimension below which KL is not pushed down
    latent_dim: int = 64  # the global latent: what a sound is (the controls live here)
    local_dim: int = 8  # the local latent, every 4 frames: how it unfolds
    width: int = 96  # channels at half the frame rate (a quarter rate uses 1.5x)
    prior_weight: float = 0.5  # weight of the reconstruction from the global latent alone (how new sounds are made)
    spectral_weight: float = 0.3  # weight of the linear-magnitude term (spectral convergence) in the reconstruction
    attribute_weight: float = 0.1  # weight of the term that keeps the first latent dimensions in order of brightness, loudness, decay, pitch
    attribute_sharpness: float = 10.0  # how sharply that term tells two sounds apart (tanh of sharpness x difference)
    segment_seconds: float = 1.5  # a sound's head (what the global latent sees), the longest training window
    augment: bool = True
    augment_gain_db: float = 6.0  # random gain within +/- this many dB
    augment_band_shift: int = 2  # random shift of up to this many bands (recorded as augment_pitch_bins before)
    val_fraction: float = 0.2
    patience: int = 0  # stop after this many epochs without a new best held-out loss (0: train to the end)
    preview_every: int = 10
    checkpoint_every: int = 5
    grad_clip: float = 1.0
    seed: int = 1234
    preset: str = OverfittingPreset.BALANCED.value

    def validated(self) -> "TrainingConfig":
        """Return self, or raise ConfigError naming the first bad value."""
        _check_int(self.epochs, "Max epochs", 1, 100_000)
        _check_float(self.learning_rate, "Learning rate", 1e-7, 0.1)
        _check_int(self.batch_size, "Batch size", 1, 4096)
        _check_float(self.dropout, "Dropout", 0.0, 1.0, hi_open=True)
        _check_float(self.weight_decay, "Weight decay", 0.0, 1.0)
        _check_float(self.kl_weight_max, "KL weight max", 0.0, 10.0)
        _check_float(self.kl_warmup_fraction, "KL warm-up fraction", 0.0, 1.0)
        _check_float(self.free_bits, "Free bits", 0.0, 10.0)
        _check_int(self.latent_dim, "Latent size", 2, 1024)
        _check_int(self.local_dim, "Local latent size", 1, 256)
        _check_int(self.width, "Width", 4, 512)
        _check_float(self.prior_weight, "Prior reconstruction weight", 0.0, 100.0)
        _check_float(self.spectral_weight, "Spectral loss weight", 0.0, 100.0)
        _check_float(self.attribute_weight, "Attribute weight", 0.0, 100.0)
        _check_float(self.attribute_sharpness, "Attribute sharpness", 0.01, 1000.0)
        _check_float(self.segment_seconds, "Segment length", 0.1, 10.0)
        _check_float(self.augment_gain_db, "Augmentation gain", 0.0, 24.0)
        _check_int(self.augment_band_shift, "Augmentation band shift", 0, 16)
        _check_float(self.val_fraction, "Validation fraction", 0.0, 0.9)
        _check_int(self.patience, "Patience", 0, 100_000)
        _check_int(self.preview_every, "Preview interval", 1, 100_000)
        _check_int(self.checkpoint_every, "Checkpoint interval", 1, 100_000)
        _check_float(self.grad_clip, "Gradient clip", 0.0, 1e6)
        _check_int(self.seed, "Seed", 0, 2**31 - 1)
        OverfittingPreset.parse(self.preset)
        return self

    def with_overrides(self, **overrides) -> "TrainingConfig":
        """Apply user overrides (None means keep), re-deriving the preview and
        checkpoint intervals when the epoch count changes, then validate."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        cfg = replace(self, **given)
        if "epochs" in given:
            _check_int(cfg.epochs, "Max epochs", 1, 100_000)
            if "preview_every" not in given:
                cfg = replace(cfg, preview_every=preview_interval(cfg.epochs))
            if "checkpoint_every" not in given:
                cfg = replace(cfg, checkpoint_every=checkpoint_interval(cfg.epochs))
            preset = OverfittingPreset.parse(cfg.preset)
            if "patience" not in given and self.patience == default_patience(self.epochs, preset):
                cfg = replace(cfg, patience=default_patience(cfg.epochs, preset))  # the preset's, rescaled
        return cfg.validated()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingConfig":
        known = {f.name for f in fields(cls)}
        data = {RENAMED.get(k, k): v for k, v in data.items()}  # older runs' config.json and checkpoints
        data.setdefault("attribute_weight", 0.0)  # runs from before the term trained (and resume) without it
        return cls(**{k: v for k, v in data.items() if k in known})


MAX_PREVIEWS = 20


def preview_interval(epochs: int) -> int:
    """Epochs between previews so a run writes at most about MAX_PREVIEWS."""
    return max(1, math.ceil(epochs / MAX_PREVIEWS))


def default_patience(epochs: int, preset: OverfittingPreset) -> int:
    """Epochs without a new best before a run stops itself. Generous: with one or two held-out
    files the best moves in jumps (a 5-file demo run found new bests 90 epochs apart), and
    the best weights are kept whatever happens. Aggressive trains to the end."""
    if preset is OverfittingPreset.AGGRESSIVE:
        return 0
    share = 5 if preset is OverfittingPreset.CONSERVATIVE else 3
    return max(10, math.ceil(epochs / share))


def checkpoint_interval(epochs: int) -> int:
    return max(1, min(10, math.ceil(epochs / 40)))


# Per dataset-size tier: (max files, epochs, learning rate, dropout, weight decay, augment gain dB)
_TIERS = (
    (10, 300, 2e-3, 0.3, 1e-3, 6.0),
    (50, 200, 2e-3, 0.2, 5e-4, 4.0),
    (200, 120, 2e-3, 0.1, 1e-4, 3.0),
    (math.inf, 80, 2e-3, 0.05, 1e-5, 2.0),
)


# The model of whole sounds takes one optimiser step per batch of *sounds*, so a set of tens of
# files gets few steps an epoch (Millo_MultiLayered2, 42 files trained at batch 8: 6), and its
# reconstruction is limited by steps, not passes (docs/DESIGN-NOTES.md, stop 24: 120 -> 480
# epochs took that kit's transform LSD from 5.2 to 4.8 dB on its training files). A set of more
# than FEW_FILES files gets epochs enough for MIN_STEPS steps, at most MAX_EPOCH_FACTOR x its
# tier's; the smallest sets keep theirs (they memorise first).
MIN_STEPS = 3000
MAX_EPOCH_FACTOR = 4
FEW_FILES = 10


def epochs_for_steps(tier_epochs: int, file_count: int, batch: int,
                     val_fraction: float = TrainingConfig.val_fraction) -> int:
    """The tier's epochs, raised so that training takes about MIN_STEPS optimiser steps."""
    if file_count <= FEW_FILES:
        return tier_epochs
    trained = file_count - held_out_count(file_count, val_fraction)
    steps_per_epoch = math.ceil(trained / batch)
    return min(MAX_EPOCH_FACTOR * tier_epochs, max(tier_epochs, math.ceil(MIN_STEPS / steps_per_epoch)))


def get_adaptive_config(file_count: int, preset: "str | OverfittingPreset" = OverfittingPreset.BALANCED) -> TrainingConfig:
    """Defaults sized to a dataset of `file_count` files for the given preset."""
    preset = OverfittingPreset.parse(preset)
    if not isinstance(file_count, int) or file_count < 1:
        raise ConfigError("A dataset needs at least one usable file before training.")
    _, epochs, lr, dropout, wd, gain = next(t for t in _TIERS if file_count <= t[0])
    # Small batches: more steps per epoch (whole sounds batch by length, so a batch costs what its
    # sounds do). On a 52-file kit, batch 8 vs 16: transform LSD 1.52x vs 1.68x the ceiling, quiet-cell
    # hiss +1.0 vs +3.3 dB, for 2.3x vs 1.8x the segment model's epoch time (docs/DESIGN-NOTES.md).
    batch = 8 if file_count <= 100 else 16
    epochs = epochs_for_steps(epochs, file_count, batch)
    kl = 0.1
    if preset is OverfittingPreset.CONSERVATIVE:
        epochs, lr, dropout, wd, kl = round(epochs * 0.6), lr * 0.5, dropout + 0.1, wd * 2, kl * 2
    elif preset is OverfittingPreset.AGGRESSIVE:
        epochs, lr, dropout, wd, kl = round(epochs * 1.5), lr * 2, dropout * 0.5, wd * 0.5, kl * 0.5
    patience = default_patience(epochs, preset)
    return TrainingConfig(
        epochs=epochs,
        learning_rate=lr,
        batch_size=batch,
        dropout=round(min(dropout, 0.5), 3),
        weight_decay=wd,
        kl_weight_max=kl,
        augment=True,
        augment_gain_db=gain,
        augment_band_shift=2 if file_count <= 50 else 1,
        preview_every=preview_interval(epochs),
        checkpoint_every=checkpoint_interval(epochs),
        patience=patience,
        preset=preset.value,
    ).validated()


def _check_int(value, label: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{label} must be a whole number, got {value!r}.")
    if not lo <= value <= hi:
        raise ConfigError(f"{label} must be between {lo} and {hi}, got {value}.")


def _check_float(value, label: str, lo: float, hi: float, hi_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{label} must be a finite number, got {value!r}.")
    too_high = value >= hi if hi_open else value > hi
    if value < lo or too_high:
        bound = f"below {hi}" if hi_open else f"at most {hi}"
        raise ConfigError(f"{label} must be at least {lo} and {bound}, got {value}.")

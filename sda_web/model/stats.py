"""The normalisation of log features a model was trained with (it travels in its checkpoint)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureStats:
    """Normalisation of log-feature values: (x - mean) / std, from the training files."""
    mean: float
    std: float

    def normalise(self, log_values):
        return (log_values - self.mean) / self.std

    def denormalise(self, values):
        return values * self.std + self.mean

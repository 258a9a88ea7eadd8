"""Learning-rate and KL-weight schedules as plain functions of the epoch.

The LR warms up linearly, then follows a cosine from `decay_from_lr` down to a
floor at `total_epochs`. When a resumed run raises its epoch count the plan is
re-drawn from the epoch and LR where it stopped, so the LR never climbs back
up (an earlier design restored a scheduler whose LR rose again).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

FLOOR_RATIO = 0.05


@dataclass(frozen=True)
class LRPlan:
    base_lr: float
    warmup_epochs: int
    decay_from_epoch: int
    decay_from_lr: float
    total_epochs: int

    @classmethod
    def new(cls, base_lr: float, total_epochs: int) -> "LRPlan":
        warmup = min(5, max(0, total_epochs // 20))
        return cls(base_lr, warmup, warmup, base_lr, total_epochs)

    def lr_at(self, epoch_index: int) -> float:
        """LR for the epoch with 0-based index `epoch_index`."""
        if epoch_index < self.warmup_epochs:
            return self.base_lr * (epoch_index + 1) / (self.warmup_epochs + 1)
        floor = self.base_lr * FLOOR_RATIO
        span = max(1, self.total_epochs - self.decay_from_epoch)
        progress = min(1.0, max(0.0, (epoch_index - self.decay_from_epoch) / span))
        start = max(self.decay_from_lr, floor)
        return floor + (start - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def extended_to(self, total_epochs: int, current_epoch: int) -> "LRPlan":
        """The plan for a run resumed at `current_epoch` with a new total."""
        if total_epochs == self.total_epochs:
            return self
        if current_epoch <= self.decay_from_epoch:  # still warming up: the cosine has not begun
            return replace(self, total_epochs=total_epochs)
        return replace(self, decay_from_epoch=current_epoch, decay_from_lr=self.lr_at(current_epoch),
                       total_epochs=total_epochs)

    def to_dict(self) -> dict:
        return asdict(self)


def kl_ramp_epochs(total_epochs: int, warmup_fraction: float) -> int:
    """Epochs over which the KL weight ramps up; fixed when a run starts, so
    raising max epochs on resume never lowers a KL weight already reached."""
    return max(1, round(total_epochs * warmup_fraction))


def kl_weight_at(epoch_index: int, ramp_epochs: int, kl_weight_max: float) -> float:
    """KL weight ramps linearly from ~0 to kl_weight_max over `ramp_epochs`."""
    return kl_weight_max * min(1.0, (epoch_index + 1) / ramp_epochs)

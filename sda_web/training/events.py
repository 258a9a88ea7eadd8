"""Events the training runner emits: small, frozen, plain data.

They cross a process boundary (training process -> relay thread -> web loop
or CLI) as pickles, so they hold only numbers and strings, never tensors or
open files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    dataset: str
    total_epochs: int
    start_epoch: int  # 0 for a new run; the epoch already done for a resumed one
    train_files: int
    val_files: int
    device: str


@dataclass(frozen=True)
class StepProgress:
    epoch: int  # 1-based epoch in progress
    step: int  # steps done in this epoch
    steps_per_epoch: int


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based, the epoch just finished
    total_epochs: int
    train_loss: float
    val_loss: float | None  # None when the dataset has a single file
    train_recon: float
    train_kl: float
    val_recon: float | None
    val_kl: float | None
    learning_rate: float
    elapsed_s: float  # wall time of this run, resumed sessions included
    eta_s: float  # estimate for the remaining epochs

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PreviewEvent:
    epoch: int
    audio_path: str  # reconstruction of a validation clip (or training clip)
    prior_path: str  # a sample drawn from the prior
    kind: Literal["preview"] = "preview"


@dataclass(frozen=True)
class TrainingCompleteEvent:
    # stopped: no new best for `patience` epochs (the run stopped itself; it resumes like a cancelled one)
    outcome: Literal["completed", "stopped", "cancelled", "failed"]
    epochs_done: int
    total_epochs: int
    best_val_loss: float | None
    checkpoint_path: str | None
    error: str | None = None
    best_epoch: int | None = None
    patience: int | None = None  # with "stopped": the epochs it waited for a new best


TrainingEvent = Union[RunStarted, StepProgress, EpochMetrics, PreviewEvent, TrainingCompleteEvent]

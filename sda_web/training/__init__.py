"""Training: config and presets, the loop, the runner, events, checkpoints.

Importing this package does not import torch; a run imports it where it trains
(a child process, see worker.py).
"""
from ..checkpoints import CheckpointError, get_best_checkpoint, get_latest_checkpoint, list_checkpoints
from .config import ConfigError, OverfittingPreset, TrainingConfig, get_adaptive_config
from .events import EpochMetrics, PreviewEvent, RunStarted, StepProgress, TrainingCompleteEvent, TrainingEvent
from .devices import resolve_device
from .runner import RunnerBusy, TrainingRunner
from .runs import RunError, RunInfo, latest_resumable_run, list_previews, list_runs, load_history, load_run

__all__ = [
    "CheckpointError", "get_best_checkpoint", "get_latest_checkpoint", "list_checkpoints",
    "ConfigError", "OverfittingPreset", "TrainingConfig", "get_adaptive_config",
    "EpochMetrics", "PreviewEvent", "RunStarted", "StepProgress", "TrainingCompleteEvent", "TrainingEvent",
    "RunnerBusy", "TrainingRunner", "resolve_device",
    "RunError", "RunInfo", "latest_resumable_run", "list_previews", "list_runs", "load_history", "load_run",
]

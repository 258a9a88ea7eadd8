"""One training run from start to its final event, wherever it runs.

`run_session` is the whole body of a run: it trains, checkpoints and writes
previews, reports through `emit`, and turns whatever happens into exactly one
TrainingCompleteEvent (completed, cancelled or failed), which it returns
rather than emits, so the caller can mark itself idle first. The runner calls
it on a thread of its own process (in-process mode) or in a child process
(`worker.py`); the Session is plain, picklable data for that reason.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..checkpoints import CheckpointError
from ..datasets import DatasetError
from .config import ConfigError, TrainingConfig
from .events import TrainingCompleteEvent, TrainingEvent
from .runs import RunError, now_iso, write_progress, write_run_record

Emit = Callable[[TrainingEvent], None]
TimingSink = Callable[[dict], None]


@dataclass
class Session:
    """What a run needs, decided and validated by the runner before it starts."""
    run_id: str
    run_dir: Path
    dataset: str
    config: TrainingConfig
    train_files: list[Path]
    val_files: list[Path]
    device_name: str
    resume: bool
    start_from: Path | None = None  # a new run starts from this model's best weights (its run folder)
    # Called as after_training(run_dir, device) once a run has trained an epoch or more (the sound
    # controls are made there); a module-level function, so it travels to the training process.
    after_training: Callable[[Path, object], None] | None = None
    after_cancel: bool = True  # run after_training after a cancelled run too


def run_session(session: Session, stop: threading.Event, emit: Emit, on_timing: TimingSink) -> TrainingCompleteEvent:
    """Train `session` until done, cancelled (`stop` set) or failed; record the outcome in run.json.

    `emit` must never raise (the runner wraps listeners); `on_timing` gets each epoch's timings."""
    # torch only in the training process, never in the server that imports this module
    from .data import FeaturesCancelled

    outcome = _Outcome(session.config.epochs)
    try:
        _train(session, stop, outcome, emit, on_timing)
    except FeaturesCancelled:
        outcome.outcome = "cancelled"
    except BaseException as exc:  # nothing vanishes: every failure becomes an event
        outcome.outcome = "failed"
        outcome.error = describe_failure(exc)
    try:  # run.json counts the epochs a resume would start from: those in the latest checkpoint
        write_run_record(session.run_dir, status=outcome.outcome, epochs_done=outcome.checkpoint_epoch,
                         best_val_loss=outcome.best_val, best_epoch=outcome.best_epoch,
                         patience_stop=outcome.patience, error=outcome.error, updated=now_iso())
    except Exception as exc:
        outcome.outcome, outcome.error = "failed", outcome.error or describe_failure(exc)
    return TrainingCompleteEvent(
        outcome=outcome.outcome, epochs_done=outcome.epochs_done, total_epochs=session.config.epochs,
        best_val_loss=outcome.best_val, checkpoint_path=outcome.checkpoint, error=outcome.error,
        best_epoch=outcome.best_epoch, patience=outcome.patience,
    )


@dataclass
class _Outcome:
    total: int
    outcome: str = "completed"
    epochs_done: int = 0
    checkpoint_epoch: int = 0
    best_val: float | None = None
    best_epoch: int | None = None
    patience: int | None = None  # set when the run stopped itself for want of a new best
    checkpoint: str | None = None
    error: str | None = None


def describe_failure(exc: BaseException) -> str:
    # torch only in the training process, never in the server that imports this module
    from .trainer import TrainingDiverged

    if isinstance(exc, (TrainingDiverged, CheckpointError, ConfigError, DatasetError, RunError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Training ran out of memory; use a smaller batch size or fewer/shorter files."
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return f"Could not read or write a file in the data directory ({reason}); check disk space and permissions."
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Training failed unexpectedly: {type(exc).__name__}{': ' + text if text else ''}."


def _train(session: Session, stop: threading.Event, outcome: _Outcome, emit: Emit, on_timing: TimingSink) -> None:
    """The body of a run: prepare, the epoch loop, finish."""
    from .run_state import RunState  # torch: only in the training process

    # -- prepare: features, model, optimiser; a resume restores them from latest.pt
    run = RunState(session, outcome, stop.is_set)
    cfg = run.cfg
    emit(run.started_event())

    # -- the loop: train, validate, preview, report, checkpoint
    cancelled_mid_epoch = False
    for epoch_index in range(run.epochs_done, cfg.epochs):
        epoch = epoch_index + 1
        wall0 = time.perf_counter()
        result = run.trainer.train_epoch(epoch_index, run.step_reporter(epoch, emit), stop.is_set)
        if result is None:  # cancelled mid-epoch: its steps stay in the weights, the epoch re-runs on resume
            cancelled_mid_epoch = True
            break
        val = run.trainer.validate()
        run.end_epoch(epoch, result, val)
        preview, preview_s = run.preview(epoch)
        metrics = run.metrics(epoch, result, val, time.perf_counter() - wall0)
        emit(metrics)
        write_progress(session.run_dir, metrics)
        if preview is not None:
            emit(preview)
        c0 = time.perf_counter()
        run.checkpoint_if_due(epoch)
        on_timing({
            "epoch": epoch, "wall_s": time.perf_counter() - wall0, "train_s": result.total_s,
            "compute_s": result.compute_s, "val_s": val.total_s if val else 0.0, "preview_s": preview_s,
            "checkpoint_s": time.perf_counter() - c0,
        })
        if stop.is_set():
            break
        if run.out_of_patience(epoch):
            outcome.outcome, outcome.patience = "stopped", cfg.patience
            break

    # -- finish: the outcome, a last checkpoint, then what generation makes of the model
    if run.epochs_done < cfg.epochs and outcome.outcome != "stopped":
        outcome.outcome = "cancelled"
    run.save_at_the_end(cancelled_mid_epoch)
    wanted = session.after_training is not None and (session.after_cancel or outcome.outcome != "cancelled")
    if run.epochs_done > 0 and wanted:  # never turns a trained run into a failed one
        try:
            session.after_training(session.run_dir, run.device)
        except Exception:
            logging.getLogger(__name__).exception("Latent analysis of run %s failed; the model is kept.", session.run_id)

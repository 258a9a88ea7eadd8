"""Runs on disk: one folder per training run, readable without torch.

<data>/runs/<run_id>/run.json      status and summary (rewritten atomically)
                    config.json   the TrainingConfig
                    features.json feature parameters + normalisation stats
                    metrics.json  the full epoch history (written with each checkpoint)
                    progress.json the latest epoch, rewritten every epoch (for followers in
                                  other processes: `sda train` queued on a server, `sda queue`)
                    checkpoints/  latest.pt, best.pt
                    previews/     epoch_NNNN_recon.wav, epoch_NNNN_prior.wav
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..storage import atomic_write_json, read_json, read_records
from .events import EpochMetrics, PreviewEvent

RUN_STATUSES = ("running", "completed", "stopped", "cancelled", "failed", "interrupted")
_PREVIEW_RE = re.compile(r"^epoch_(\d{4,})_recon\.wav$")
_PREVIEW_FILE_RE = re.compile(r"^epoch_\d{4,}_(recon|prior)\.wav$")  # either preview of an epoch
MAX_RUN_ID_LENGTH = 121
# A run folder's name, and so a model's id (an imported one too): the one pattern every layer checks.
RUN_ID_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_RUN_ID_LENGTH - 1}}}"
_RUN_ID_RE = re.compile(f"^{RUN_ID_PATTERN}$")

# Runs owned by a live runner in this process; a run.json that says "running"
# without an owner here was left by a process that died: it is "interrupted".
_LIVE_RUNS: set[str] = set()


class RunError(ValueError):
    """A run cannot be found or read; the message says which and why."""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    dataset: str
    status: str
    created: str
    epochs_done: int
    total_epochs: int
    best_val_loss: float | None
    has_checkpoint: bool
    run_dir: Path
    error: str | None = None
    typical_seconds: float | None = None  # median length of the sounds it learnt from (None: older runs)
    best_epoch: int | None = None  # the epoch of the best weights (None: older runs, or none yet)
    patience: int | None = None  # with status "stopped": the epochs it waited for a new best
    started_from: str | None = None  # the model whose weights it started from (None: from scratch)


def runs_root(data_dir: Path) -> Path:
    return Path(data_dir) / "runs"


def run_dir_for(data_dir: Path, run_id: str) -> Path:
    if not _RUN_ID_RE.match(run_id or ""):
        raise RunError(f"{run_id!r} is not a valid run id.")
    return runs_root(data_dir) / run_id


def new_run_id(dataset: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{dataset}-{stamp}-{os.getpid() % 1000:03d}{int(time.time() * 1000) % 1000:03d}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_run_record(run_dir: Path, **fields) -> dict:
    """Merge `fields` into run.json (atomically) and return the new record."""
    path = Path(run_dir) / "run.json"
    record = read_json(path) if path.exists() else {}
    record.update(fields)
    atomic_write_json(path, record)
    return record


def _positive(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _whole(value) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


SEGMENT_MODEL_CANNOT_RESUME = ("This run was trained with the earlier segment model, which cannot train further; "
                               "its model still generates, and a new run trains the model of whole sounds.")


def is_segment_run(run_dir: Path) -> bool:
    """Whether a run trained the segment model of earlier releases (its config has no local
    latent): it generates, but cannot be resumed by this release's trainer."""
    try:
        config = read_json(Path(run_dir) / "config.json")
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config) and "local_dim" not in config


def mark_live(run_id: str, live: bool) -> None:
    (_LIVE_RUNS.add if live else _LIVE_RUNS.discard)(run_id)


def load_run(data_dir: Path, run_id: str) -> RunInfo:
    run_dir = run_dir_for(data_dir, run_id)
    try:
        record = read_json(run_dir / "run.json")
    except FileNotFoundError:
        raise RunError(f"There is no run called {run_id!r}.") from None
    except (OSError, ValueError):
        raise RunError(f"The record of run {run_id!r} is unreadable.") from None
    try:
        status = str(record.get("status", "interrupted"))
        if status == "running" and run_id not in _LIVE_RUNS:
            status = "interrupted"
        best = record.get("best_val_loss")
        return RunInfo(
            run_id=run_id,
            dataset=str(record.get("dataset", "")),
            status=status if status in RUN_STATUSES else "interrupted",
            created=str(record.get("created", "")),
            epochs_done=int(record.get("epochs_done", 0)),
            total_epochs=int(record.get("total_epochs", 0)),
            best_val_loss=float(best) if best is not None else None,
            has_checkpoint=(run_dir / "checkpoints" / "latest.pt").exists(),
            run_dir=run_dir,
            error=record.get("error"),
            typical_seconds=_positive(record.get("typical_seconds")),
            best_epoch=_whole(record.get("best_epoch")),
            patience=_whole(record.get("patience_stop")),
            started_from=record.get("started_from") or None,
        )
    except (AttributeError, TypeError, ValueError):
        raise RunError(f"The record of run {run_id!r} is unreadable.") from None


def list_runs(data_dir: Path, dataset: str | None = None) -> list[RunInfo]:
    """Runs newest first; unreadable run folders are skipped."""
    runs = [info for info in read_records(runs_root(data_dir), _RUN_ID_RE, lambda d: load_run(data_dir, d.name), (RunError,))
            if dataset is None or info.dataset == dataset]
    runs.sort(key=lambda r: (r.created, r.run_id), reverse=True)
    return runs


def is_imported(run_dir: Path) -> bool:
    """Whether a run folder came from an imported model (weights only: nothing to resume)."""
    try:
        return bool(read_json(Path(run_dir) / "run.json").get("imported_from"))
    except (OSError, ValueError, AttributeError):
        return False


def latest_resumable_run(data_dir: Path, dataset: str) -> RunInfo | None:
    """The run Resume Training continues on `dataset`: the newest with a checkpoint that this
    release can train further (not an imported model, not an earlier segment model)."""
    return next((r for r in list_runs(data_dir, dataset)
                 if r.has_checkpoint and not is_imported(r.run_dir) and not is_segment_run(r.run_dir)), None)


def load_history(run_dir: Path) -> list[EpochMetrics]:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return []
    return [EpochMetrics(**row) for row in read_json(path)]


def save_history(run_dir: Path, history: list[EpochMetrics]) -> None:
    atomic_write_json(Path(run_dir) / "metrics.json", [m.to_dict() for m in history])


def write_progress(run_dir: Path, metrics: EpochMetrics) -> None:
    atomic_write_json(Path(run_dir) / "progress.json", metrics.to_dict(), durable=False)


def read_progress(run_dir: Path) -> EpochMetrics | None:
    """The run's latest epoch, as its trainer last wrote it (None: none yet, or unreadable)."""
    try:
        return EpochMetrics(**read_json(Path(run_dir) / "progress.json"))
    except (OSError, ValueError, TypeError):
        return None


def preview_file(data_dir: Path, run_id: str, name: str) -> Path:
    """The preview WAV `name` of run `run_id`: only a preview file's name, only inside that run's
    folder, only one that exists; RunError otherwise."""
    if not _PREVIEW_FILE_RE.match(name or ""):
        raise RunError(f"{str(name)[:60]!r} is not the name of a preview.")
    path = run_dir_for(data_dir, run_id) / "previews" / name
    if not path.resolve().is_relative_to(runs_root(data_dir).resolve()) or not path.is_file():
        raise RunError(f"Run {run_id!r} has no preview {name!r}.")
    return path


def preview_paths(run_dir: Path, epoch: int) -> tuple[Path, Path]:
    folder = Path(run_dir) / "previews"
    return folder / f"epoch_{epoch:04d}_recon.wav", folder / f"epoch_{epoch:04d}_prior.wav"


def list_previews(run_dir: Path) -> list[PreviewEvent]:
    folder = Path(run_dir) / "previews"
    if not folder.is_dir():
        return []
    previews = []
    for path in folder.iterdir():
        match = _PREVIEW_RE.match(path.name)
        if match:
            epoch = int(match.group(1))
            recon, prior = preview_paths(run_dir, epoch)
            previews.append(PreviewEvent(epoch=epoch, audio_path=str(recon), prior_path=str(prior)))
    previews.sort(key=lambda p: p.epoch)
    return previews


def delete_run(data_dir: Path, run_id: str) -> None:
    if run_id in _LIVE_RUNS:
        raise RunError("That run is training right now; cancel it first.")
    shutil.rmtree(run_dir_for(data_dir, run_id), ignore_errors=False)

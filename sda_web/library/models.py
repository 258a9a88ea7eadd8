"""Trained models: every run with a checkpoint, under a name the user can change.

A model *is* its run folder (`<data>/runs/<run_id>/`); its id is the run id.
The display name lives in a sidecar, `model.json`, which only this module
writes, so a rename never races the training run's rewrites of run.json.
No torch here. Moving a model between machines (one zip) is `transfer.py`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..generation.novelty import stored_copy_share
from ..generation.settings import default_duration
from ..storage import atomic_write_json, read_json
from ..training.runs import RunError, RunInfo, delete_run, is_segment_run, list_runs, load_run

MODEL_FILE = "model.json"
BEST, LAST = "best", "last"  # which of a model's weights generate: best.pt or latest.pt
WEIGHTS = (BEST, LAST)
MAX_NAME_LENGTH = 80
LATEST = "latest"  # in the CLI: the newest model


class ModelError(ValueError):
    """A model operation that cannot be done; the message says what and what to do."""


class UnknownModel(ModelError):
    """No model matches the given id or name."""


class ModelBusy(ModelError):
    """The model is training right now."""


class ImportRefused(ModelError):
    """A file offered as a model export that cannot be imported; nothing was written."""


@dataclass(frozen=True)
class ModelInfo:
    model_id: str  # the run id
    name: str  # display name (editable)
    dataset: str
    epochs_trained: int
    total_epochs: int
    best_val_loss: float | None
    created: str  # ISO 8601, UTC
    status: str  # running | completed | cancelled | failed | interrupted
    controls: tuple[str, ...]  # sound-control labels, when the latent analysis exists
    run_dir: Path
    typical_seconds: float | None = None  # median length of the sounds it learnt from (None: older runs)
    weights: str = BEST  # which weights make its sounds: BEST (the lowest validation loss) or LAST
    best_epoch: int | None = None  # the epoch of the best weights (None: older runs)
    started_from: str | None = None  # the model it started from (None: from scratch)

    @property
    def default_duration_s(self) -> float:
        """What Generate and `sda generate` make when no length is asked for."""
        return default_duration(self.typical_seconds)

    @property
    def copy_share(self) -> float | None:
        """The share of near copies among variations at variation 1, once measured (after training)."""
        return stored_copy_share(self.run_dir)

    @property
    def is_training(self) -> bool:
        return self.status == "running"

    @property
    def has_analysis(self) -> bool:
        return (self.run_dir / "analysis.json").is_file()

    def to_dict(self) -> dict:
        return {"id": self.model_id, "name": self.name, "dataset": self.dataset,
                "epochs_trained": self.epochs_trained, "total_epochs": self.total_epochs,
                "best_val_loss": self.best_val_loss, "created": self.created, "status": self.status,
                "controls": list(self.controls), "run_dir": str(self.run_dir), "weights": self.weights,
                "best_epoch": self.best_epoch, "started_from": self.started_from}


def list_models(data_dir: Path) -> list[ModelInfo]:
    """Every run with a checkpoint, newest first."""
    return [_model_info(run) for run in list_runs(Path(data_dir)) if run.has_checkpoint]


def start_choices(data_dir: Path) -> list[ModelInfo]:
    """The models a new run can start from: trained, not training, and of whole sounds."""
    return [m for m in list_models(data_dir) if not m.is_training and not is_segment_run(m.run_dir)]


def load_model(data_dir: Path, model_id: str) -> ModelInfo:
    try:
        run = load_run(Path(data_dir), model_id)
    except RunError:
        raise UnknownModel(f"There is no model {model_id!r}; `sda models` lists them.") from None
    if not run.has_checkpoint:
        raise UnknownModel(f"Run {model_id!r} has no checkpoint yet, so it is not a model; "
                           "train it for an epoch first.")
    return _model_info(run)


def resolve_model(data_dir: Path, ref: str) -> ModelInfo:
    """A model by run id, by display name (case-insensitive), or "latest" (the newest)."""
    ref = (ref or "").strip()
    models = list_models(data_dir)
    if not models:
        raise UnknownModel("There are no trained models yet; train one on the Train tab or with `sda train`.")
    if ref.lower() == LATEST:
        return models[0]
    for model in models:
        if model.model_id == ref:
            return model
    named = [m for m in models if m.name.casefold() == ref.casefold()]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(m.model_id for m in named)
        raise UnknownModel(f"Several models are called {ref!r} ({ids}); use the run id or rename one.")
    raise UnknownModel(f"There is no model called {ref!r}; `sda models` lists them.")


def rename_model(data_dir: Path, model_id: str, name: str) -> ModelInfo:
    """Give a model a new display name (unique, 1-80 characters). Returns the updated info."""
    model = load_model(data_dir, model_id)
    clean = " ".join(str(name or "").split())
    if not clean:
        raise ModelError("A model name cannot be empty.")
    if len(clean) > MAX_NAME_LENGTH:
        raise ModelError(f"A model name can be at most {MAX_NAME_LENGTH} characters long.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in clean):
        raise ModelError("A model name cannot contain control characters.")
    if clean.casefold() == LATEST:
        raise ModelError(f"{LATEST!r} is reserved (it means the newest model); choose another name.")
    for other in list_models(data_dir):
        if other.model_id == model.model_id:
            continue
        if clean.casefold() == other.name.casefold():
            raise ModelError(f"Another model is already called {other.name!r}; choose a different name.")
        if clean.casefold() == other.model_id.casefold():
            raise ModelError(f"{clean!r} is another model's id; choose a different name.")
    _write_sidecar(model.run_dir, name=clean)
    return load_model(data_dir, model_id)


def choose_weights(data_dir: Path, model_id: str, which: str) -> ModelInfo:
    """Make a model generate (and export) with its best or its last weights."""
    model = load_model(data_dir, model_id)
    if which not in WEIGHTS:
        raise ModelError(f"Choose {BEST!r} or {LAST!r} weights, not {which!r}.")
    _write_sidecar(model.run_dir, weights=which)
    return load_model(data_dir, model_id)


def _sidecar(run_dir: Path) -> dict:
    try:
        data = read_json(Path(run_dir) / MODEL_FILE)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_sidecar(run_dir: Path, **fields) -> None:
    atomic_write_json(Path(run_dir) / MODEL_FILE, {**_sidecar(run_dir), **fields})


def delete_model(data_dir: Path, model_id: str) -> None:
    """Delete a model's whole run folder. Refused while it trains. Sounds made with it are kept."""
    model = load_model(data_dir, model_id)
    if model.is_training:
        raise ModelBusy(f"Model {model.name!r} is training right now; cancel the run first, then delete it.")
    pid = _training_pid(model.run_dir)
    if pid is not None:
        raise ModelBusy(f"Model {model.name!r} is being trained by another sda process (pid {pid}); stop it first.")
    try:
        delete_run(Path(data_dir), model.model_id)
    except RunError as exc:
        raise ModelBusy(str(exc)) from None


def _model_info(run: RunInfo) -> ModelInfo:
    return ModelInfo(
        model_id=run.run_id, name=_display_name(run), dataset=run.dataset, epochs_trained=run.epochs_done,
        total_epochs=run.total_epochs, best_val_loss=run.best_val_loss, created=run.created, status=run.status,
        controls=_control_labels(run.run_dir), run_dir=run.run_dir, typical_seconds=run.typical_seconds,
        weights=LAST if _sidecar(run.run_dir).get("weights") == LAST else BEST, best_epoch=run.best_epoch,
        started_from=run.started_from,
    )


def _display_name(run: RunInfo) -> str:
    name = _sidecar(run.run_dir).get("name")
    if isinstance(name, str) and name.strip():
        return name
    when = run.created[:16].replace("T", " ") if run.created else run.run_id
    return f"{run.dataset} {when}".strip()


_labels_cache: dict[Path, tuple[int, tuple[str, ...]]] = {}  # analysis.json holds every file's latent: read it once


def _control_labels(run_dir: Path) -> tuple[str, ...]:
    path = run_dir / "analysis.json"
    try:
        stamp = path.stat().st_mtime_ns
        cached = _labels_cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = _labels_cache[path] = (stamp, tuple(c["label"] for c in read_json(path)["controls"]))
        return cached[1]
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def _training_pid(run_dir: Path) -> int | None:
    """The pid of another live process that says it is training this run, if any."""
    try:
        record = read_json(run_dir / "run.json")
    except (OSError, ValueError):
        return None
    pid = record.get("pid")
    if record.get("status") != "running" or not isinstance(pid, int) or pid == os.getpid() or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    except OSError:
        return None
    return pid


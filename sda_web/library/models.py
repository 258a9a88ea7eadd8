"""Trained models: every run with a checkpoint, under a name the user can change.

A model *is* its run folder (`<data>/runs/<run_id>/`); its id is the run id.
The display name lives in a sidecar, `model.json`, which only this module
writes, so a rename never races the training run's rewrites of run.json.
No torch here (exporting a model without a best.pt imports it to slim the
checkpoint down).
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..storage import atomic_write_bytes, atomic_write_json, read_json
from ..training.runs import RunError, RunInfo, list_runs, load_run

MODEL_FILE = "model.json"
MAX_NAME_LENGTH = 80
LATEST = "latest"  # in the CLI: the newest model
EXPORTS_DIR = "exports"
_EXPORTED_FILES = ("analysis.json", "config.json", "features.json", "metrics.json", "run.json", MODEL_FILE)


class ModelError(ValueError):
    """A model operation that cannot be done; the message says what and what to do."""


class UnknownModel(ModelError):
    """No model matches the given id or name."""


class ModelBusy(ModelError):
    """The model is training right now."""


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
                "controls": list(self.controls), "run_dir": str(self.run_dir)}


def list_models(data_dir: Path) -> list[ModelInfo]:
    """Every run with a checkpoint, newest first."""
    return [_model_info(run) for run in list_runs(Path(data_dir)) if run.has_checkpoint]


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
    atomic_write_json(model.run_dir / MODEL_FILE, {"name": clean})
    return load_model(data_dir, model_id)


def delete_model(data_dir: Path, model_id: str) -> None:
    """Delete a model's whole run folder. Refused while it trains. Sounds made with it are kept."""
    from ..training.runs import delete_run

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


def export_model(data_dir: Path, model_id: str, dest: Path | None = None) -> Path:
    """One zip with everything needed to use the model elsewhere: `model.pt` (the best
    weights with their mel settings and normalisation), analysis.json (sound controls),
    config, features, metrics and records. Written atomically; returns its path
    (default `<data>/exports/<model_id>.zip`)."""
    model = load_model(data_dir, model_id)
    dest = Path(dest) if dest is not None else Path(data_dir) / EXPORTS_DIR / f"{model.model_id}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.pt", _weights_only_checkpoint(model.run_dir))
        for name in _EXPORTED_FILES:
            path = model.run_dir / name
            if path.is_file():
                archive.write(path, name)
        archive.writestr("README.txt", (
            f"sda-web model {model.name!r} (run {model.model_id}), trained on dataset {model.dataset!r} "
            f"for {model.epochs_trained} epochs.\nmodel.pt is a torch.save'd dict: 'model' (ConvVAE weights), "
            "'model_shape', 'feature_spec', 'feature_stats', 'config', 'epoch'.\n"
            "analysis.json holds the sound controls (latent directions) computed after training.\n"))
    atomic_write_bytes(dest, buffer.getvalue())
    return dest


def export_file_name(model: ModelInfo) -> str:
    """A download name for export_model's zip: the display name made filesystem-safe."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model.name).strip("-.") or model.model_id
    return f"{stem}.sda-model.zip"


def _weights_only_checkpoint(run_dir: Path) -> bytes:
    best = Path(run_dir) / "checkpoints" / "best.pt"
    if best.is_file():
        return best.read_bytes()
    import torch

    from ..training.checkpoints import get_latest_checkpoint, load_checkpoint, model_state

    payload = load_checkpoint(get_latest_checkpoint(run_dir))
    slim = {k: v for k, v in payload.items() if k not in ("trainer", "history")}
    slim["model"] = model_state(payload)
    out = io.BytesIO()
    torch.save(slim, out)
    return out.getvalue()


def _model_info(run: RunInfo) -> ModelInfo:
    return ModelInfo(
        model_id=run.run_id, name=_display_name(run), dataset=run.dataset, epochs_trained=run.epochs_done,
        total_epochs=run.total_epochs, best_val_loss=run.best_val_loss, created=run.created, status=run.status,
        controls=_control_labels(run.run_dir), run_dir=run.run_dir,
    )


def _display_name(run: RunInfo) -> str:
    try:
        name = read_json(run.run_dir / MODEL_FILE).get("name")
        if isinstance(name, str) and name.strip():
            return name
    except (OSError, ValueError, AttributeError):
        pass
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


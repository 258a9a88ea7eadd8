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

from ..generation.settings import default_duration
from ..storage import atomic_write_bytes, atomic_write_json, read_json
from ..training.runs import MAX_RUN_ID_LENGTH, RUN_ID_PATTERN, RunError, RunInfo, is_segment_run, list_runs, load_run

MODEL_FILE = "model.json"
BEST, LAST = "best", "last"  # which of a model's weights generate: best.pt or latest.pt
WEIGHTS = (BEST, LAST)
MAX_NAME_LENGTH = 80
LATEST = "latest"  # in the CLI: the newest model
EXPORTS_DIR = "exports"
_EXPORTED_FILES = ("analysis.json", "config.json", "features.json", "metrics.json", "run.json", MODEL_FILE)
# What an export may hold, and how big each part may be (a zip bomb is refused before it is inflated).
_IMPORT_LIMITS = {"model.pt": 512 << 20, "README.txt": 64 << 10, **{name: 64 << 20 for name in _EXPORTED_FILES}}
_REQUIRED = ("model.pt", "run.json")


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
        from ..generation.novelty import stored_copy_share

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
    weights with their feature settings and normalisation), analysis.json (sound controls),
    config, features, metrics and records. Written atomically; returns its path
    (default `<data>/exports/<model_id>.zip`)."""
    model = load_model(data_dir, model_id)
    dest = Path(dest) if dest is not None else Path(data_dir) / EXPORTS_DIR / f"{model.model_id}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.pt", _weights_only_checkpoint(model.run_dir, model.weights))
        for name in _EXPORTED_FILES:
            path = model.run_dir / name
            if path.is_file():
                archive.write(path, name)
        archive.writestr("README.txt", (
            f"sda-web model {model.name!r} (run {model.model_id}), trained on dataset {model.dataset!r} "
            f"for {model.epochs_trained} epochs.\nmodel.pt is a torch.save'd dict: 'model' (the VAE's weights), "
            "'model_shape' (its kind and sizes), 'feature_spec', 'feature_stats', 'config', 'epoch'.\n"
            "analysis.json holds the sound controls (latent directions) computed after training.\n"))
    atomic_write_bytes(dest, buffer.getvalue())
    return dest


def import_model(data_dir: Path, zip_path: Path) -> ModelInfo:
    """Add a model exported by `export_model` (here or on another machine) to the library.

    The whole zip is read and checked first (every member known, no paths, sizes
    bounded, CRCs, the weights load into the model they describe, every JSON parses);
    only then is the run folder written, in a staging folder moved into place with one
    rename. A refusal (ImportRefused: one sentence) leaves the library as it was.
    The model keeps its weights, feature settings and sound controls, so it makes the
    same sounds as where it was trained. Returns the imported model."""
    import shutil
    import tempfile

    from ..training.runs import runs_root

    members = _read_export(Path(zip_path))
    payload_info = _check_weights(members["model.pt"])
    documents = _check_documents(members, payload_info)
    record = documents["run.json"]

    run_id = _import_id(data_dir, record, payload_info, members["model.pt"])
    name = _import_name(data_dir, documents.get(MODEL_FILE, {}).get("name"), record)
    record = {k: v for k, v in record.items() if k != "pid"}  # a pid from another machine means nothing here
    record.update(run_id=run_id, status=record.get("status") if record.get("status") in ("completed", "cancelled")
                  else "completed", imported_from=Path(zip_path).name[:200], imported=_now())
    documents["run.json"] = record
    documents[MODEL_FILE] = {"name": name}

    root = runs_root(Path(data_dir))
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))  # not a run id: never listed
    try:
        (staging / "checkpoints").mkdir()
        for checkpoint in ("best.pt", "latest.pt"):  # latest.pt: what makes a run a model (weights only)
            atomic_write_bytes(staging / "checkpoints" / checkpoint, members["model.pt"])
        for doc_name, doc in documents.items():
            if doc_name == "analysis.json" and doc is None:
                continue
            atomic_write_json(staging / doc_name, doc)
        os.rename(staging, root / run_id)
    except OSError as exc:
        raise ModelError(f"The model could not be written to the library ({exc.strerror or exc}); "
                         "nothing was imported.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_model(data_dir, run_id)




def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_NOT_AN_EXPORT = "That file is not an sda-web model export"
_DAMAGED = ("That zip is damaged or incomplete (it may have been cut short while copying); export the model again "
            "and import the new file.")


def _read_export(path: Path) -> dict[str, bytes]:
    """Every member of an export zip, checked, in memory (ImportRefused otherwise)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        raise ImportRefused("The model file could not be read; upload or give it again.") from None
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            raise ImportRefused(_DAMAGED)
        raise ImportRefused(f"{_NOT_AN_EXPORT} (it is not a zip file); choose the .zip that Download model "
                            "or `sda export-model` made.")
    members: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > len(_IMPORT_LIMITS):
                raise ImportRefused(f"{_NOT_AN_EXPORT} (it holds {len(infos)} files); nothing was imported.")
            for info in infos:
                name = info.filename
                parts = name.replace("\\", "/").split("/")
                if name.startswith(("/", "\\")) or ".." in parts or ":" in name:
                    raise ImportRefused(f"That zip holds a path that leads outside its folder ({name[:60]!r}), "
                                        "so it was refused; nothing was imported.")
                if name not in _IMPORT_LIMITS:
                    raise ImportRefused(f"{_NOT_AN_EXPORT} (it holds {name[:60]!r}); nothing was imported.")
                if name in members:
                    raise ImportRefused(f"That zip holds {name!r} twice, so it is damaged; nothing was imported.")
                if info.file_size > _IMPORT_LIMITS[name]:
                    raise ImportRefused(f"{name} in that zip is too large to be part of a model export; "
                                        "nothing was imported.")
                with archive.open(info) as member:
                    data = member.read(_IMPORT_LIMITS[name] + 1)
                if len(data) != info.file_size:
                    raise zipfile.BadZipFile("size mismatch")
                members[name] = data
    except ImportRefused:
        raise
    except Exception:  # BadZipFile (CRC, headers), EOFError, zlib.error...: a corrupt or cut member
        raise ImportRefused(_DAMAGED) from None
    missing = [n for n in _REQUIRED if n not in members]
    if missing:
        raise ImportRefused(f"{_NOT_AN_EXPORT} (it has no {missing[0]}); nothing was imported.")
    return members


def _check_weights(data: bytes) -> dict:
    """Load model.pt safely (weights only: no code runs) into the model it describes."""
    import torch

    from ..audio.features import checkpoint_spec
    from ..model import build_model
    from ..checkpoints import FORMAT_VERSION, model_state

    damaged = "model.pt in that zip is damaged or not an sda-web model, so nothing was imported."
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        raise ImportRefused(damaged) from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ImportRefused("model.pt in that zip is not a model this version of sda-web can read; "
                            "nothing was imported.")
    try:
        shape, model = build_model(payload["model_shape"])
        spec = checkpoint_spec(payload)
        stats = payload["feature_stats"]
        if not all(isinstance(stats[k], (int, float)) and stats[k] == stats[k] for k in ("mean", "std")) \
                or not stats["std"] > 0:
            raise ValueError("bad stats")
        model.load_state_dict(model_state(payload), strict=True)
        epoch = int(payload["epoch"])
    except Exception:
        raise ImportRefused(damaged) from None
    return {"latent_dim": shape.latent_dim, "epoch": epoch, "sample_rate": spec.sample_rate,
            "run_id": payload.get("run_id"), "dataset": payload.get("dataset")}


def _check_documents(members: dict[str, bytes], weights: dict) -> dict:
    """Every JSON member parsed and of the right shape; analysis.json kept only if it fits the weights."""
    import json

    from ..generation.analysis import AnalysisError, LatentAnalysis

    documents: dict = {}
    for name in _EXPORTED_FILES:
        if name not in members:
            continue
        try:
            doc = json.loads(members[name].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ImportRefused(f"{name} in that zip is damaged, so nothing was imported.") from None
        if not isinstance(doc, list if name == "metrics.json" else dict):
            raise ImportRefused(f"{name} in that zip is not what an sda-web export holds; nothing was imported.")
        documents[name] = doc
    record = documents["run.json"]
    try:
        int(record.get("epochs_done", 0)), int(record.get("total_epochs", 0))
        str(record.get("dataset", "")), str(record.get("created", ""))
    except (TypeError, ValueError):
        raise ImportRefused("run.json in that zip is damaged, so nothing was imported.") from None
    if "analysis.json" in documents:
        try:
            analysis = LatentAnalysis.from_dict(documents["analysis.json"])
            fits = analysis.latent_dim == weights["latent_dim"] and analysis.checkpoint_epoch == weights["epoch"]
        except AnalysisError:  # well-formed, but from another version: the model comes without sliders
            documents["analysis.json"] = None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ImportRefused("analysis.json in that zip is damaged, so nothing was imported.") from None
        else:
            if not fits:
                raise ImportRefused("The sound controls in that zip belong to other weights than its model.pt; "
                                    "nothing was imported.")
    return documents


def _import_id(data_dir: Path, record: dict, weights: dict, checkpoint: bytes) -> str:
    """The run id to import under: the original one, or with -imported-N when taken by another model."""
    from ..training.runs import runs_root

    wanted = str(record.get("run_id") or weights.get("run_id") or "")
    if not re.fullmatch(RUN_ID_PATTERN, wanted):
        wanted = "imported-" + _now()[:19].replace(":", "").replace("T", "-")
    wanted = wanted[:MAX_RUN_ID_LENGTH - len("-imported-999")]  # room for the suffix below
    root = runs_root(Path(data_dir))
    for n in range(1, 1000):
        candidate = wanted if n == 1 else f"{wanted}-imported" if n == 2 else f"{wanted}-imported-{n - 1}"
        folder = root / candidate
        if not folder.exists():
            return candidate
        best = folder / "checkpoints" / "best.pt"
        try:
            if best.is_file() and best.stat().st_size == len(checkpoint) and best.read_bytes() == checkpoint:
                raise ImportRefused(f"This model is already in the library (as {_model_info_name(data_dir, candidate)!r}); "
                                    "nothing was imported.")
        except OSError:
            continue
    raise ImportRefused("Too many models share this one's id; rename or delete some, then import again.")


def _model_info_name(data_dir: Path, run_id: str) -> str:
    try:
        return load_model(data_dir, run_id).name
    except ModelError:
        return run_id


def _import_name(data_dir: Path, name, record: dict) -> str:
    """The exported display name (or dataset + date), made unique in this library."""
    clean = " ".join(str(name or "").split())[:MAX_NAME_LENGTH - 14]
    if not clean or any(ord(ch) < 32 or ord(ch) == 127 for ch in clean) or clean.casefold() == LATEST:
        created = str(record.get("created", ""))[:16].replace("T", " ")
        clean = " ".join(f"{str(record.get('dataset', 'model'))[:40]} {created}".split()) or "imported model"
    taken = {m.name.casefold() for m in list_models(data_dir)} | {m.model_id.casefold() for m in list_models(data_dir)}
    candidate, n = clean, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{clean} (imported{'' if n == 2 else f' {n - 1}'})"
    return candidate


def export_file_name(model: ModelInfo) -> str:
    """A download name for export_model's zip: the display name made filesystem-safe."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model.name).strip("-.") or model.model_id
    return f"{stem}.sda-model.zip"


def _weights_only_checkpoint(run_dir: Path, which: str = BEST) -> bytes:
    best = Path(run_dir) / "checkpoints" / "best.pt"
    if which == BEST and best.is_file():
        return best.read_bytes()
    import torch

    from ..checkpoints import get_latest_checkpoint, load_checkpoint, model_state

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


"""Models that travel: one zip holds a model's weights (best or last, slimmed to what
generation needs), its sound controls, its history and its name; importing checks every part
(sizes before inflating, the weights' format, the documents' shapes) before anything is written,
and never overwrites a model already in the library.

No torch at import (exporting a model without a best.pt imports it to slim the checkpoint down).
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

from ..checkpoints import FORMAT_VERSION, get_latest_checkpoint, load_checkpoint, model_state
from ..generation.analysis import AnalysisError, LatentAnalysis
from ..storage import atomic_write_bytes, atomic_write_json
from ..training.runs import MAX_RUN_ID_LENGTH, RUN_ID_PATTERN, runs_root
from .models import (BEST, LATEST, MAX_NAME_LENGTH, MODEL_FILE, ImportRefused, ModelError, ModelInfo, list_models,
                     load_model)

EXPORTS_DIR = "exports"
_EXPORTED_FILES = ("analysis.json", "config.json", "features.json", "metrics.json", "run.json", MODEL_FILE)
# What an export may hold, and how big each part may be (a zip bomb is refused before it is inflated).
_IMPORT_LIMITS = {"model.pt": 512 << 20, "README.txt": 64 << 10, **{name: 64 << 20 for name in _EXPORTED_FILES}}
_REQUIRED = ("model.pt", "run.json")


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

    # torch only when a zip is checked: the server and the Library's pages start without it
    from ..audio.features import checkpoint_spec
    from ..model import build_model

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

    payload = load_checkpoint(get_latest_checkpoint(run_dir))
    slim = {k: v for k, v in payload.items() if k not in ("trainer", "history")}
    slim["model"] = model_state(payload)
    out = io.BytesIO()
    torch.save(slim, out)
    return out.getvalue()

"""Checkpoints: written atomically, read with clear errors.

A checkpoint is one torch.save'd dict. `latest.pt` is what resume continues
from; `best.pt` holds the weights with the lowest validation loss so far.
Both are written to a temp file first and moved into place, so a crash during
the write leaves the previous file intact. torch is imported only to save or
load, so listing checkpoints stays cheap for the web server.
"""
from __future__ import annotations

import io
from pathlib import Path

from .storage import atomic_write_bytes

LATEST = "latest.pt"
BEST = "best.pt"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or not one of ours."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(path: Path, payload: dict) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path.name} does not exist in {path.parent}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"Checkpoint {path} is damaged or not an sda-web checkpoint ({type(exc).__name__}); "
            "resume from another checkpoint or start a new run."
        ) from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION \
            or not ("model" in payload or "trainer" in payload):
        raise CheckpointError(f"Checkpoint {path} is not an sda-web checkpoint of a version this app can read.")
    return payload


def list_checkpoints(run_dir: Path) -> list[Path]:
    folder = checkpoint_dir(run_dir)
    return sorted(p for p in folder.glob("*.pt")) if folder.is_dir() else []


def get_latest_checkpoint(run_dir: Path) -> Path | None:
    path = checkpoint_dir(run_dir) / LATEST
    return path if path.is_file() else None


def get_best_checkpoint(run_dir: Path) -> Path | None:
    path = checkpoint_dir(run_dir) / BEST
    return path if path.is_file() else get_latest_checkpoint(run_dir)


def model_state(payload: dict) -> dict:
    """The model weights of a best (weights only) or latest (full trainer state) checkpoint."""
    return payload["model"] if "model" in payload else payload["trainer"]["model"]

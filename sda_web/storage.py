"""The data directory and the small file-writing rules everything follows.

Writes that matter go to a temp file in the same folder and are moved into
place with os.replace, so a crash never leaves a half-written file behind.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

DEFAULT_DATA_DIR = "./sda-data"


def resolve_data_dir(cli_value: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $SDA_DATA_DIR, else ./sda-data (created if missing)."""
    chosen = cli_value or os.environ.get("SDA_DATA_DIR") or DEFAULT_DATA_DIR
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """`durable=False` skips the fsync: for small files rewritten often whose loss in a power
    cut costs nothing (a run's latest-epoch progress); readers still never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def json_safe(value):
    """Replace NaN/inf (invalid in JSON) with None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: Path, data, durable: bool = True) -> None:
    text = json.dumps(json_safe(data), indent=1, allow_nan=False)
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def read_json(path: Path):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_records(root: Path, id_pattern, load: Callable[[Path], T], unreadable: tuple[type[Exception], ...]) -> list[T]:
    """`load(folder)` of every folder under `root` whose name matches `id_pattern` (a compiled
    regex), in no order; folders `load` finds unreadable (raising one of `unreadable`) are skipped,
    so one damaged record never hides the others."""
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        if not entry.is_dir() or not id_pattern.match(entry.name):
            continue
        try:
            found.append(load(entry))
        except unreadable:
            continue
    return found

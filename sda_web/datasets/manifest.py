"""A dataset on disk: `<data>/datasets/<name>/manifest.json` plus its `audio/` copies.

The manifest is the single record of which files belong to the dataset; it is
always written atomically. No torch here.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import unicodedata
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from sda_web.storage import atomic_write_json, read_json

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 64
MANIFEST_FILE = "manifest.json"


class DatasetError(ValueError):
    """A dataset operation that cannot be done; the message says what and what to do."""


@dataclass(frozen=True)
class DatasetFile:
    name: str  # stored file name inside the dataset's audio/ folder
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    source_name: str  # the name (or relative path) it was imported from
    sha256: str = ""  # of the file's bytes: the same file imported twice is kept once


@dataclass(frozen=True)
class RejectedFile:
    name: str  # as the user knows it (the source name)
    reason: str


@dataclass(frozen=True)
class DatasetManifest:
    name: str
    created: str  # ISO 8601, UTC
    files: tuple[DatasetFile, ...] = ()
    rejected: tuple[RejectedFile, ...] = ()  # from the latest import only
    updated: str = ""
    already_present: tuple[str, ...] = ()  # latest import's files whose bytes were already here

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def total_duration_s(self) -> float:
        return float(sum(f.duration_s for f in self.files))

    def dataset_dir(self, data_dir) -> Path:
        return dataset_dir(data_dir, self.name)

    def audio_dir(self, data_dir) -> Path:
        return self.dataset_dir(data_dir) / "audio"

    def paths(self, data_dir) -> list[Path]:
        audio = self.audio_dir(data_dir)
        return [audio / f.name for f in self.files]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "created": self.created,
            "updated": self.updated,
            "files": [asdict(f) for f in self.files],
            "rejected": [asdict(r) for r in self.rejected],
            "already_present": list(self.already_present),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetManifest":
        return cls(
            name=str(data["name"]),
            created=str(data.get("created", "")),
            updated=str(data.get("updated", "")),
            files=tuple(
                DatasetFile(
                    name=str(f["name"]), duration_s=float(f["duration_s"]), sample_rate=int(f["sample_rate"]),
                    channels=int(f["channels"]), frames=int(f["frames"]), format=str(f.get("format", "")),
                    source_name=str(f.get("source_name", f["name"])), sha256=str(f.get("sha256", "")),
                )
                for f in data.get("files", [])
            ),
            rejected=tuple(RejectedFile(name=str(r["name"]), reason=str(r["reason"])) for r in data.get("rejected", [])),
            already_present=tuple(str(n) for n in data.get("already_present", [])),
        )


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sanitize_name(name) -> str:
    """A safe dataset name: ASCII letters, digits, - and _; spaces become -; at most 64 chars.

    Raises DatasetError when nothing usable is left."""
    text = unicodedata.normalize("NFKD", str(name or "")).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"\s+", "-", text.strip())
    text = re.sub(r"[^A-Za-z0-9_-]", "", text)
    text = re.sub(r"-{2,}", "-", text).strip("-_")[:MAX_NAME_LENGTH].strip("-_")
    if not text:
        raise DatasetError(
            f"The dataset name {str(name or '')!r} is empty or has no usable characters; "
            "use letters, digits, '-' or '_'."
        )
    return text


def datasets_root(data_dir) -> Path:
    return Path(data_dir) / "datasets"


def dataset_dir(data_dir, name: str) -> Path:
    return datasets_root(data_dir) / sanitize_name(name)


def write_manifest(data_dir, manifest: DatasetManifest) -> None:
    atomic_write_json(dataset_dir(data_dir, manifest.name) / MANIFEST_FILE, manifest.to_dict())


def read_manifest(path: Path) -> DatasetManifest:
    return DatasetManifest.from_dict(read_json(path))


def load_dataset(data_dir, name: str) -> DatasetManifest:
    """The dataset's manifest; DatasetError if there is no such dataset or it is unreadable."""
    folder = dataset_dir(data_dir, name)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise DatasetError(f"There is no dataset named {sanitize_name(name)!r}; import a folder of sounds first.")
    try:
        return read_manifest(path)
    except Exception:
        raise DatasetError(
            f"The manifest of dataset {sanitize_name(name)!r} is damaged; delete the dataset and import it again."
        ) from None


def list_datasets(data_dir) -> list[DatasetManifest]:
    """All readable datasets, sorted by name; a damaged manifest is skipped (and logged)."""
    root = datasets_root(data_dir)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.name.startswith("."):  # being deleted, or not ours
            continue
        path = folder / MANIFEST_FILE
        if not path.is_file():
            continue
        try:
            found.append(read_manifest(path))
        except Exception as exc:  # a broken manifest must not break the page listing the others
            log.warning("skipping dataset %s: unreadable manifest (%s)", folder.name, exc)
    return sorted(found, key=lambda m: (m.name.lower(), m.name))


def delete_dataset(data_dir, name: str) -> None:
    """Remove the dataset's folder (its copies and manifest; originals are elsewhere)."""
    folder = dataset_dir(data_dir, name)
    if not folder.is_dir():
        raise DatasetError(f"There is no dataset named {sanitize_name(name)!r} to delete.")
    # Move it out of sight first, so an interrupted delete never leaves half a dataset listed.
    doomed = folder.with_name(f".deleting-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)

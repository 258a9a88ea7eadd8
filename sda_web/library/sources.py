"""Sounds to start from: the files a transform or a morph was made from, kept.

    <data>/sources/<source_id>/source.json   name, where it came from, length, rate
                              audio.<ext>    the file exactly as given

A generated sound refers to its source by id, so it can be made again bit for
bit (and exported in another format) after the upload is gone or the dataset
file deleted. The id is a hash of the file's bytes: the same file kept twice is
kept once. A source is checked as the importer checks a file (one-sentence
reasons) and must be short enough to transform. No torch here.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..audio.io import AudioRejected, inspect_audio
from ..datasets import DatasetError, load_dataset
from ..generation.settings import MAX_SOURCE_S
from ..storage import atomic_write_json, read_json, read_records

SOURCES_DIR = "sources"
SOURCE_FILE = "source.json"
SOURCE_ID_RE = re.compile(r"^src-[0-9a-f]{16}$")
ORIGINS = ("upload", "dataset")
MAX_NAME_CHARS = 200


class SourceError(ValueError):
    """A sound to start from cannot be kept or found; the message says why."""


class UnknownSource(SourceError):
    """No kept sound has that id."""


@dataclass(frozen=True)
class Source:
    source_id: str
    name: str  # the file name as the user knows it
    origin: str  # "upload" or "dataset"
    dataset: str | None  # the dataset it was picked from
    created: str
    duration_s: float
    sample_rate: int
    channels: int
    file_name: str
    folder: Path

    @property
    def audio_path(self) -> Path:
        return self.folder / self.file_name

    @property
    def label(self) -> str:
        """How a result names it: "kick.wav" or "kick.wav (uploaded)"."""
        return self.name if self.origin == "dataset" else f"{self.name} (uploaded)"

    def to_dict(self) -> dict:
        return {"id": self.source_id, "name": self.name, "origin": self.origin, "dataset": self.dataset,
                "created": self.created, "duration_s": self.duration_s, "sample_rate": self.sample_rate,
                "channels": self.channels, "file": self.file_name}


def is_source_id(value) -> bool:
    return isinstance(value, str) and bool(SOURCE_ID_RE.match(value))


def sources_root(data_dir: Path) -> Path:
    return Path(data_dir) / SOURCES_DIR


def keep_source(data_dir: Path, path: Path, name: str, *, origin: str = "upload",
                dataset: str | None = None) -> Source:
    """Check `path` as the importer would and keep a copy. AudioRejected (`.reason`) when it
    cannot be used. Returns the kept source (the existing one when these bytes are kept already)."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}")
    path = Path(path)
    info = inspect_audio(path)
    if info.duration_s > MAX_SOURCE_S:
        raise AudioRejected(f"It is {info.duration_s:.1f} s long; a sound to start from can be at most "
                            f"{MAX_SOURCE_S:g} s, so trim it first.")
    source_id = "src-" + _digest(path)
    folder = sources_root(data_dir) / source_id
    try:
        return load_source(data_dir, source_id)
    except SourceError:
        pass
    clean = (" ".join(str(name or "").split()) or path.name)[:MAX_NAME_CHARS]
    suffix = path.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,8}", path.suffix.lower()) else ""
    record = Source(source_id=source_id, name=clean, origin=origin, dataset=dataset,
                    created=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                    duration_s=round(info.duration_s, 6), sample_rate=info.sample_rate, channels=info.channels,
                    file_name="audio" + suffix, folder=folder)
    root = sources_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".keep-", dir=root))  # complete, then moved into place in one rename
    try:
        shutil.copyfile(path, staging / record.file_name)
        atomic_write_json(staging / SOURCE_FILE, record.to_dict())
        if folder.is_dir() and not (folder / SOURCE_FILE).exists():
            shutil.rmtree(folder, ignore_errors=True)  # a folder without its record is a leftover
        try:
            os.rename(staging, folder)
        except OSError:  # kept by someone else a moment ago
            return load_source(data_dir, source_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def keep_dataset_file(data_dir: Path, dataset: str, file_name: str) -> Source:
    """Keep a file of a dataset (by its stored name) as a source."""
    try:
        manifest = load_dataset(data_dir, dataset)
    except DatasetError:
        raise SourceError(f"The dataset {dataset!r} is gone, so {file_name!r} cannot be used; "
                          "upload the sound instead.") from None
    if file_name not in {f.name for f in manifest.files}:
        raise SourceError(f"{file_name!r} is not a sound of the dataset {dataset!r}.")
    return keep_source(data_dir, manifest.audio_dir(data_dir) / file_name, file_name, origin="dataset",
                       dataset=dataset)


def source_for(data_dir: Path, ref: str, dataset: Callable[[], str]) -> str:
    """The kept source a form's "start from" names: a source id as it is, else a file of the
    model's dataset (`dataset()` gives its name, looked up only then), kept now. SourceError or
    AudioRejected when it cannot be used."""
    if is_source_id(ref):
        return ref
    return keep_dataset_file(data_dir, dataset(), ref).source_id


def load_source(data_dir: Path, source_id: str) -> Source:
    if not is_source_id(source_id):
        raise UnknownSource(f"{str(source_id)[:40]!r} is not the id of a kept sound.")
    folder = sources_root(data_dir) / source_id
    try:
        data = read_json(folder / SOURCE_FILE)
        source = Source(source_id=source_id, name=str(data["name"]), origin=str(data["origin"]),
                        dataset=data.get("dataset"), created=str(data["created"]),
                        duration_s=float(data["duration_s"]), sample_rate=int(data["sample_rate"]),
                        channels=int(data["channels"]), file_name=str(data["file"]), folder=folder)
    except FileNotFoundError:
        raise UnknownSource("The sound this was made from is no longer kept; upload it again.") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise SourceError("The record of the sound this was made from is unreadable; upload it again.") from None
    if not re.fullmatch(r"audio(\.[a-z0-9]{1,8})?", source.file_name) or not source.audio_path.is_file():
        raise UnknownSource("The sound this was made from is no longer kept; upload it again.")
    return source


def list_sources(data_dir: Path, origin: str | None = "upload", limit: int = 30) -> list[Source]:
    """Kept sources (uploads by default), newest first; unreadable ones skipped."""
    found = [source for source in read_records(sources_root(data_dir), SOURCE_ID_RE,
                                               lambda d: load_source(data_dir, d.name), (SourceError,))
             if origin is None or source.origin == origin]
    found.sort(key=lambda s: (s.created, s.source_id), reverse=True)
    return found[:limit]


def forget_unused(data_dir: Path, source_ids, still_used: set[str]) -> None:
    """Delete kept sources among `source_ids` that no sound in `still_used` refers to."""
    for source_id in set(source_ids) - set(still_used):
        if is_source_id(source_id):
            folder = sources_root(data_dir) / source_id
            try:
                (folder / SOURCE_FILE).unlink()  # first: a half-deleted folder is no longer listed
            except FileNotFoundError:
                continue
            shutil.rmtree(folder, ignore_errors=True)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
